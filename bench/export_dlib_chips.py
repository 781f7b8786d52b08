"""Export aligned 150x150 face chips and dlib's descriptors of them to an .npz file.

Why: the dlib -> LiteRT converter (models/convert/dlib_resnet_to_tflite.py) runs in
a TensorFlow venv that has neither edgewatch nor dlib. It needs real chips, made
exactly as the device makes them (BlazeFace full-range, FaceMesh refinement, the
``dlib-resnet-v1`` template), to calibrate the int8 variant, and chips with dlib's
own descriptors to prove each converted variant reproduces dlib. This script makes
both, with the project's venv.

LFW people in ../shared are split by person, as bench/derive_dlib_template.py
splits them: ``calibration`` takes every other person starting with the first,
``parity`` the others, so a parity face (and its person) was never used to
calibrate.

The file holds ``chips_bgr`` (n, 150, 150, 3) uint8 BGR as the device's aligner
writes them, ``dlib_descriptors`` (n, 128) float32, dlib's raw (unnormalised)
output for each chip, and ``names`` (LFW-relative image paths). Chips are face
images: write them outside the repository (e.g. /tmp); this script refuses paths
inside it.

Usage:
    .venv/bin/python bench/export_dlib_chips.py --split calibration --count 200 \\
        --out /tmp/dlib-calibration.npz
    .venv/bin/python bench/export_dlib_chips.py --split parity --count 300 \\
        --out /tmp/dlib-parity.npz
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import dlib
import numpy as np
import numpy.typing as npt

from edgewatch.config import DEFAULT_LANDMARKER
from edgewatch.errors import EdgewatchError
from edgewatch.vision.align import align_face
from edgewatch.vision.embed import create_embedder
from edgewatch.vision.models import ModelManifest
from edgewatch.vision.types import ImageArray

try:
    from bench.lfw_faces import LFW_DIR, FaceFinder, make_face_finder, read_bgr
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    from lfw_faces import (  # type: ignore[import-not-found, no-redef]
        LFW_DIR,
        FaceFinder,
        make_face_finder,
        read_bgr,
    )

PROJECT_ROOT: Final = Path(__file__).resolve().parents[1]
DLIB_MODEL_ID: Final = "dlib-resnet-v1"
DETECTOR_ID: Final = "blazeface-full-range"
SPLITS: Final = {"calibration": 0, "parity": 1}


def lfw_split(split: str, limit: int, root: Path = LFW_DIR) -> list[Path]:
    """Up to ``limit`` images of every other LFW person, spread evenly over the half."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}")
    if not root.is_dir():
        raise EdgewatchError(f"{root}: LFW images not found (../shared/data/faces/lfw-devtest)")
    people = sorted(p for p in root.iterdir() if p.is_dir())[SPLITS[split] :: 2]
    images = sorted(image for folder in people for image in folder.glob("*.jpg"))
    stride = max(1, len(images) // max(1, limit))
    return images[::stride][:limit]


def make_chips(
    paths: Sequence[Path], manifest: ModelManifest, finder: FaceFinder | None = None
) -> tuple[list[Path], ImageArray]:
    """Chips (BGR) of the largest face of each image, aligned as the device aligns them.

    Images without a detected face are left out; the returned paths say which
    images the chips belong to.
    """
    if finder is None:
        finder = make_face_finder(DETECTOR_ID, manifest, landmarker_id=DEFAULT_LANDMARKER)
    spec = create_embedder(manifest, DLIB_MODEL_ID).spec
    template = spec.template_array()
    found: list[Path] = []
    chips = spec.chip_buffer(len(paths))
    for path in paths:
        frame = read_bgr(path)
        detection = finder(frame)
        if detection is None:
            continue
        align_face(frame, detection, template, chips[len(found)])
        found.append(path)
    return found, chips[: len(found)]


def dlib_descriptors(manifest: ModelManifest, chips: ImageArray) -> npt.NDArray[np.float32]:
    """dlib's raw 128-d output for each BGR chip (DlibEmbedder normalises; this does not)."""
    model = dlib.face_recognition_model_v1(str(manifest.resolve(DLIB_MODEL_ID)))
    rgb = [np.ascontiguousarray(chip[..., ::-1]) for chip in chips]
    return np.asarray(model.compute_face_descriptor(rgb), dtype=np.float32).reshape(-1, 128)


def inside_repository(path: Path) -> bool:
    return path.resolve().is_relative_to(PROJECT_ROOT)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Write aligned 150x150 LFW face chips (the device's alignment for "
        "dlib-resnet-v1) and dlib's descriptors of them to an .npz, for the dlib -> "
        "LiteRT converter (int8 calibration, parity checks).",
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        required=True,
        help="LFW people: 'calibration' (even-numbered people) or 'parity' (odd); disjoint",
    )
    parser.add_argument("--count", type=int, default=200, help="images to use (default 200)")
    parser.add_argument(
        "--out", type=Path, required=True, help="the .npz to write, outside the repository"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Export the chips; returns the process exit code."""
    args = parse_args(argv)
    if inside_repository(args.out):
        print(f"error: {args.out} is inside the repository; face chips stay out of it",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.count < 1:
        print("error: --count must be positive", file=sys.stderr)
        return 2
    try:
        start = time.perf_counter()
        manifest = ModelManifest.default()
        paths, chips = make_chips(lfw_split(args.split, args.count), manifest)
        descriptors = dlib_descriptors(manifest, chips)
    except EdgewatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    names = np.asarray([str(p.relative_to(LFW_DIR)) for p in paths])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("wb") as handle:
        np.savez_compressed(handle, chips_bgr=chips, dlib_descriptors=descriptors, names=names)
    print(
        f"{len(paths)} chips ({args.count} images, split {args.split}) -> {args.out} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
