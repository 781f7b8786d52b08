"""Frame in, match decisions out: detect, align, embed, match, then discard.

The pipeline owns every buffer that holds biometric data for a frame: the
frame's pixels (handed over by the camera), the aligned face chips (one
preallocated batch, reused frame after frame) and the embeddings. As soon as
the frame's decisions are made, all of them are overwritten in place, whether
the frame produced a match or not and whether processing succeeded or raised.
Only :class:`MatchReport` objects leave, and only for faces that matched an
enrolled subject.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from edgewatch.camera.base import Frame
from edgewatch.errors import ConfigError, InputError
from edgewatch.matching.matcher import Match, Matcher
from edgewatch.vision.align import align_face
from edgewatch.vision.detect import FaceDetector
from edgewatch.vision.embed import Embedder
from edgewatch.vision.types import Detection, FloatArray

STAGES = ("decode", "detect", "align", "embed", "match")


@dataclass(frozen=True, slots=True)
class MatchReport:
    """A face that matched an enrolled subject: what a unit would send about it."""

    subject: str
    category: str
    score: float
    threshold: float
    frame_index: int
    stream_time: float
    capture_time: float
    box: tuple[int, int, int, int]
    """x0, y0, x1, y1 in frame pixels, rounded."""
    model_id: str


@dataclass(slots=True)
class Counters:
    """Aggregate counts only: nothing here identifies or describes a face."""

    frames: int = 0
    faces_seen: int = 0
    faces_discarded: int = 0
    """Faces whose data was overwritten without a match (including faces over the cap)."""
    matches: int = 0


@dataclass(slots=True)
class StageClock:
    """Seconds spent per stage, per frame (for the benchmark and the summary)."""

    samples: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.samples[stage].append(time.perf_counter() - started)

    def medians_ms(self) -> dict[str, float]:
        return {
            stage: float(np.median(values)) * 1000.0 if values else 0.0
            for stage, values in self.samples.items()
        }


class Pipeline:
    """Runs one frame at a time through detector, aligner, embedder and matcher."""

    def __init__(
        self,
        detector: FaceDetector,
        embedder: Embedder,
        matcher: Matcher,
        max_faces: int = 16,
    ) -> None:
        if matcher.gallery.model_id != embedder.spec.model_id:
            raise ConfigError(
                f"the gallery was built with model {matcher.gallery.model_id!r} but the "
                f"embedder is {embedder.spec.model_id!r}; templates of different models "
                "cannot be compared"
            )
        self.detector = detector
        self.embedder = embedder
        self.matcher = matcher
        self.max_faces = max_faces
        self._chips = embedder.spec.chip_buffer(max_faces)
        self._template = embedder.spec.template_array()
        self.counters = Counters()
        self.clock = StageClock()

    def process(self, frame: Frame) -> list[MatchReport]:
        """Decisions for one frame; the frame's pixels are overwritten before returning."""
        detections: list[Detection] = []
        aligned: list[Detection] = []
        embeddings: FloatArray | None = None
        reports: list[MatchReport] = []
        try:
            with self.clock.measure("detect"):
                detections = self.detector.detect(frame.image)
            with self.clock.measure("align"):
                aligned = self._align(frame, detections[: self.max_faces])
            with self.clock.measure("embed"):
                embeddings = self.embedder.embed(self._chips[: len(aligned)])
            with self.clock.measure("match"):
                matches = self.matcher.decide(embeddings)
            reports = [self._report(frame, aligned[m.face_index], m) for m in matches]
        finally:
            frame.image.fill(0)
            self._chips[: self.max_faces].fill(0)
            if embeddings is not None:
                embeddings.fill(0.0)
            seen = len(detections)
            detections.clear()
            aligned.clear()
        self.counters.frames += 1
        self.counters.faces_seen += seen
        self.counters.matches += len(reports)
        self.counters.faces_discarded += seen - len(reports)
        return reports

    def _align(self, frame: Frame, detections: list[Detection]) -> list[Detection]:
        """Align each face into the next free chip slot; a face that cannot be aligned
        (degenerate keypoints) is dropped unembedded and counted as discarded."""
        aligned: list[Detection] = []
        for detection in detections:
            try:
                align_face(frame.image, detection, self._template, self._chips[len(aligned)])
            except InputError:
                continue
            aligned.append(detection)
        return aligned

    def _report(self, frame: Frame, detection: Detection, match: Match) -> MatchReport:
        x0, y0, x1, y1 = (round(v) for v in detection.box)
        return MatchReport(
            subject=match.subject.reference,
            category=match.subject.category,
            score=round(match.score, 4),
            threshold=self.matcher.policy.threshold,
            frame_index=frame.index,
            stream_time=round(frame.stream_time, 3),
            capture_time=frame.capture_time,
            box=(x0, y0, x1, y1),
            model_id=self.embedder.spec.model_id,
        )
