"""Face alignment: warp a detected face onto an embedder's canonical chip.

An embedder only gives comparable embeddings for faces placed the way its
training data was placed, so every face is mapped onto the embedder's
*template*: where the eyes, nose tip and mouth centre sit in its chip, in chip
pixels. The map is a similarity (rotation, uniform scale, translation) fitted by
least squares (Umeyama 1991): a similarity keeps the face's proportions, which
are part of the identity, while four points over-determine it, so one noisy
keypoint pulls the fit less than it would an exact three-point affine map.

The chip is written into a buffer the caller owns (usually one slot of a
preallocated ``(n, H, W, 3)`` batch), so the pipeline allocates nothing per
face for the chip and can overwrite it as soon as the embedding exists.

Nothing here logs, and error messages never contain coordinates: keypoints are
biometric data.
"""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from edgewatch.errors import InputError
from edgewatch.vision.types import Detection, ImageArray, Keypoint

Matrix = npt.NDArray[np.float64]

ALIGNMENT_KEYPOINTS: Final = (
    Keypoint.RIGHT_EYE,
    Keypoint.LEFT_EYE,
    Keypoint.NOSE_TIP,
    Keypoint.MOUTH_CENTER,
)
"""The keypoints a template places, in template row order.

The ear tragions are left out: they are the least precise BlazeFace keypoints
and are occluded in any turned face, so they would only add noise to the fit.
"""

MIN_EYE_DISTANCE_PX: Final = 2.0
"""Eyes closer than this cannot give a usable rotation or scale."""

MIN_PREFILTER_SCALE: Final = 0.5
"""Below this scale bilinear warping skips source pixels and aliases.

Bilinear interpolation reads only the 2x2 source pixels around each chip
pixel; when the chip is more than twice smaller than the face, detail between
those samples is dropped unevenly (moire on hair and textured clothing), so
embeddings of the same face would change with distance from the camera. Such
faces are first shrunk with area averaging (as dlib's own chip extraction
does with its image pyramid).
"""


def alignment_points(detection: Detection) -> Matrix:
    """The (4, 2) keypoints that alignment uses, in :data:`ALIGNMENT_KEYPOINTS` order."""
    keypoints = np.asarray(detection.keypoints, dtype=np.float64)
    if keypoints.ndim != 2 or keypoints.shape[1] != 2 or keypoints.shape[0] < len(Keypoint):
        raise InputError("face keypoints have the wrong shape; cannot align the face")
    return keypoints[list(ALIGNMENT_KEYPOINTS)]


def estimate_similarity(src: npt.ArrayLike, dst: npt.ArrayLike) -> Matrix:
    """The (2, 3) similarity that maps ``src`` points onto ``dst`` points best.

    Least squares over all point pairs, constrained to a proper rotation (a
    mirrored face is a different face, so a reflection never improves the
    fit). This is Umeyama's solution; in 2-D it reduces to a closed form: with
    centred points as complex numbers s and d, the scaled rotation is
    ``sum(conj(s) * d) / sum(|s|^2)``, i.e. ``a + ib`` below.
    """
    src_pts = _as_points(src, "keypoints")
    dst_pts = _as_points(dst, "template points")
    if src_pts.shape != dst_pts.shape:
        raise ValueError("keypoints and template must have the same number of points")
    src_mean = src_pts.mean(axis=0)
    dst_mean = dst_pts.mean(axis=0)
    s = src_pts - src_mean
    d = dst_pts - dst_mean
    spread = float((s**2).sum())
    if not spread > len(s) * (MIN_EYE_DISTANCE_PX / 2) ** 2:
        raise InputError("face keypoints (nearly) coincide; cannot align the face")
    a = float((s * d).sum()) / spread
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / spread
    if not a * a + b * b > 0:
        raise InputError("face keypoints are degenerate; cannot align the face")
    rotation = np.array([[a, -b], [b, a]])
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = rotation
    matrix[:, 2] = dst_mean - rotation @ src_mean
    return matrix


def chip_transform(detection: Detection, template: npt.ArrayLike) -> Matrix:
    """The (2, 3) frame-to-chip similarity for ``detection`` and a 4-point ``template``.

    Checks the eyes separately because the least-squares fit would otherwise
    happily return a transform for a detection whose eyes collapsed onto one
    point (the nose and mouth still spread the points), and such a chip is
    rotated arbitrarily.
    """
    points = alignment_points(detection)
    if not np.isfinite(points).all():
        raise InputError("face keypoints are not finite numbers; cannot align the face")
    eye_distance = float(np.linalg.norm(points[1] - points[0]))
    if eye_distance < MIN_EYE_DISTANCE_PX:
        raise InputError("face keypoints put both eyes at one spot; cannot align the face")
    return estimate_similarity(points, template)


def align_face(
    frame: ImageArray, detection: Detection, template: npt.ArrayLike, out: ImageArray
) -> ImageArray:
    """Warp the face in ``frame`` into ``out`` (H, W, 3 uint8) and return ``out``.

    ``template`` holds the (4, 2) chip-pixel positions of the right eye, left
    eye, nose tip and mouth centre; the chip size is ``out``'s size. Pixels
    that map outside the frame are black, as in dlib's and insightface's chips.
    """
    matrix = chip_transform(detection, template)
    warp_into(frame, matrix, out)
    return out


def warp_into(frame: ImageArray, matrix: Matrix, out: ImageArray) -> None:
    """Apply the frame-to-chip ``matrix`` to ``frame``, writing every pixel of ``out``.

    For callers that fit the matrix themselves (e.g. from refined landmarks
    with :func:`estimate_similarity`); :func:`align_face` ends here too.
    """
    _check_image(frame, "frame")
    _check_chip_buffer(out)
    source, matrix = _prefilter(frame, matrix, (out.shape[1], out.shape[0]))
    result = cv2.warpAffine(
        source,
        matrix,
        (out.shape[1], out.shape[0]),
        dst=out,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    if not np.shares_memory(result, out):
        # OpenCV reallocates silently when dst does not fit; never lose the write.
        np.copyto(out, result)
    if source is not frame:
        source.fill(0)  # the area-averaged copy of the face: overwritten once used


def _prefilter(
    frame: ImageArray, matrix: Matrix, chip_size: tuple[int, int]
) -> tuple[ImageArray, Matrix]:
    """Shrink the face region by area averaging when the warp would alias.

    Returns the image to warp and the matrix adjusted to it. Only the region
    that the chip covers is resized, so a small face in a large frame costs
    nothing and a large one costs one resize of its own area.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale >= MIN_PREFILTER_SCALE:
        return frame, matrix
    x0, y0, x1, y1 = _source_region(frame, matrix, chip_size, margin=int(np.ceil(2 / scale)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return frame, matrix
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    small = cv2.resize(frame[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
    rx, ry = size[0] / (x1 - x0), size[1] / (y1 - y0)
    # Pixel centres: small pixel q covers source (q + 0.5) / r - 0.5 (+ crop offset).
    small_to_frame = np.array(
        [[1 / rx, 0.0, 0.5 / rx - 0.5 + x0], [0.0, 1 / ry, 0.5 / ry - 0.5 + y0], [0, 0, 1]]
    )
    return np.ascontiguousarray(small), matrix @ small_to_frame


def _source_region(
    frame: ImageArray, matrix: Matrix, chip_size: tuple[int, int], margin: int
) -> tuple[int, int, int, int]:
    """The frame box (x0, y0, x1, y1) that the chip's pixels come from, clipped."""
    width, height = chip_size
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], float)
    inverse = cv2.invertAffineTransform(matrix)
    mapped = corners @ inverse.T
    x0 = max(0, int(np.floor(mapped[:, 0].min())) - margin)
    y0 = max(0, int(np.floor(mapped[:, 1].min())) - margin)
    x1 = min(frame.shape[1], int(np.ceil(mapped[:, 0].max())) + margin + 1)
    y1 = min(frame.shape[0], int(np.ceil(mapped[:, 1].max())) + margin + 1)
    return x0, y0, x1, y1


def _as_points(points: npt.ArrayLike, what: str) -> Matrix:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 2:
        raise ValueError(f"{what} must be an (n >= 2, 2) array")
    if not np.isfinite(array).all():
        raise InputError(f"{what} are not finite numbers; cannot align the face")
    return array


def _check_image(image: ImageArray, what: str) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what} must be an (H, W, 3) uint8 BGR image")


def _check_chip_buffer(out: ImageArray) -> None:
    """The chip buffer must take OpenCV's write in place, or the caller's batch stays stale."""
    _check_image(out, "chip buffer")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("chip buffer must be a writable C-contiguous array")
