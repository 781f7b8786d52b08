"""The pipeline with the real detector and embedder: decisions, and the discard guarantee."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edgewatch.camera.base import Frame
from edgewatch.errors import ConfigError, FrameError
from edgewatch.imaging import load_image
from edgewatch.matching.enrol import ReferencePhoto, build_gallery
from edgewatch.matching.gallery import Gallery, Subject
from edgewatch.matching.matcher import Matcher, MatchPolicy
from edgewatch.pipeline import Pipeline
from edgewatch.tracking import TrackingPolicy
from edgewatch.vision.detect import FaceDetector
from edgewatch.vision.embed import Embedder
from edgewatch.vision.encoder import FaceEncoder
from edgewatch.vision.landmarks import Landmarker
from tests.face_probes import RecordingEmbedder


@pytest.fixture(scope="module")
def embedder(default_embedder: Embedder) -> Embedder:
    return default_embedder


@pytest.fixture(scope="module")
def obama_gallery(
    faces_dir: Path, detector: FaceDetector, landmarker: Landmarker, embedder: Embedder
) -> Gallery:
    photo = ReferencePhoto("Barack Obama", faces_dir / "examples" / "obama.jpg")
    return build_gallery([photo], FaceEncoder(detector, embedder, landmarker))


def frame_of(path: Path, index: int = 0) -> Frame:
    return Frame(load_image(path), index, index / 10, time.time())


def pipeline_for(
    detector: FaceDetector,
    embedder: Embedder,
    gallery: Gallery,
    max_faces: int = 16,
    landmarker: Landmarker | None = None,
) -> Pipeline:
    policy = MatchPolicy(threshold=embedder.spec.threshold, margin=embedder.spec.margin)
    encoder = FaceEncoder(detector, embedder, landmarker, max_faces)
    return Pipeline(encoder, Matcher(gallery, policy), tracking=TrackingPolicy.stills())


def test_enrolled_person_matches_in_another_photo(
    faces_dir: Path, detector: FaceDetector, embedder: Embedder, obama_gallery: Gallery
) -> None:
    pipeline = pipeline_for(detector, embedder, obama_gallery)
    reports = pipeline.process(frame_of(faces_dir / "examples" / "obama2.jpg"))
    assert [r.subject for r in reports] == ["Barack Obama"]
    assert reports[0].score >= embedder.spec.threshold
    x0, y0, x1, y1 = reports[0].box
    assert x1 > x0 and y1 > y0
    assert pipeline.counters.matches == 1


def test_stranger_is_discarded_and_only_counted(
    faces_dir: Path, detector: FaceDetector, embedder: Embedder, obama_gallery: Gallery
) -> None:
    pipeline = pipeline_for(detector, embedder, obama_gallery)
    assert pipeline.process(frame_of(faces_dir / "examples" / "biden.jpg")) == []
    assert pipeline.counters.faces_seen == 1
    assert pipeline.counters.faces_discarded == 1
    assert pipeline.counters.matches == 0


def test_every_buffer_is_overwritten_after_the_decision(
    faces_dir: Path, detector: FaceDetector, embedder: Embedder, obama_gallery: Gallery
) -> None:
    probe = RecordingEmbedder(embedder)
    pipeline = pipeline_for(detector, probe, obama_gallery)
    frame = frame_of(faces_dir / "examples" / "two_people.jpg")
    assert frame.image.any()
    pipeline.process(frame)
    assert not frame.image.any(), "the frame's pixels must be overwritten"
    assert probe.chip_batches and all(not batch.any() for batch in probe.chip_batches)
    assert probe.outputs and all(not out.any() for out in probe.outputs)
    assert pipeline.counters.faces_seen == 2


def test_buffers_are_overwritten_even_when_a_stage_fails(
    faces_dir: Path, detector: FaceDetector, embedder: Embedder, obama_gallery: Gallery
) -> None:
    probe = RecordingEmbedder(embedder)
    probe.fail = RuntimeError("embedder failed")
    pipeline = pipeline_for(detector, probe, obama_gallery)
    frame = frame_of(faces_dir / "examples" / "obama2.jpg")
    with pytest.raises(FrameError):
        pipeline.process(frame)
    assert not frame.image.any()
    assert all(not batch.any() for batch in probe.chip_batches)


def test_faces_over_the_cap_are_discarded_unembedded(
    faces_dir: Path, detector: FaceDetector, embedder: Embedder, obama_gallery: Gallery
) -> None:
    probe = RecordingEmbedder(embedder)
    pipeline = pipeline_for(detector, probe, obama_gallery, max_faces=1)
    pipeline.process(frame_of(faces_dir / "examples" / "two_people.jpg"))
    assert probe.chip_batches[0].shape[0] == 1
    assert pipeline.counters.faces_seen == 2
    assert pipeline.counters.faces_discarded + pipeline.counters.matches == 2


def test_gallery_of_another_model_is_refused(detector: FaceDetector, embedder: Embedder) -> None:
    other = Gallery("some-other-model", [Subject("x")], [np.ones((1, 128), np.float32)])
    with pytest.raises(ConfigError, match="cannot be compared"):
        pipeline_for(detector, embedder, other)


def test_frame_without_faces(
    detector: FaceDetector, embedder: Embedder, obama_gallery: Gallery
) -> None:
    pipeline = pipeline_for(detector, embedder, obama_gallery)
    frame = Frame(np.full((360, 640, 3), 90, np.uint8), 0, 0.0, time.time())
    assert pipeline.process(frame) == []
    assert pipeline.counters.frames == 1 and pipeline.counters.faces_seen == 0
