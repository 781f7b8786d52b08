"""Precise facial landmarks for alignment, and a face-presence gate: MediaPipe FaceMesh.

BlazeFace's six keypoints are coarse (they come from the detector's anchors,
at a few pixels of resolution for a small face) and drift badly on turned
faces, and alignment copies every keypoint error into the chip the embedder
sees. MediaPipe's own answer is a second model on a crop of each face: the
FaceMesh landmark model re-reads the face at 192x192 and returns 468 precise
landmarks plus a face-presence score. We use five of them (the eye centres, the
nose tip and the mouth corners: the ArcFace alignment points) and the presence
score as a quality gate: a profile, a back of a head or a false detection scores
low and is discarded before anything is embedded.

The crop follows MediaPipe's ``face_landmark_front`` graph: the detection box,
rotated so that the eyes are level, enlarged 1.5 times to a square, sampled to
192x192 RGB in [0, 1]; landmarks are projected back with the inverse transform.

Privacy: the crop buffer and the model's tensors are overwritten after every
face; nothing is logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from edgewatch.errors import ConfigError, ModelError
from edgewatch.validation import validated
from edgewatch.vision.align import ALIGNMENT_KEYPOINTS
from edgewatch.vision.models import ModelManifest
from edgewatch.vision.registry import backend_for
from edgewatch.vision.runtime import make_interpreter
from edgewatch.vision.types import Detection, FloatArray, ImageArray, Keypoint

NUM_MESH_LANDMARKS: Final = 468

# FaceMesh indices. "Right"/"left" are the subject's own, as for BlazeFace.
_RIGHT_EYE_CONTOUR: Final = (33, 133, 159, 145, 160, 144, 158, 153)
_LEFT_EYE_CONTOUR: Final = (362, 263, 386, 374, 385, 380, 387, 373)
_NOSE_TIP: Final = 1
_RIGHT_MOUTH_CORNER: Final = 61
_LEFT_MOUTH_CORNER: Final = 291

ALIGNMENT_POINT_NAMES: Final = (
    "right_eye",
    "left_eye",
    "nose_tip",
    "right_mouth_corner",
    "left_mouth_corner",
)
"""The five points :class:`FaceLandmarks` carries, in this order (ArcFace's order)."""


@dataclass(frozen=True, slots=True, repr=False)
class FaceLandmarks:
    """The alignment points of one face and how sure the model is that it is a face."""

    points: FloatArray
    """(5, 2) float32 frame pixels, in :data:`ALIGNMENT_POINT_NAMES` order."""
    presence: float
    """Probability (0..1) that the crop holds a face the landmarks fit."""

    def __repr__(self) -> str:
        return f"FaceLandmarks(presence={self.presence:.2f}, points=<redacted>)"

    def refine(self, detection: Detection) -> Detection:
        """``detection`` with its eyes, nose tip and mouth centre replaced by these
        more precise points (the ear tragions, unused by alignment, are kept)."""
        keypoints = detection.keypoints.copy()
        keypoints[list(ALIGNMENT_KEYPOINTS)] = self.alignment_points()
        return Detection(box=detection.box, keypoints=keypoints, score=detection.score)

    def alignment_points(self) -> FloatArray:
        """(4, 2) in :data:`~edgewatch.vision.align.ALIGNMENT_KEYPOINTS` order: right eye,
        left eye, nose tip, mouth centre (the templates' points).

        The mouth centre is the mean of the corners, as in the 4-point form of
        the ArcFace template.
        """
        mouth = (self.points[3] + self.points[4]) / 2.0
        return np.vstack([self.points[:3], mouth[None, :]]).astype(np.float32)


class Landmarker(Protocol):
    """Anything that refines a detection into alignment points."""

    min_presence: float

    def landmarks(self, frame: ImageArray, detection: Detection) -> FaceLandmarks:
        """The five alignment points of ``detection`` in ``frame``."""
        ...

    def scratch_buffers(self) -> list[npt.NDArray[Any]]:
        """Every array kept between calls that can hold face data (copies of a
        runtime's tensors), so that a test can check each was overwritten."""
        ...


class FaceMeshParams(BaseModel):
    """The manifest's ``params`` table for a FaceMesh model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: int = Field(default=192, gt=0, description="Side of the square model input.")
    roi_scale: float = Field(
        default=1.5, gt=1.0, le=3.0, description="Crop side as a multiple of the detection box."
    )
    min_presence: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Faces whose presence score is below this are discarded unembedded.",
    )


class LandmarkerOptions(BaseModel):
    """Run-time options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_threads: int = Field(default=2, ge=1, le=8, description="LiteRT threads.")
    min_presence: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Override of the model's presence gate."
    )


class FaceMeshLandmarker:
    """FaceMesh on LiteRT. Not thread-safe: one interpreter, one crop buffer."""

    backend: ClassVar[str] = "facemesh"

    def __init__(
        self, model_path: Path, params: FaceMeshParams, options: LandmarkerOptions
    ) -> None:
        self.params = params
        self.min_presence = (
            options.min_presence if options.min_presence is not None else params.min_presence
        )
        self._interpreter = make_interpreter(model_path, options.num_threads)
        inputs = self._interpreter.get_input_details()
        size = params.input_size
        if len(inputs) != 1 or tuple(inputs[0]["shape"]) != (1, size, size, 3):
            raise ModelError(f"{model_path}: expected one 1x{size}x{size}x3 input")
        self._input_index = int(inputs[0]["index"])
        self._landmarks_index = self._presence_index = -1
        for output in self._interpreter.get_output_details():
            count = int(np.prod(output["shape"]))
            if count == NUM_MESH_LANDMARKS * 3:
                self._landmarks_index = int(output["index"])
            elif count == 1:
                self._presence_index = int(output["index"])
        if self._landmarks_index < 0 or self._presence_index < 0:
            raise ModelError(f"{model_path}: outputs are not FaceMesh's (468x3 landmarks, 1 score)")
        self._face_tensors = (self._input_index, self._landmarks_index, self._presence_index)
        """The tensors that hold a face's pixels or landmarks after a run."""
        self._crop = np.zeros((size, size, 3), np.uint8)

    @classmethod
    def from_manifest(
        cls, manifest: ModelManifest, model_id: str, **options: Any
    ) -> FaceMeshLandmarker:
        entry = manifest.entry(model_id)
        params = validated(
            FaceMeshParams, entry.params, f"model {model_id!r}: invalid params", ModelError
        )
        parsed = validated(LandmarkerOptions, options, "landmarker options", ConfigError)
        return cls(manifest.resolve(model_id), params, parsed)

    def landmarks(self, frame: ImageArray, detection: Detection) -> FaceLandmarks:
        matrix = self._roi_matrix(detection)
        try:
            cv2.warpAffine(
                frame,
                matrix,
                (self.params.input_size, self.params.input_size),
                dst=self._crop,
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=(0, 0, 0),
            )
            tensor = self._interpreter.tensor(self._input_index)()
            np.multiply(self._crop[:, :, ::-1], 1.0 / 255.0, out=tensor[0], casting="unsafe")
            del tensor  # the interpreter refuses to run while a view of its memory exists
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._landmarks_index).reshape(-1, 3)[:, :2]
            logit = float(self._interpreter.get_tensor(self._presence_index).reshape(-1)[0])
            points = _five_points(raw)
            raw.fill(0.0)
            inverse = cv2.invertAffineTransform(matrix)
            in_frame = (points @ inverse[:, :2].T + inverse[:, 2]).astype(np.float32)
            points.fill(0.0)
            return FaceLandmarks(in_frame, _sigmoid(logit))
        finally:
            self._scrub()

    def _roi_matrix(self, detection: Detection) -> FloatArray:
        """Frame-to-crop affine map: box centre to crop centre, eyes level, 1.5x box side."""
        right_eye = detection.keypoints[Keypoint.RIGHT_EYE]
        left_eye = detection.keypoints[Keypoint.LEFT_EYE]
        angle = math.atan2(float(left_eye[1] - right_eye[1]), float(left_eye[0] - right_eye[0]))
        x0, y0, x1, y1 = detection.box
        side = max(x1 - x0, y1 - y0) * self.params.roi_scale
        scale = self.params.input_size / max(side, 1.0)
        cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
        centre_x, centre_y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        half = self.params.input_size / 2.0
        return np.array(
            [
                [cos, sin, half - cos * centre_x - sin * centre_y],
                [-sin, cos, half + sin * centre_x - cos * centre_y],
            ],
            np.float64,
        ).astype(np.float32)

    def scratch_buffers(self) -> list[npt.NDArray[Any]]:
        """The face crop and copies of the interpreter's input and output tensors."""
        return [self._crop] + [self._interpreter.get_tensor(i) for i in self._face_tensors]

    def _scrub(self) -> None:
        self._crop.fill(0)
        for index in self._face_tensors:
            tensor = self._interpreter.tensor(index)()
            tensor.fill(0.0)
            del tensor


def _five_points(mesh: FloatArray) -> FloatArray:
    """The five ArcFace points from the 468 mesh landmarks (crop pixels)."""
    return np.stack(
        [
            mesh[list(_RIGHT_EYE_CONTOUR)].mean(axis=0),
            mesh[list(_LEFT_EYE_CONTOUR)].mean(axis=0),
            mesh[_NOSE_TIP],
            mesh[_RIGHT_MOUTH_CORNER],
            mesh[_LEFT_MOUTH_CORNER],
        ]
    ).astype(np.float64)


def _sigmoid(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(logit, 60.0), -60.0)))


LANDMARKER_BACKENDS: dict[str, type[FaceMeshLandmarker]] = {
    FaceMeshLandmarker.backend: FaceMeshLandmarker,
}


def create_landmarker(manifest: ModelManifest, model_id: str, **options: Any) -> Landmarker:
    """The landmarker for manifest entry ``model_id`` (hash-checked)."""
    implementation = backend_for(manifest, model_id, "landmarker", LANDMARKER_BACKENDS)
    return implementation.from_manifest(manifest, model_id, **options)
