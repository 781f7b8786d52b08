"""The `face_recognition` library's own pipeline on an LFW-style data set, scored by edgewatch.

Why: the product brief quotes figures for `face_recognition` (dlib's HOG
detector, dlib's 5-point alignment and chip, dlib's ResNet) measured on LFW
with another harness and pair set. This script runs that library on exactly
the data `edgewatch eval` uses and scores it with the same code
(`edgewatch.accuracy.metrics`), so the two pipelines are compared like for
like: same pairs, same 10-fold accuracy, same impostor comparisons for FAR.

The library is MIT-licensed pure Python over dlib; its PyPI package depends on
the source distribution of dlib, which this project replaces with the
prebuilt `dlib-bin`, so install it without dependencies (bench only):

    .venv/bin/pip install --no-deps face_recognition==1.3.0
    .venv/bin/python bench/face_recognition_lfw.py [--faces DIR --pairs FILE] [--json FILE]

Scores are reported both ways: cosine of the L2-normalised embeddings (how
edgewatch compares) and the library's own Euclidean distance.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewatch.accuracy import metrics
from edgewatch.accuracy.dataset import list_images, person_of, read_pairs
from edgewatch.errors import EdgewatchError
from edgewatch.imaging import load_image
from edgewatch.progress import ProgressLine

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
FAR_TARGETS = (1e-2, 1e-3, 1e-4)


def encode_all(paths: Sequence[Path]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """The library's embedding of the largest face of each image (its defaults)."""
    import face_recognition

    raw = np.zeros((len(paths), 128))
    found = np.zeros(len(paths), bool)
    progress = ProgressLine("face_recognition", len(paths))
    for row, path in enumerate(paths):
        rgb = np.ascontiguousarray(load_image(path)[..., ::-1])
        boxes = face_recognition.face_locations(rgb)
        if boxes:
            largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
            raw[row] = face_recognition.face_encodings(rgb, [largest])[0]
            found[row] = True
        progress.update(row + 1)
    progress.finish()
    return raw, found


def score(
    similarity: npt.NDArray[np.float64],
    pair_rows: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]],
    same: npt.NDArray[np.bool_],
    found: npt.NDArray[np.bool_],
    names: npt.NDArray[np.str_],
) -> dict[str, Any]:
    """Verification figures from a full similarity matrix (higher = more alike)."""
    first, second = pair_rows
    both = found[first] & found[second]
    floor = float(similarity[found][:, found].min()) - 1.0
    scores = np.where(both, similarity[first, second], floor)
    kept = np.flatnonzero(found)
    upper = np.triu(np.ones((len(kept), len(kept)), bool), k=1)
    different = names[kept][:, None] != names[kept][None, :]
    impostor = similarity[np.ix_(kept, kept)][upper & different]
    return {
        "accuracy": metrics.tenfold_accuracy(scores, same),
        "accuracy_faces_found": metrics.tenfold_accuracy(scores[both], same[both]),
        "tar_at_far": {
            f"{far:g}": metrics.verification_point(far, impostor, scores, same).hit_rate
            for far in FAR_TARGETS
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=SHARED / "lfw-devtest")
    parser.add_argument("--pairs", type=Path, default=SHARED / "lfw-meta" / "pairsDevTest.txt")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    try:
        import face_recognition  # noqa: F401
    except ImportError:
        print(
            "error: face_recognition is not installed: "
            ".venv/bin/pip install --no-deps face_recognition==1.3.0",
            file=sys.stderr,
        )
        return 2
    try:
        pairs = read_pairs(args.pairs, args.faces)
        paths = list_images(args.faces)
    except EdgewatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    index = {path: row for row, path in enumerate(paths)}
    rows = (
        np.array([index[p.first] for p in pairs]),
        np.array([index[p.second] for p in pairs]),
    )
    same = np.array([p.same for p in pairs])
    names = np.array([person_of(p) for p in paths])
    raw, found = encode_all(paths)
    unit = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
    squared = (raw**2).sum(axis=1)
    distance = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * raw @ raw.T, 0.0))
    results = {
        "images": len(paths),
        "images_without_face": int((~found).sum()),
        "cosine": score(unit @ unit.T, rows, same, found, names),
        "euclidean": score(-distance, rows, same, found, names),
    }
    print(f"{args.faces}: {len(paths)} images, {results['images_without_face']} without a face")
    for metric in ("cosine", "euclidean"):
        r = results[metric]
        tar = " / ".join(f"{v:.1%}" for v in r["tar_at_far"].values())
        print(
            f"face_recognition ({metric}): accuracy {r['accuracy']:.2%} "
            f"({r['accuracy_faces_found']:.2%} faces found), TAR at FAR 1e-2 / 1e-3 / 1e-4 {tar}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
