"""Derive the 4-point template that makes our chips look like dlib's own chips.

Why: dlib's ResNet was trained on chips cut by ``dlib.get_face_chip(img, shape,
150, 0.25)`` from its 5-point shape predictor (eye corners and the base of the
nose), and gives its published accuracy only on chips cut that way. The
product's detector gives different keypoints (eye centres, nose tip, mouth
centre), whose places in dlib's chip are nowhere documented. So they are
measured: for a few hundred LFW faces, run dlib's own alignment, map the
product detector's keypoints through dlib's image-to-chip transform, and take
the per-point median (robust to the odd bad detection).

The template is measured on the images of half of the LFW people in ../shared
and the parity check that follows (our chip vs dlib's chip for the same face,
cosine of the two embeddings) runs on the other half.

Prints the ``[models.dlib-resnet-v1.params]`` values to put in the manifest.

Usage: .venv/bin/python bench/derive_dlib_template.py [--faces 300] [--parity 150]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dlib
import face_recognition_models
import numpy as np
import numpy.typing as npt

from edgewatch.config import DEFAULT_LANDMARKER
from edgewatch.errors import EdgewatchError
from edgewatch.vision.align import align_face, alignment_points, estimate_similarity
from edgewatch.vision.embed import DlibEmbedder, DlibParams
from edgewatch.vision.types import Detection, FloatArray, ImageArray

try:
    from bench.lfw_faces import (
        DETECTORS,
        LFW_DIR,
        FaceFinder,
        load_manifest,
        make_face_finder,
        read_bgr,
    )
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    from lfw_faces import (  # type: ignore[import-not-found, no-redef]
        DETECTORS,
        LFW_DIR,
        FaceFinder,
        load_manifest,
        make_face_finder,
        read_bgr,
    )

CHIP_SIZE = 150
PADDING = 0.25
SHAPE_PREDICTOR = (
    Path(face_recognition_models.__file__).parent
    / "models"
    / "shape_predictor_5_face_landmarks.dat"
)
Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class DlibFace:
    """dlib's own alignment of one face: its shape and the image-to-chip map."""

    shape: dlib.full_object_detection
    to_chip: Matrix


class DlibAligner:
    """dlib's reference pipeline: HOG detector, 5-point shape, get_face_chip_details."""

    def __init__(self) -> None:
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(SHAPE_PREDICTOR))

    def align(self, rgb: ImageArray, near: Detection) -> DlibFace | None:
        """dlib's alignment of the face whose box contains ``near``'s keypoint centre."""
        centre = np.nanmean(alignment_points(near), axis=0)
        for rect in self._detector(rgb, 1):
            if (
                rect.left() <= centre[0] <= rect.right()
                and rect.top() <= centre[1] <= rect.bottom()
            ):
                shape = self._predictor(rgb, rect)
                details = dlib.get_face_chip_details(shape, CHIP_SIZE, PADDING)
                return DlibFace(shape, mapping_to_chip(details))
        return None


def mapping_to_chip(details: dlib.chip_details) -> Matrix:
    """dlib's ``get_mapping_to_chip`` (not in its Python API), as a (2, 3) matrix.

    The chip's corners are the corners of ``details.rect`` rotated by
    ``details.angle`` about the rect's centre (dlib/image_transforms/
    interpolation.h); three corners fix the affine map. Checked against
    ``dlib.get_face_chip``'s pixels by :func:`chip_pixel_error`.
    """
    rect = details.rect
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    cos, sin = np.cos(details.angle), np.sin(details.angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    corners = np.array(
        [[rect.left(), rect.top()], [rect.right(), rect.top()], [rect.right(), rect.bottom()]]
    )
    image = (corners - centre) @ rotation.T + centre
    chip = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]], float)
    solution = np.linalg.solve(np.hstack([image, np.ones((3, 1))]), chip)
    return solution.T.astype(np.float64)


def chip_pixel_error(rgb: ImageArray, face: DlibFace) -> float:
    """Mean absolute pixel difference between dlib's chip and ours from the same map."""
    import cv2

    ours = cv2.warpAffine(rgb, face.to_chip, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR)
    theirs = dlib.get_face_chip(rgb, face.shape, CHIP_SIZE, PADDING)
    inner = slice(2, CHIP_SIZE - 2)
    return float(np.abs(ours.astype(int) - theirs.astype(int))[inner, inner].mean())


def to_chip_points(detection: Detection, to_chip: Matrix) -> Matrix:
    """The detection's 4 alignment keypoints in dlib chip pixels."""
    points = alignment_points(detection)
    return points @ to_chip[:, :2].T + to_chip[:, 2]


# --------------------------------------------------------------------------- images


def split_images(limit: int, part: int) -> list[Path]:
    """Up to ``limit`` images of every other person (``part`` 0 or 1), spread evenly.

    ../shared holds only the people of pairsDevTest, so derivation (part 0)
    and the parity check (part 1) are kept apart by person: the parity check
    never sees a face, nor a person, the template was measured on.
    """
    people = sorted(p for p in LFW_DIR.iterdir() if p.is_dir())[part::2]
    images = sorted(image for folder in people for image in folder.glob("*.jpg"))
    stride = max(1, len(images) // limit)
    return images[::stride][:limit]


def rgb_of(bgr: ImageArray) -> ImageArray:
    """dlib takes RGB in contiguous memory."""
    return np.ascontiguousarray(bgr[..., ::-1])


# --------------------------------------------------------------------------- derive


def collect(
    paths: Sequence[Path], finder: FaceFinder, aligner: DlibAligner
) -> tuple[Matrix, list[float]]:
    """Our keypoints in dlib chip coordinates, (n, 4, 2), and dlib chip pixel errors."""
    samples: list[Matrix] = []
    pixel_errors: list[float] = []
    for path in paths:
        bgr = read_bgr(path)
        detection = finder(bgr)
        if detection is None:
            continue
        rgb = rgb_of(bgr)
        face = aligner.align(rgb, detection)
        if face is None:
            continue
        samples.append(to_chip_points(detection, face.to_chip))
        if len(pixel_errors) < 20:
            pixel_errors.append(chip_pixel_error(rgb, face))
    return np.asarray(samples), pixel_errors


def summarise(samples: Matrix) -> Matrix:
    """Per-point median, printed with its spread (median absolute deviation)."""
    template = np.median(samples, axis=0)
    spread = np.median(np.abs(samples - template), axis=0)
    names = ("right eye", "left eye", "nose tip", "mouth centre")
    for name, point, mad in zip(names, template, spread, strict=True):
        print(f"  {name:12s} x {point[0]:7.3f} y {point[1]:7.3f}  (MAD {mad[0]:.2f}, {mad[1]:.2f})")
    residual = [_fit_rms(s, template) for s in samples]
    print(f"  per-face similarity fit RMS: median {np.median(residual):.2f} px")
    return template


def _fit_rms(points: Matrix, template: Matrix) -> float:
    matrix = estimate_similarity(points, template)
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    return float(np.sqrt(((mapped - template) ** 2).sum(axis=1).mean()))


# --------------------------------------------------------------------------- parity


def parity(
    paths: Sequence[Path], finder: FaceFinder, aligner: DlibAligner, template: Matrix
) -> FloatArray:
    """Cosine between dlib's own-pipeline embedding and ours, per held-out face."""
    manifest = load_manifest()
    params = DlibParams(template=_as_template(template), threshold=0.0, margin=0.0)
    embedder = DlibEmbedder("dlib-resnet-v1", manifest.resolve("dlib-resnet-v1"), params)
    model = dlib.face_recognition_model_v1(str(manifest.resolve("dlib-resnet-v1")))
    chip = embedder.spec.chip_buffer(1)
    cosines = []
    for path in paths:
        bgr = read_bgr(path)
        detection = finder(bgr)
        face = None if detection is None else aligner.align(rgb_of(bgr), detection)
        if detection is None or face is None:
            continue
        align_face(bgr, detection, embedder.spec.template_array(), chip[0])
        ours = embedder.embed(chip)[0]
        reference = np.asarray(model.compute_face_descriptor(rgb_of(bgr), face.shape, 0, PADDING))
        cosines.append(float(ours @ (reference / np.linalg.norm(reference))))
    return np.asarray(cosines, dtype=np.float32)


def _as_template(
    template: Matrix,
) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]:
    p = [(round(float(x), 2), round(float(y), 2)) for x, y in template]
    return (p[0], p[1], p[2], p[3])


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Derive the dlib 150x150 chip template for the product detector's "
        "keypoints, and check embedding parity with dlib's own alignment.",
    )
    parser.add_argument("--detector", choices=DETECTORS, default="blazeface-full-range")
    parser.add_argument(
        "--landmarker",
        default=DEFAULT_LANDMARKER,
        help="landmark model refining the keypoints, as on the device ('none': detector's own)",
    )
    parser.add_argument("--faces", type=int, default=300, help="faces to derive from")
    parser.add_argument("--parity", type=int, default=150, help="held-out faces for parity")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Derive, print the manifest values, check parity; returns the exit code."""
    args = parse_args(argv)
    try:
        landmarker = None if args.landmarker == "none" else args.landmarker
        finder = make_face_finder(args.detector, load_manifest(), landmarker_id=landmarker)
        aligner = DlibAligner()
        samples, pixel_errors = collect(split_images(args.faces, 0), finder, aligner)
        print(f"{len(samples)} faces with both dlib and {args.detector} keypoints")
        if len(samples) < 20:
            raise EdgewatchError("too few faces to derive a template from")
        print(f"dlib chip map check: mean |pixel diff| {np.mean(pixel_errors):.2f} (0-255)")
        template = summarise(samples)
        cosines = parity(split_images(args.parity, 1), finder, aligner, template)
    except EdgewatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"parity on {len(cosines)} held-out faces: cosine(ours, dlib's own chip) median "
        f"{np.median(cosines):.4f}, 5th percentile {np.quantile(cosines, 0.05):.4f}, "
        f"min {cosines.min():.4f}"
    )
    rows = ", ".join(f"[{x:.2f}, {y:.2f}]" for x, y in _as_template(template))
    print(f"\n[models.dlib-resnet-v1.params]\nchip_size = {CHIP_SIZE}\ntemplate = [{rows}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
