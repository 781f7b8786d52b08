"""The three face pipelines that ``bench.compare_peers`` races, one run per fresh process.

Why this module exists: a claim that the appliance is fast means little
unless it is measured against what someone would deploy instead, on the same
frames, on the same machine, in the same way. The three pipelines:

``edgewatch``
    This product, exactly as ``edgewatch simulate --video CLIP --enrol ...``
    runs it: the pieces ``bench.pipeline_speed`` assembles (``load_vision``,
    ``build_gallery`` of the hamilton cast, ``build_pipeline``,
    ``run_camera``), default models (BlazeFace full-range with tiles, FaceMesh
    landmarks and quality gates, dlib's ResNet on LiteRT), default policy.
``face_recognition``
    Peer P1, the ``face_recognition`` library with its defaults: HOG detector
    (``face_locations(rgb)``, upsampled once), then ``face_encodings(rgb,
    locations)`` for every detected face (dlib's 5-point landmarks, chip and
    ResNet inside that one call, so its time is reported under "embed"), then
    ``face_distance`` to the cast's encodings with the library's 0.6
    tolerance, as its video examples do.
``yunet-mobilefacenet``
    Peer P2, Frigate-style: OpenCV's YuNet (``cv2.FaceDetectorYN`` from
    ``../shared/models/peers/yunet``) on the full frame, every detected face
    aligned on YuNet's own five points and embedded by the research-only
    MobileFaceNet (loaded by the product's own manifest and embedder code,
    ``bench/research_models.toml``), cosine match. It runs inside the
    product's frame loop (``FaceEncoder``, ``Pipeline``, ``run_camera``) with
    no landmark model, no quality gate and no size floor, so it differs from
    ``edgewatch`` exactly in the detector, the landmark/quality stage and the
    embedder, and pays the same (small) tracking and wiping overheads.

All three read the same first N frames of a clip through the product's video
camera (PyAV), so decoding costs the same and the frames are identical.
Each run happens in a fresh process (``multiprocessing`` spawn, see
``bench.compare_peers``) so that its memory figures are its own: the
resident set before any model is loaded (the interpreter, numpy, OpenCV,
PyAV, dlib and edgewatch imported: the same for all three), after the
models and the gallery are ready, and the peak (``VmHWM``) over the run.

Nothing about a face is written anywhere: the gallery templates (the cast's
reference photos) live in the child's memory only, frames are overwritten
after use (the product does this itself; the peers' loops do it too, for
less than 0.1 ms a frame), and only counts and times come back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from bench.hamilton_cast import REFERENCE_PHOTOS
from bench.lfw_faces import load_manifest as research_manifest
from bench.lfw_faces import yunet_detection
from bench.watchlist_load import status_kib
from edgewatch.appliance import build_pipeline, load_vision, run_camera
from edgewatch.camera.base import Camera
from edgewatch.camera.registry import create_camera
from edgewatch.config import DEFAULT_DETECTOR, DEFAULT_EMBEDDER, AppConfig, parse_config
from edgewatch.matching.enrol import ReferencePhoto, build_gallery
from edgewatch.matching.matcher import Matcher, MatchPolicy
from edgewatch.pipeline import Pipeline
from edgewatch.progress import ProgressLine
from edgewatch.security.process import protect_process
from edgewatch.timing import STAGES, StageClock
from edgewatch.tracking import TrackingPolicy
from edgewatch.vision.embed import create_embedder
from edgewatch.vision.encoder import FaceEncoder
from edgewatch.vision.types import Detection, ImageArray

PRODUCT = "edgewatch"
FACE_RECOGNITION = "face_recognition"
YUNET_MOBILEFACENET = "yunet-mobilefacenet"
PIPELINES: tuple[str, ...] = (PRODUCT, FACE_RECOGNITION, YUNET_MOBILEFACENET)

LABELS: dict[str, str] = {
    PRODUCT: "edgewatch (BlazeFace + FaceMesh + dlib ResNet on LiteRT)",
    FACE_RECOGNITION: "P1 face_recognition 1.3.0 (HOG + dlib ResNet)",
    YUNET_MOBILEFACENET: "P2 Frigate-style (YuNet + MobileFaceNet)",
}
SHORT: dict[str, str] = {
    PRODUCT: "edgewatch",
    FACE_RECOGNITION: "P1 face_recognition",
    YUNET_MOBILEFACENET: "P2 YuNet+MobileFaceNet",
}

APPLICABLE: dict[str, tuple[str, ...]] = {
    PRODUCT: STAGES,
    # face_encodings does landmarks, chip and ResNet in one call: all under "embed".
    FACE_RECOGNITION: ("decode", "detect", "embed", "match"),
    # No landmark model: YuNet's own five points align the face.
    YUNET_MOBILEFACENET: ("decode", "detect", "align", "embed", "match"),
}
"""The stages each pipeline has; the others are shown as "-" (the clock reads 0 for them)."""

YUNET_RELATIVE = Path("models") / "peers" / "yunet" / "face_detection_yunet_2023mar.onnx"
YUNET_SCORE = 0.6
"""OpenCV zoo's demo threshold for YuNet, and the one docs/detection.md compares with."""
YUNET_NMS = 0.3
YUNET_TOP_K = 5000
P2_EMBEDDER = "mobilefacenet-insightface"
P2_MAX_FACES = 64
"""Chip slots for P2 (YuNet found at most a dozen faces a frame in these clips)."""
FACE_RECOGNITION_TOLERANCE = 0.6
"""``face_recognition.compare_faces``'s default distance for "same person"."""

KnownFaces = tuple[tuple[str, ...], npt.NDArray[np.float64]]
"""P1's gallery: a subject name per row, and the library's 128-d encodings."""


@dataclass(frozen=True, slots=True)
class Job:
    """One pipeline over the first ``max_frames`` frames of one clip (a child's whole work)."""

    pipeline: str
    clip: Path
    shared: Path
    max_frames: int | None
    label: str
    """Progress-line label, e.g. "P1 face_recognition short_hamilton_clip.mp4 run 2/3"."""
    known: KnownFaces | None = None
    """P1 only: the cast's encodings, made once by :func:`enrol_face_recognition`."""


@dataclass(slots=True)
class PipelineRun:
    """What one run did and cost; counts and times only, nothing about any face."""

    pipeline: str
    clip: str
    frames: int
    faces_detected: int
    faces_embedded: int
    faces_matched: int
    """Faces that matched a cast member in their frame (not alerts)."""
    wall_s: float
    """First decode to last decision, as ``RunSummary`` measures it."""
    setup_s: float
    """Loading the models and enrolling the cast (P1's enrolment is done once, outside)."""
    stage_ms: dict[str, float]
    """Per stage, the median over frames of ms per frame."""
    embed_ms_per_face: float
    baseline_rss_mib: float
    """Resident set before any model was loaded (imports done)."""
    loaded_rss_mib: float
    """Resident set with the models and the gallery ready."""
    peak_rss_mib: float
    """VmHWM at the end: the run's peak resident set."""
    load_average: float
    """1-minute load average when the run started (the machine is shared)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


def reference_photos(shared: Path) -> list[ReferencePhoto]:
    """The hamilton cast's reference photos, as ``bench.pipeline_speed`` enrols them."""
    examples = shared / "data" / "faces" / "examples"
    return [
        ReferencePhoto(name, examples / file)
        for name, files in REFERENCE_PHOTOS.items()
        for file in files
    ]


def video_config(clip: Path, **sections: Any) -> AppConfig:
    """The appliance configuration for replaying ``clip`` as fast as possible."""
    return parse_config({**sections, "camera": {"type": "video", "path": clip}}, "bench")


def mib(kib: int) -> float:
    return kib / 1024.0


# --------------------------------------------------------------------------- child entry


def run_job(job: Job) -> PipelineRun:
    """Run ``job`` in this (fresh) process and measure it; the spawned child's entry point."""
    load_average = os.getloadavg()[0]
    baseline = status_kib()["VmRSS"]
    protect_process()  # as `edgewatch simulate` does: face data is handled below
    runner = RUNNERS[job.pipeline]
    run = runner(job)
    run.baseline_rss_mib = mib(baseline)
    run.peak_rss_mib = mib(status_kib()["VmHWM"])
    run.load_average = load_average
    return run


def _from_pipeline(
    job: Job, pipeline: Pipeline, config: AppConfig, setup_s: float, loaded_kib: int
) -> PipelineRun:
    """Replay the clip through a product ``Pipeline`` with ``run_camera`` and collect figures."""
    with create_camera(config.camera) as camera:
        progress = ProgressLine(job.label, _frame_total(camera, job.max_frames))
        summary = run_camera(camera, pipeline, lambda _: None, job.max_frames, progress)
    counters = summary.counters
    embedded = counters.faces_seen - counters.faces_rejected
    embed_total = sum(pipeline.clock.samples["embed"])
    return PipelineRun(
        pipeline=job.pipeline,
        clip=job.clip.name,
        frames=counters.frames,
        faces_detected=counters.faces_seen,
        faces_embedded=embedded,
        faces_matched=counters.matches,
        wall_s=summary.wall_seconds,
        setup_s=setup_s,
        stage_ms=dict(summary.stage_ms),
        embed_ms_per_face=embed_total / embedded * 1e3 if embedded else 0.0,
        baseline_rss_mib=0.0,
        loaded_rss_mib=mib(loaded_kib),
        peak_rss_mib=0.0,
        load_average=0.0,
    )


def _frame_total(camera: Camera, max_frames: int | None) -> int | None:
    count = camera.frame_count
    if max_frames is None:
        return count
    return max_frames if count is None else min(count, max_frames)


def run_product(job: Job) -> PipelineRun:
    """This product, assembled as ``bench.pipeline_speed`` and ``edgewatch simulate`` do."""
    started = time.perf_counter()
    config = video_config(
        job.clip,
        detector={"model": DEFAULT_DETECTOR},
        embedder={"model": DEFAULT_EMBEDDER},
    )
    parts = load_vision(config)
    gallery = build_gallery(reference_photos(job.shared), parts.encoder)
    pipeline = build_pipeline(parts, gallery)
    setup_s = time.perf_counter() - started
    return _from_pipeline(job, pipeline, config, setup_s, status_kib()["VmRSS"])


class YuNetDetector:
    """YuNet as a product ``FaceDetector``: full-frame input, its five points as keypoints.

    ``bench.lfw_faces.yunet_detection`` maps a YuNet row onto BlazeFace's
    keypoint order (eyes, nose tip, mouth centre), which is what alignment
    reads, so the product's aligner serves YuNet's faces unchanged.
    """

    def __init__(self, model: Path) -> None:
        if not model.is_file():
            raise FileNotFoundError(f"{model}: YuNet model not found")
        self._yunet = cv2.FaceDetectorYN.create(
            str(model), "", (320, 320), YUNET_SCORE, YUNET_NMS, YUNET_TOP_K
        )
        self._size = (320, 320)

    def detect(self, frame: ImageArray) -> list[Detection]:
        size = (frame.shape[1], frame.shape[0])
        if size != self._size:
            self._yunet.setInputSize(size)
            self._size = size
        _, rows = self._yunet.detect(frame)
        if rows is None:
            return []
        faces = [yunet_detection(row) for row in rows]
        rows.fill(0)
        return sorted(faces, key=lambda d: d.score, reverse=True)

    def scratch_buffers(self) -> list[npt.NDArray[Any]]:
        """None reachable from Python (OpenCV's DNN keeps its own)."""
        return []


def run_yunet_mobilefacenet(job: Job) -> PipelineRun:
    """P2: YuNet, YuNet-point alignment, MobileFaceNet on every face, cosine match."""
    started = time.perf_counter()
    manifest = research_manifest()
    embedder = create_embedder(manifest, P2_EMBEDDER)
    encoder = FaceEncoder(
        YuNetDetector(job.shared / YUNET_RELATIVE),
        embedder,
        landmarker=None,
        max_faces=P2_MAX_FACES,
        min_face_px=0.0,
        quality=None,
    )
    gallery = build_gallery(reference_photos(job.shared), encoder)
    policy = MatchPolicy(threshold=embedder.spec.threshold, margin=embedder.spec.margin)
    pipeline = Pipeline(encoder, Matcher(gallery, policy), tracking=TrackingPolicy())
    setup_s = time.perf_counter() - started
    config = video_config(job.clip)
    return _from_pipeline(job, pipeline, config, setup_s, status_kib()["VmRSS"])


def enrol_face_recognition(shared: Path) -> KnownFaces:
    """P1's gallery: the library's encoding of the largest face of each reference photo.

    Made once per benchmark (in a child of its own) rather than in every P1
    run: HOG on these 0.4-2 megapixel photos takes about 15 s, which would
    add minutes to the benchmark and nothing to the per-frame figures. The
    encodings go to the P1 children through a pipe, never to disk.
    """
    from bench.face_recognition_lfw import encode_all

    photos = reference_photos(shared)
    raw, found = encode_all([photo.path for photo in photos])
    names = tuple(photo.subject for photo, ok in zip(photos, found, strict=True) if ok)
    return names, raw[found]


def run_face_recognition(job: Job) -> PipelineRun:
    """P1: the face_recognition library's defaults on every frame, every face encoded."""
    if job.known is None:
        raise ValueError("the face_recognition run needs the cast's encodings (job.known)")
    started = time.perf_counter()
    import face_recognition  # type: ignore[import-untyped]  # loads its dlib models

    names, known = job.known
    setup_s = time.perf_counter() - started
    loaded_kib = status_kib()["VmRSS"]
    clock = StageClock()
    detected = matched = frames = 0
    config = video_config(job.clip)
    with create_camera(config.camera) as camera:
        progress = ProgressLine(job.label, _frame_total(camera, job.max_frames))
        started = time.perf_counter()
        while job.max_frames is None or frames < job.max_frames:
            with clock.measure("decode"):
                frame = camera.read()
                # The library wants contiguous RGB (dlib refuses a reversed view).
                rgb = None if frame is None else np.ascontiguousarray(frame.image[..., ::-1])
            if frame is None or rgb is None:
                clock.samples["decode"].pop()
                break
            with clock.measure("detect"):
                locations = face_recognition.face_locations(rgb)
            with clock.measure("embed"):
                encodings = face_recognition.face_encodings(rgb, locations)
            with clock.measure("match"):
                for encoding in encodings:
                    distances = face_recognition.face_distance(known, encoding)
                    matched += bool(distances.min() <= FACE_RECOGNITION_TOLERANCE)
            detected += len(locations)
            frames += 1
            for array in (frame.image, rgb, *encodings):
                array.fill(0)
            progress.update(frames, f"faces {detected}, matches {matched}")
        wall_s = time.perf_counter() - started
        progress.update(frames, force=True)
        progress.finish()
    embed_total = sum(clock.samples["embed"])
    return PipelineRun(
        pipeline=job.pipeline,
        clip=job.clip.name,
        frames=frames,
        faces_detected=detected,
        faces_embedded=detected,
        faces_matched=matched,
        wall_s=wall_s,
        setup_s=setup_s,
        stage_ms=clock.medians_ms(),
        embed_ms_per_face=embed_total / detected * 1e3 if detected else 0.0,
        baseline_rss_mib=0.0,
        loaded_rss_mib=mib(loaded_kib),
        peak_rss_mib=0.0,
        load_average=0.0,
        extra={"cast_encodings": len(names)},
    )


RUNNERS: dict[str, Callable[[Job], PipelineRun]] = {
    PRODUCT: run_product,
    FACE_RECOGNITION: run_face_recognition,
    YUNET_MOBILEFACENET: run_yunet_mobilefacenet,
}
