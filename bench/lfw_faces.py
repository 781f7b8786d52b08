"""Finding the largest face of LFW images for the bench scripts.

The accuracy figures themselves come from ``edgewatch eval`` (the product's
own command, docs/accuracy.md). This module keeps what only benchmarks need:
a face finder for either the product's detector (with the device's landmark
refinement) or the peer YuNet detector from ``../shared``, used to derive the
dlib alignment template and to export chips for the LiteRT conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edgewatch.config import DEFAULT_LANDMARKER
from edgewatch.imaging import load_image as read_bgr
from edgewatch.vision.models import ModelManifest
from edgewatch.vision.types import Detection, ImageArray

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = PROJECT_ROOT.parent / "shared"
LFW_DIR = SHARED_DIR / "data" / "faces" / "lfw-devtest"
YUNET_FILE = SHARED_DIR / "models" / "peers" / "yunet" / "face_detection_yunet_2023mar.onnx"
RESEARCH_MANIFEST = PROJECT_ROOT / "bench" / "research_models.toml"
DETECTORS = ("blazeface-full-range", "blazeface-short-range", "yunet")

FaceFinder = Callable[[ImageArray], Detection | None]

__all__ = ["DETECTORS", "LFW_DIR", "FaceFinder", "load_manifest", "make_face_finder", "read_bgr"]


def load_manifest() -> ModelManifest:
    """Shipped models plus the research-only ones."""
    manifest = ModelManifest.default()
    manifest.extend(RESEARCH_MANIFEST)
    return manifest


# --------------------------------------------------------------------------- detection


def make_face_finder(
    name: str,
    manifest: ModelManifest,
    min_score: float | None = None,
    landmarker_id: str | None = DEFAULT_LANDMARKER,
) -> FaceFinder:
    """A function giving the largest face in a frame, for one detector choice.

    BlazeFace is the product's detector; YuNet (from ../shared) is a peer kept
    for comparison and for work before the BlazeFace wrapper existed. With a
    landmarker (the product's default), the largest face's keypoints are
    refined exactly as the device refines them, and a face the landmark model
    rejects counts as not found.
    """
    if name == "yunet":
        return _yunet_finder()
    from edgewatch.vision.detect import create_detector
    from edgewatch.vision.landmarks import create_landmarker

    options = {} if min_score is None else {"min_score": min_score}
    detector = create_detector(manifest, name, **options)
    landmarker = None if landmarker_id is None else create_landmarker(manifest, landmarker_id)

    def largest(frame: ImageArray) -> Detection | None:
        face = _largest(detector.detect(frame))
        if face is None or landmarker is None:
            return face
        found = landmarker.landmarks(frame, face)
        return found.refine(face) if found.presence >= landmarker.min_presence else None

    return largest


def _largest(detections: Iterable[Detection]) -> Detection | None:
    return max(detections, key=lambda d: d.width * d.height, default=None)


def _yunet_finder() -> FaceFinder:
    detector = cv2.FaceDetectorYN.create(str(YUNET_FILE), "", (320, 320), 0.6, 0.3, 50)

    def largest(frame: ImageArray) -> Detection | None:
        detector.setInputSize((frame.shape[1], frame.shape[0]))
        _, faces = detector.detect(frame)
        if faces is None:
            return None
        return _largest(yunet_detection(row) for row in faces)

    return largest


def yunet_detection(row: npt.NDArray[np.float32]) -> Detection:
    """A YuNet row as a Detection in BlazeFace keypoint order (ears unknown: NaN).

    YuNet gives right eye, left eye, nose tip, right and left mouth corner;
    the mouth centre is the corners' mean.
    """
    x, y, w, h = (float(v) for v in row[:4])
    marks = row[4:14].reshape(5, 2).astype(np.float32)
    keypoints = np.full((6, 2), np.nan, dtype=np.float32)
    keypoints[:3] = marks[:3]
    keypoints[3] = marks[3:5].mean(axis=0)
    return Detection(box=(x, y, x + w, y + h), keypoints=keypoints, score=float(row[14]))
