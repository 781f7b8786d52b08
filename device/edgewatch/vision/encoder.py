"""Image in, embeddings out: detect, refine landmarks (and gate), align, embed.

The device's pipeline and the enrolment of reference photos both go through
this one class, so a template and a live face are always produced the same
way (same detector options, same landmark gate, same alignment, same model).

The encoder owns the chip batch the faces are aligned into; :meth:`scrub`
overwrites it. The caller owns the image and the returned embeddings and must
overwrite them once decided (the pipeline does, in a ``finally``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewatch.errors import InputError
from edgewatch.timing import StageClock
from edgewatch.vision.align import align_face
from edgewatch.vision.detect import FaceDetector
from edgewatch.vision.embed import Embedder
from edgewatch.vision.landmarks import Landmarker
from edgewatch.vision.quality import QualityRules, measure
from edgewatch.vision.types import Detection, FloatArray, ImageArray


@dataclass(slots=True, repr=False)
class EncodedFaces:
    """The faces of one image: all detections, and those that were embedded."""

    detected: list[Detection] = field(default_factory=list)
    embedded: list[Detection] = field(default_factory=list)
    """Faces that passed the gates, in the row order of :attr:`embeddings`."""
    embeddings: FloatArray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def scrub(self) -> None:
        """Overwrite the embeddings and keypoints, and forget the faces.

        Boxes are tuples of Python floats, which cannot be overwritten; they
        go with the last reference to their :class:`Detection`.
        """
        self.embeddings.fill(0.0)
        for detection in (*self.detected, *self.embedded):
            detection.keypoints.fill(0.0)
        self.detected.clear()
        self.embedded.clear()

    def __repr__(self) -> str:
        return f"EncodedFaces(detected={len(self.detected)}, embedded={len(self.embedded)})"


class FaceEncoder:
    """Detector, optional landmarker, aligner and embedder, run in that order."""

    def __init__(
        self,
        detector: FaceDetector,
        embedder: Embedder,
        landmarker: Landmarker | None = None,
        max_faces: int = 16,
        min_face_px: float = 0.0,
        quality: QualityRules | None = None,
    ) -> None:
        """``quality``: size, sharpness and pose limits checked on the refined
        keypoints before alignment (None: no such gate)."""
        self.detector = detector
        self.quality = quality
        self.min_face_px = min_face_px
        self.landmarker = landmarker
        self.embedder = embedder
        self.max_faces = max_faces
        self._chips = embedder.spec.chip_buffer(max_faces)
        self._template = embedder.spec.template_array()

    def encode(self, image: ImageArray, clock: StageClock | None = None) -> EncodedFaces:
        """All faces in ``image`` and the embeddings of those that pass the gates.

        Faces narrower than ``min_face_px`` carry too little detail to be
        identified reliably (a 30-pixel face scores high against many people
        with some embedders) and are never embedded; nor are faces beyond the
        ``max_faces`` best. The caller counts them as rejected. The chip batch
        is overwritten before this returns, whatever happens.
        """
        clock = clock or StageClock()
        encoded = EncodedFaces()
        try:
            encoded.detected, candidates = self.find(image, clock)
            with clock.measure("align"):
                encoded.embedded = self._align(image, candidates)
            with clock.measure("embed"):
                encoded.embeddings = self.embedder.embed(self._chips[: len(encoded.embedded)])
        finally:
            self.scrub()
        return encoded

    def find(
        self, image: ImageArray, clock: StageClock | None = None
    ) -> tuple[list[Detection], list[Detection]]:
        """All detected faces, and those that pass the size and landmark gates.

        The second list holds new detections with refined keypoints, in the
        detector's order; the caller overwrites both lists' keypoints.
        """
        clock = clock or StageClock()
        with clock.measure("detect"):
            detected = self.detector.detect(image)
        try:
            with clock.measure("landmarks"):
                large_enough = [
                    d for d in detected[: self.max_faces] if d.width >= self.min_face_px
                ]
                candidates = self._gate(image, large_enough)
            if self.quality is not None:
                candidates = self._quality_gate(image, candidates, self.quality)
        except BaseException:
            for detection in detected:
                detection.keypoints.fill(0.0)
            raise
        return detected, candidates

    def scrub(self) -> None:
        """Overwrite every chip slot."""
        self._chips.fill(0)

    def scratch_buffers(self) -> list[npt.NDArray[Any]]:
        """Every array the encoder and its models keep between frames (see
        :meth:`~edgewatch.vision.embed.Embedder.scratch_buffers`)."""
        buffers: list[npt.NDArray[Any]] = [self._chips, *self.detector.scratch_buffers()]
        if self.landmarker is not None:
            buffers += self.landmarker.scratch_buffers()
        return buffers + self.embedder.scratch_buffers()

    def _gate(self, image: ImageArray, detections: list[Detection]) -> list[Detection]:
        """Each face with refined keypoints, minus those the landmark model says are
        not a usable face (profile, occluded, false detection). Without a
        landmarker, the detector's own keypoints are used as they are."""
        if self.landmarker is None:
            return list(detections)
        kept: list[Detection] = []
        for detection in detections:
            found = self.landmarker.landmarks(image, detection)
            if found.presence >= self.landmarker.min_presence:
                kept.append(found.refine(detection))
            found.points.fill(0.0)
        return kept

    @staticmethod
    def _quality_gate(
        image: ImageArray, candidates: list[Detection], rules: QualityRules
    ) -> list[Detection]:
        """Faces too small, blurred or turned away to identify, dropped before embedding
        (a poor face scores unpredictably: a source of false alerts, not of matches)."""
        kept = []
        for detection in candidates:
            if rules.problems(measure(image, detection)):
                detection.keypoints.fill(0.0)
            else:
                kept.append(detection)
        return kept

    def _align(self, image: ImageArray, candidates: list[Detection]) -> list[Detection]:
        """Align each face into the next free chip slot; a face whose keypoints are
        degenerate is dropped unembedded."""
        aligned: list[Detection] = []
        for detection in candidates:
            try:
                align_face(image, detection, self._template, self._chips[len(aligned)])
            except InputError:
                continue
            aligned.append(detection)
        return aligned
