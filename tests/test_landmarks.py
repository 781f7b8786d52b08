"""FaceMesh landmarks: precise alignment points and the face-presence gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgewatch.camera.video import VideoCamera, VideoCameraConfig
from edgewatch.errors import ConfigError, ModelError
from edgewatch.imaging import load_image
from edgewatch.vision.detect import FaceDetector
from edgewatch.vision.landmarks import Landmarker, create_landmarker
from edgewatch.vision.models import ModelManifest
from edgewatch.vision.types import Detection


def test_frontal_face_points_are_where_the_features_are(
    faces_dir: Path, detector: FaceDetector, landmarker: Landmarker
) -> None:
    image = load_image(faces_dir / "examples" / "obama.jpg")
    detection = detector.detect(image)[0]
    found = landmarker.landmarks(image, detection)
    assert found.presence > 0.9
    assert found.points.shape == (5, 2) and found.points.dtype == np.float32
    right_eye, left_eye, nose, right_mouth, left_mouth = found.points
    eye_distance = float(np.linalg.norm(left_eye - right_eye))
    # Agrees with BlazeFace's coarse eyes and nose to a fraction of the eye distance...
    blaze = detection.keypoints
    assert np.linalg.norm(right_eye - blaze[0]) < 0.15 * eye_distance
    assert np.linalg.norm(left_eye - blaze[1]) < 0.15 * eye_distance
    assert np.linalg.norm(nose - blaze[2]) < 0.15 * eye_distance
    # ...and has the face's layout: eyes above nose above mouth, mouth corners apart.
    assert right_eye[0] < nose[0] < left_eye[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(right_mouth[1], left_mouth[1])
    assert right_mouth[0] < nose[0] < left_mouth[0]


def test_tilted_face_gives_tilted_points(
    faces_dir: Path, detector: FaceDetector, landmarker: Landmarker
) -> None:
    import cv2

    upright = load_image(faces_dir / "examples" / "obama.jpg")
    height, width = upright.shape[:2]
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), -25.0, 1.0)  # 25 deg clockwise
    tilted = cv2.warpAffine(upright, rotation, (width, height))
    found = landmarker.landmarks(tilted, detector.detect(tilted)[0])
    right_eye, left_eye = found.points[0], found.points[1]
    angle = np.degrees(np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))
    assert angle == pytest.approx(25.0, abs=4.0)
    assert found.presence > 0.9


def test_profile_faces_fail_the_presence_gate(
    videos_dir: Path, detector: FaceDetector, landmarker: Landmarker
) -> None:
    """Alex Lacamoire at the piano (frames 30-60 of the hamilton clip) is seen in profile."""
    presences = []
    config = VideoCameraConfig(path=videos_dir / "short_hamilton_clip.mp4")
    with VideoCamera(config) as camera:
        for frame in camera:
            if frame.index > 60:
                break
            if frame.index >= 30 and frame.index % 5 == 0:
                for detection in detector.detect(frame.image):
                    if 120 < detection.box[0] < 220:
                        presences.append(landmarker.landmarks(frame.image, detection).presence)
    assert presences, "the profile face must be detected for this test to mean anything"
    assert max(presences) < landmarker.min_presence


def test_a_box_without_a_face_fails_the_presence_gate(landmarker: Landmarker) -> None:
    wall = np.full((300, 300, 3), 120, np.uint8)
    keypoints = np.array(
        [[120, 130], [180, 130], [150, 160], [150, 190], [100, 140], [200, 140]], np.float32
    )
    fake = Detection(box=(90.0, 90.0, 210.0, 210.0), keypoints=keypoints, score=0.9)
    assert landmarker.landmarks(wall, fake).presence < 0.5


def test_repr_hides_coordinates(
    faces_dir: Path, detector: FaceDetector, landmarker: Landmarker
) -> None:
    image = load_image(faces_dir / "examples" / "biden.jpg")
    found = landmarker.landmarks(image, detector.detect(image)[0])
    text = repr(found)
    assert "redacted" in text
    assert not any(str(int(v)) in text for v in found.points.ravel() if v > 10)


def test_wrong_kind_and_bad_options(manifest: ModelManifest) -> None:
    with pytest.raises(ModelError, match="not a landmarker"):
        create_landmarker(manifest, "blazeface-full-range")
    with pytest.raises(ConfigError, match="min_presence"):
        create_landmarker(manifest, "facemesh-v1", min_presence=3)
