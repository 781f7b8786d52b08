"""Measures of whether a face is good enough to embed, or to become a template.

Every camera face passes a gate before it is embedded (the limits in the
configuration's ``[quality]`` section), because a tiny, blurred or turned
face scores unpredictably: it is where false alerts come from. A reference
photo sets the template every later face is compared with, so the issuing
tool is stricter than the camera (the :class:`QualityRules` defaults): the
face must be large enough
(inter-eye distance), sharp (variance of the Laplacian on the face resized
to a fixed size, so the figure does not depend on resolution) and close to
frontal (the nose's offset from the eyes' midpoint along the eye line, as a
fraction of the eye distance: 0 frontal, about 0.5 at a 45-degree turn).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgewatch.vision.types import Detection, ImageArray, Keypoint

SHARPNESS_SIZE = 112


@dataclass(frozen=True, slots=True)
class FaceQuality:
    eye_distance_px: float
    sharpness: float
    yaw_ratio: float


@dataclass(frozen=True, slots=True)
class QualityRules:
    """Limits on a face. The defaults are a reference photo's (measured on the examples:
    docs/watchlist-format.md); the camera's come from ``QualityConfig.rules()``."""

    min_eye_distance_px: float = 40.0
    min_sharpness: float = 60.0
    max_yaw_ratio: float = 0.35

    def problems(self, quality: FaceQuality) -> list[str]:
        found = []
        if quality.eye_distance_px < self.min_eye_distance_px:
            found.append(
                f"face too small ({quality.eye_distance_px:.0f} px between the eyes, "
                f"at least {self.min_eye_distance_px:.0f} needed)"
            )
        if quality.sharpness < self.min_sharpness:
            found.append(
                f"face blurred (sharpness {quality.sharpness:.0f}, at least "
                f"{self.min_sharpness:.0f} needed)"
            )
        if abs(quality.yaw_ratio) > self.max_yaw_ratio:
            found.append(
                f"face turned away (yaw ratio {quality.yaw_ratio:+.2f}, at most "
                f"{self.max_yaw_ratio:.2f} allowed)"
            )
        return found


def measure(image: ImageArray, detection: Detection) -> FaceQuality:
    """Size, sharpness and pose of one detected face in ``image``."""
    keypoints = detection.keypoints
    right, left = keypoints[Keypoint.RIGHT_EYE], keypoints[Keypoint.LEFT_EYE]
    eye_vector = left - right
    eye_distance = float(np.linalg.norm(eye_vector))
    midpoint = (left + right) / 2
    yaw = (
        float(np.dot(keypoints[Keypoint.NOSE_TIP] - midpoint, eye_vector)) / eye_distance**2
        if eye_distance > 0
        else 1.0
    )
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (round(v) for v in detection.box)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    sharpness = 0.0
    if x1 - x0 >= 2 and y1 - y0 >= 2:
        gray = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
        gray = cv2.resize(gray, (SHARPNESS_SIZE, SHARPNESS_SIZE), interpolation=cv2.INTER_AREA)
        sharpness = float(cv2.Laplacian(gray, cv2.CV_64F).var())
        gray.fill(0)
    return FaceQuality(eye_distance, sharpness, yaw)
