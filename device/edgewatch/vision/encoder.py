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

import numpy as np

from edgewatch.errors import InputError
from edgewatch.timing import StageClock
from edgewatch.vision.align import align_face, estimate_similarity, warp_into
from edgewatch.vision.detect import FaceDetector
from edgewatch.vision.embed import Embedder
from edgewatch.vision.landmarks import Landmarker
from edgewatch.vision.types import Detection, FloatArray, ImageArray


@dataclass(slots=True, repr=False)
class EncodedFaces:
    """The faces of one image: all detections, and those that were embedded."""

    detected: list[Detection] = field(default_factory=list)
    embedded: list[Detection] = field(default_factory=list)
    """Faces that passed the gates, in the row order of :attr:`embeddings`."""
    embeddings: FloatArray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def scrub(self) -> None:
        """Overwrite the embeddings and forget the face geometry."""
        self.embeddings.fill(0.0)
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
    ) -> None:
        self.detector = detector
        self.landmarker = landmarker
        self.embedder = embedder
        self.max_faces = max_faces
        self._chips = embedder.spec.chip_buffer(max_faces)
        self._template = embedder.spec.template_array()

    def encode(self, image: ImageArray, clock: StageClock | None = None) -> EncodedFaces:
        """All faces in ``image`` and the embeddings of those that pass the gates.

        At most ``max_faces`` faces (the detector's best) are embedded; the rest
        are counted by the caller as rejected. The chip batch is overwritten
        before this returns, whatever happens.
        """
        clock = clock or StageClock()
        encoded = EncodedFaces()
        try:
            with clock.measure("detect"):
                encoded.detected = self.detector.detect(image)
            with clock.measure("landmarks"):
                candidates = self._gate(image, encoded.detected[: self.max_faces])
            with clock.measure("align"):
                encoded.embedded = self._align(image, candidates)
            with clock.measure("embed"):
                encoded.embeddings = self.embedder.embed(self._chips[: len(encoded.embedded)])
        finally:
            self.scrub()
        return encoded

    def scrub(self) -> None:
        """Overwrite every chip slot."""
        self._chips.fill(0)

    def _gate(
        self, image: ImageArray, detections: list[Detection]
    ) -> list[tuple[Detection, FloatArray | None]]:
        """Each face with its refined alignment points, minus those the landmark
        model says are not a usable face (profile, occluded, false detection).
        Without a landmarker, the detector's own keypoints are used (None)."""
        if self.landmarker is None:
            return [(detection, None) for detection in detections]
        kept: list[tuple[Detection, FloatArray | None]] = []
        for detection in detections:
            found = self.landmarker.landmarks(image, detection)
            if found.presence >= self.landmarker.min_presence:
                kept.append((detection, found.alignment_points()))
            found.points.fill(0.0)
        return kept

    def _align(
        self, image: ImageArray, candidates: list[tuple[Detection, FloatArray | None]]
    ) -> list[Detection]:
        """Align each face into the next free chip slot; a face whose points are
        degenerate is dropped unembedded."""
        aligned: list[Detection] = []
        for detection, points in candidates:
            slot = self._chips[len(aligned)]
            try:
                if points is None:
                    align_face(image, detection, self._template, slot)
                else:
                    warp_into(image, estimate_similarity(points, self._template), slot)
            except InputError:
                continue
            finally:
                if points is not None:
                    points.fill(0.0)
            aligned.append(detection)
        return aligned
