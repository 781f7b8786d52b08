"""Value types passed between detection, alignment and embedding.

These hold biometric data (face geometry). They live only as long as the
frame they came from; nothing here is ever logged or serialised for a face
that does not match.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
ImageArray = npt.NDArray[np.uint8]


class Keypoint(IntEnum):
    """BlazeFace's six keypoints, in the model's output order.

    "Right"/"left" are the subject's own: for a person facing the camera the
    RIGHT_EYE appears on the left half of the image.
    """

    RIGHT_EYE = 0
    LEFT_EYE = 1
    NOSE_TIP = 2
    MOUTH_CENTER = 3
    RIGHT_EAR_TRAGION = 4
    LEFT_EAR_TRAGION = 5


@dataclass(frozen=True, slots=True, repr=False)
class Detection:
    """A face found in a frame, in that frame's pixel coordinates.

    ``repr`` is deliberately uninformative: face coordinates must not reach a
    log line or an exception message by accident.
    """

    box: tuple[float, float, float, float]
    """x0, y0, x1, y1 in pixels."""
    keypoints: FloatArray
    """(6, 2) float32 x, y in pixels, indexed by :class:`Keypoint`."""
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def __repr__(self) -> str:
        return "Detection(<redacted>)"
