"""Alignment: keypoints land on the template, the warp recovers a known similarity,
the chip is written into the caller's buffer, and bad keypoints fail cleanly."""

from __future__ import annotations

import re

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edgewatch.errors import InputError
from edgewatch.vision.align import align_face, chip_transform, estimate_similarity
from edgewatch.vision.embed import ARCFACE_TEMPLATE_112
from edgewatch.vision.types import Detection, ImageArray

TEMPLATE = np.asarray(ARCFACE_TEMPLATE_112, dtype=np.float64)
CHIP = 112


def similarity(angle_deg: float, scale: float, tx: float, ty: float) -> npt.NDArray[np.float64]:
    """A (2, 3) rotation-scale-translation matrix."""
    a = np.deg2rad(angle_deg)
    rotation = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([rotation, [[tx], [ty]]])


def apply(
    matrix: npt.NDArray[np.float64], points: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    return points @ matrix[:, :2].T + matrix[:, 2]


def detection_from(points4: npt.NDArray[np.float64]) -> Detection:
    """A Detection whose eyes, nose and mouth are ``points4``; ears are NaN (unused)."""
    keypoints = np.full((6, 2), np.nan, dtype=np.float32)
    keypoints[:4] = points4
    x0, y0 = points4.min(axis=0) - 20
    x1, y1 = points4.max(axis=0) + 20
    return Detection(box=(x0, y0, x1, y1), keypoints=keypoints, score=0.9)


def synthetic_chip() -> ImageArray:
    """A chip-sized test card: smooth gradients plus a marker dot at every template point."""
    ys, xs = np.mgrid[0:CHIP, 0:CHIP].astype(np.float32)
    card = np.stack([xs * 2, ys * 2, 128 + 60 * np.sin(xs / 9) * np.cos(ys / 7)], axis=-1)
    chip: ImageArray = np.clip(card, 0, 255).astype(np.uint8)
    for x, y in TEMPLATE:
        cv2.circle(chip, (round(x), round(y)), 4, (255, 255, 255), -1, cv2.LINE_AA)
    return chip


def frame_with_face(
    chip: ImageArray, chip_to_frame: npt.NDArray[np.float64], size: tuple[int, int]
) -> ImageArray:
    """Render ``chip`` into a black frame through ``chip_to_frame`` (bicubic)."""
    rendered = cv2.warpAffine(chip, chip_to_frame, size, flags=cv2.INTER_CUBIC)
    return np.asarray(rendered, dtype=np.uint8)


def test_estimate_similarity_recovers_a_known_transform() -> None:
    truth = similarity(23.0, 1.7, 40.0, -12.0)
    src = np.random.default_rng(1).uniform(0, 200, size=(4, 2))
    estimated = estimate_similarity(src, apply(truth, src))
    np.testing.assert_allclose(estimated, truth, atol=1e-9)


def test_keypoints_round_trip_onto_the_template() -> None:
    chip_to_frame = similarity(-35.0, 3.2, 300.0, 150.0)
    keypoints = apply(chip_to_frame, TEMPLATE)
    matrix = chip_transform(detection_from(keypoints), TEMPLATE)
    np.testing.assert_allclose(apply(matrix, keypoints), TEMPLATE, atol=1e-6)


def test_least_squares_fit_spreads_keypoint_noise() -> None:
    """With noisy keypoints the fit is the best similarity, not an exact hit on any one point."""
    keypoints = TEMPLATE * 2 + np.array([[1.5, 0], [0, -1.5], [-1.5, 0], [0, 1.5]])
    matrix = chip_transform(detection_from(keypoints), TEMPLATE)
    residual = np.linalg.norm(apply(matrix, keypoints) - TEMPLATE, axis=1)
    assert residual.max() < 1.0
    scale = np.sqrt(np.linalg.det(matrix[:, :2]))
    assert scale == pytest.approx(0.5, rel=0.02)


def test_warp_undoes_rotation_and_scale_of_a_synthetic_face() -> None:
    chip = synthetic_chip()
    chip_to_frame = similarity(30.0, 2.5, 320.0, 60.0)
    frame = frame_with_face(chip, chip_to_frame, (640, 480))
    detection = detection_from(apply(chip_to_frame, TEMPLATE))
    out = np.zeros((CHIP, CHIP, 3), dtype=np.uint8)

    align_face(frame, detection, TEMPLATE, out)

    matrix = chip_transform(detection, TEMPLATE)
    angle = np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))
    assert angle == pytest.approx(-30.0, abs=1e-4)  # float32 keypoints
    assert np.sqrt(np.linalg.det(matrix[:, :2])) == pytest.approx(1 / 2.5, rel=1e-5)
    inner = (slice(8, CHIP - 8), slice(8, CHIP - 8))
    difference = np.abs(out.astype(int) - chip.astype(int))[inner]
    assert difference.mean() < 3.0


def test_large_faces_are_area_averaged_not_aliased() -> None:
    """A face 4x larger than the chip: the warp must average, like cv2.resize(INTER_AREA)."""
    stripes = np.zeros((600, 600, 3), dtype=np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: pure aliasing bait
    scale = 0.25
    offset = scale * 0.5 - 0.5  # pixel-centre convention of cv2.resize
    frame_to_chip = np.array([[scale, 0, offset], [0, scale, offset]])
    keypoints = apply(np.asarray(cv2.invertAffineTransform(frame_to_chip), np.float64), TEMPLATE)
    out = np.zeros((CHIP, CHIP, 3), dtype=np.uint8)

    align_face(stripes, detection_from(keypoints), TEMPLATE, out)

    reference = cv2.resize(stripes, (150, 150), interpolation=cv2.INTER_AREA)[:CHIP, :CHIP]
    np.testing.assert_allclose(out.astype(int), reference.astype(int), atol=2)
    assert out.std() < 3  # grey, no moire


def test_chip_is_written_into_the_given_slot_only() -> None:
    chip = synthetic_chip()
    chip_to_frame = similarity(10.0, 1.5, 200.0, 100.0)
    frame = frame_with_face(chip, chip_to_frame, (480, 360))
    detection = detection_from(apply(chip_to_frame, TEMPLATE))
    batch = np.full((3, CHIP, CHIP, 3), 7, dtype=np.uint8)

    result = align_face(frame, detection, TEMPLATE, batch[1])

    assert np.shares_memory(result, batch[1])
    assert (batch[0] == 7).all() and (batch[2] == 7).all()
    assert not (batch[1] == 7).all()


def test_pixels_outside_the_frame_become_black() -> None:
    """Every chip pixel is overwritten: stale data of an earlier face never survives."""
    frame = np.full((100, 100, 3), 200, dtype=np.uint8)
    keypoints = apply(similarity(0.0, 1.0, -60.0, -60.0), TEMPLATE)  # face hangs off the corner
    out = np.full((CHIP, CHIP, 3), 99, dtype=np.uint8)

    align_face(frame, detection_from(keypoints), TEMPLATE, out)

    assert not (out == 99).any()
    assert (out[:5, :5] == 0).all()
    assert (out[-5:, -5:] == 200).all()


def test_mirrored_keypoints_still_give_a_proper_rotation() -> None:
    keypoints = TEMPLATE.copy()
    keypoints[[0, 1]] = keypoints[[1, 0]]  # eyes swapped: a mirror image
    matrix = chip_transform(detection_from(keypoints), TEMPLATE)
    assert np.linalg.det(matrix[:, :2]) > 0


@pytest.mark.parametrize(
    "keypoints",
    [
        pytest.param(np.full((4, 2), 123.456), id="all-coincide"),
        pytest.param(np.array([[50.0, 60.0], [50.5, 60.0], [52.0, 80.0], [51.0, 95.0]]), id="eyes"),
        pytest.param(np.array([[np.nan, 1.0], [80.0, 60.0], [65.0, 80.0], [64.0, 95.0]]), id="nan"),
        pytest.param(np.array([[np.inf, 1.0], [80.0, 60.0], [65.0, 80.0], [64.0, 95.0]]), id="inf"),
    ],
)
def test_degenerate_keypoints_raise_input_error_without_coordinates(
    keypoints: npt.NDArray[np.float64],
) -> None:
    frame = np.zeros((200, 200, 3), dtype=np.uint8)
    out = np.zeros((CHIP, CHIP, 3), dtype=np.uint8)
    with pytest.raises(InputError) as caught:
        align_face(frame, detection_from(keypoints), TEMPLATE, out)
    assert not re.search(r"\d", str(caught.value))


def test_detection_repr_stays_redacted_in_errors() -> None:
    detection = detection_from(np.full((4, 2), 42.0))
    with pytest.raises(InputError) as caught:
        chip_transform(detection, TEMPLATE)
    assert "42" not in str(caught.value) and "42" not in repr(caught.value)


@pytest.mark.parametrize(
    "out",
    [
        pytest.param(np.zeros((CHIP, CHIP, 3), dtype=np.float32), id="float"),
        pytest.param(np.zeros((CHIP, CHIP), dtype=np.uint8), id="grey"),
        pytest.param(np.zeros((CHIP, CHIP * 2, 3), dtype=np.uint8)[:, ::2], id="strided"),
    ],
)
def test_unusable_chip_buffers_are_refused(out: npt.NDArray[np.generic]) -> None:
    frame = np.zeros((200, 200, 3), dtype=np.uint8)
    detection = detection_from(TEMPLATE + 40)
    with pytest.raises(ValueError, match="chip buffer"):
        align_face(frame, detection, TEMPLATE, out)  # type: ignore[arg-type]
