"""LFW verification benchmark: detector -> alignment -> embedder on pairsDevTest.

Why this exists: the matcher's cosine ``threshold`` and ``margin`` defaults in
the manifests must come from a measurement of the product's own pipeline
(BlazeFace keypoints, our alignment, each embedder), not from numbers published
for other detectors and crops.

Per image the largest detected face is used (LFW images are centred on their
subject but often show other people). Figures are given twice: *end to end*,
where a pair with an undetected face scores -1 (counts as "different": an
unseen face is a failure of the pipeline), and over the *detected* pairs only,
which judges alignment and embedder apart from the detector's misses.

Reported per embedder:
- accuracy at the single best threshold over all pairs (optimistic) and by
  10-fold cross-validation (threshold chosen on 9 folds, tested on the 10th;
  pairsDevTest has no official folds, so folds interleave same and different
  pairs); ROC AUC; mean same and different cosines;
- the cosine thresholds at which the false accept rate is 1e-2 and 1e-3.
  500 different pairs cannot resolve 1e-3, so impostor scores are taken over
  all pairs of images of different people among the benchmark's images
  (about a million, correlated through shared images); the true accept rate at
  each threshold is measured on the 500 same pairs;
- an open-set watch-list check of the manifest's threshold and margin, decided
  as the matcher decides: one enrolled image per person with 2+ images (all
  of them, and random galleries of 20), the rest as probes; rates of correct
  identification, misidentification and false alarm (unknown face matched);
- milliseconds per face for embedding alone (chips already aligned, batches
  of 16) and for alignment, on whatever machine runs it.

Research-only embedders come from bench/research_models.toml; nothing is
written except an optional JSON summary (--json).

Usage: .venv/bin/python bench/lfw_pairs.py [--detector blazeface-full-range] [--limit N]
(about 6 minutes on 2 x86 cores, dominated by dlib)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edgewatch.config import DEFAULT_LANDMARKER
from edgewatch.errors import EdgewatchError
from edgewatch.vision.align import align_face
from edgewatch.vision.embed import Embedder, create_embedder
from edgewatch.vision.models import ModelManifest
from edgewatch.vision.types import Detection, FloatArray, ImageArray

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = PROJECT_ROOT.parent / "shared"
LFW_DIR = SHARED_DIR / "data" / "faces" / "lfw-devtest"
PAIRS_FILE = SHARED_DIR / "data" / "faces" / "lfw-meta" / "pairsDevTest.txt"
YUNET_FILE = SHARED_DIR / "models" / "peers" / "yunet" / "face_detection_yunet_2023mar.onnx"
RESEARCH_MANIFEST = PROJECT_ROOT / "bench" / "research_models.toml"
DETECTORS = ("blazeface-full-range", "blazeface-short-range", "yunet")
EMBEDDERS = ("dlib-resnet-v1", "mobilefacenet-insightface", "mobilefacenet-sirius")
FAR_TARGETS = (1e-2, 1e-3)
TIMING_BATCH = 16

FaceFinder = Callable[[ImageArray], Detection | None]
Scores = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Pair:
    """Two LFW images (paths) and whether they show the same person."""

    first: Path
    second: Path
    same: bool


# --------------------------------------------------------------------------- data


def image_path(root: Path, name: str, number: str) -> Path:
    """LFW's file naming: <root>/<Name>/<Name>_<0001>.jpg."""
    return root / name / f"{name}_{int(number):04d}.jpg"


def read_pairs(path: Path = PAIRS_FILE, root: Path = LFW_DIR) -> list[Pair]:
    """Pairs from an LFW pairs file (a count line, then 3-field same and 4-field different)."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        fields = line.split()
        if len(fields) == 3:
            name, a, b = fields
            pairs.append(Pair(image_path(root, name, a), image_path(root, name, b), True))
        elif len(fields) == 4:
            name_a, a, name_b, b = fields
            pairs.append(Pair(image_path(root, name_a, a), image_path(root, name_b, b), False))
    return pairs


def balanced_subset(pairs: Sequence[Pair], per_class: int) -> list[Pair]:
    """The first ``per_class`` same and different pairs (files list same pairs first)."""
    same = [p for p in pairs if p.same][:per_class]
    different = [p for p in pairs if not p.same][:per_class]
    return same + different


def read_bgr(path: Path) -> ImageArray:
    """A BGR uint8 image, as the camera delivers frames."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgewatchError(f"{path}: cannot read image")
    return np.ascontiguousarray(image)


def person(path: Path) -> str:
    """The identity of an LFW image: its folder name."""
    return path.parent.name


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


def detect_all(paths: Iterable[Path], finder: FaceFinder) -> dict[Path, Detection | None]:
    """The largest face of every image (None when there is none)."""
    return {path: finder(read_bgr(path)) for path in paths}


# --------------------------------------------------------------------------- embedding


def load_manifest() -> ModelManifest:
    """Shipped models plus the research-only ones."""
    manifest = ModelManifest.default()
    manifest.extend(RESEARCH_MANIFEST)
    return manifest


def align_all(
    detections: dict[Path, Detection | None], embedder: Embedder
) -> tuple[list[Path], ImageArray, float]:
    """Chips for every image with a face, and the mean alignment time in ms."""
    found = [path for path, det in detections.items() if det is not None]
    chips = embedder.spec.chip_buffer(len(found))
    template = embedder.spec.template_array()
    elapsed = 0.0
    for slot, path in enumerate(found):
        frame = read_bgr(path)
        detection = detections[path]
        assert detection is not None
        start = time.perf_counter()
        align_face(frame, detection, template, chips[slot])
        elapsed += time.perf_counter() - start
    return found, chips, 1000 * elapsed / max(1, len(found))


def embed_chips(embedder: Embedder, chips: ImageArray) -> tuple[FloatArray, float]:
    """Embeddings of all chips in batches, and the mean time per face in ms."""
    parts = []
    start = time.perf_counter()
    for first in range(0, len(chips), TIMING_BATCH):
        parts.append(embedder.embed(chips[first : first + TIMING_BATCH]))
    elapsed = time.perf_counter() - start
    embeddings = np.concatenate(parts) if parts else np.empty((0, embedder.spec.dim), np.float32)
    return embeddings, 1000 * elapsed / max(1, len(chips))


# --------------------------------------------------------------------------- metrics


def pair_scores(
    pairs: Sequence[Pair], embeddings: dict[Path, FloatArray]
) -> tuple[Scores, npt.NDArray[np.bool_]]:
    """Cosine per pair (-1 where either image had no face), and which pairs had both faces."""
    found = np.asarray([p.first in embeddings and p.second in embeddings for p in pairs])
    scores = np.asarray(
        [
            float(embeddings[p.first] @ embeddings[p.second]) if ok else -1.0
            for p, ok in zip(pairs, found, strict=True)
        ]
    )
    return scores, found


def best_threshold(scores: Scores, same: npt.NDArray[np.bool_]) -> tuple[float, float]:
    """The threshold with the highest accuracy (accept when score >= t), and that accuracy.

    Candidates are midpoints between sorted scores, so the threshold does not
    sit exactly on a sample.
    """
    ordered = np.sort(scores)
    candidates = np.concatenate([[ordered[0] - 1e-6], (ordered[1:] + ordered[:-1]) / 2])
    accuracies = [float(np.mean((scores >= t) == same)) for t in candidates]
    best = int(np.argmax(accuracies))
    return float(candidates[best]), accuracies[best]


def tenfold_accuracy(scores: Scores, same: npt.NDArray[np.bool_]) -> float:
    """Mean test accuracy over 10 interleaved folds, threshold chosen on the other 9."""
    folds = np.arange(len(scores)) % 10
    accuracies = []
    for fold in range(10):
        train, test = folds != fold, folds == fold
        threshold, _ = best_threshold(scores[train], same[train])
        accuracies.append(float(np.mean((scores[test] >= threshold) == same[test])))
    return float(np.mean(accuracies))


def roc_auc(positives: Scores, negatives: Scores) -> float:
    """P(random same-pair score > random different-pair score), ties counted half."""
    sorted_neg = np.sort(negatives)
    below = np.searchsorted(sorted_neg, positives, side="left")
    equal = np.searchsorted(sorted_neg, positives, side="right") - below
    return float((below + 0.5 * equal).sum() / (len(positives) * len(negatives)))


def threshold_at_far(impostor: Scores, far: float) -> float:
    """The smallest threshold whose false accept rate (score >= t) is at most ``far``."""
    ordered = np.sort(impostor)[::-1]
    allowed = int(np.floor(far * len(ordered)))
    if allowed >= len(ordered):
        return float(ordered[-1])
    return float(np.nextafter(ordered[allowed], np.inf))


def impostor_scores(paths: Sequence[Path], embeddings: FloatArray) -> Scores:
    """Cosines of all pairs of images of different people (upper triangle)."""
    names = np.asarray([person(p) for p in paths])
    similarity = embeddings @ embeddings.T
    upper = np.triu(np.ones(similarity.shape, dtype=bool), k=1)
    different = names[:, None] != names[None, :]
    scores: Scores = similarity[upper & different].astype(np.float64)
    return scores


# --------------------------------------------------------------------------- report


def evaluate(
    pairs: Sequence[Pair],
    paths: Sequence[Path],
    embeddings: FloatArray,
) -> dict[str, Any]:
    """All figures for one embedder.

    ``end_to_end`` counts a pair with an undetected face as failed (score -1);
    ``detected`` uses only the pairs where both faces were found, to judge the
    embedder and alignment apart from the detector's misses.
    """
    scores, found = pair_scores(pairs, dict(zip(paths, embeddings, strict=True)))
    same = np.asarray([p.same for p in pairs])
    impostor = impostor_scores(paths, embeddings)
    return {
        "pairs": len(pairs),
        "pairs_without_face": int((~found).sum()),
        "end_to_end": verification(scores, same),
        "detected": verification(scores[found], same[found]),
        "impostor_pairs": len(impostor),
        "far": {f"{far:g}": far_point(far, impostor, scores, same) for far in FAR_TARGETS},
    }


def verification(scores: Scores, same: npt.NDArray[np.bool_]) -> dict[str, float]:
    """Accuracy (best single threshold, and 10-fold), ROC AUC and mean scores."""
    threshold, accuracy = best_threshold(scores, same)
    return {
        "best_threshold": threshold,
        "best_threshold_accuracy": accuracy,
        "tenfold_accuracy": tenfold_accuracy(scores, same),
        "roc_auc": roc_auc(scores[same], scores[~same]),
        "mean_same": float(scores[same].mean()),
        "mean_different": float(scores[~same].mean()),
    }


def far_point(
    far: float, impostor: Scores, scores: Scores, same: npt.NDArray[np.bool_]
) -> dict[str, float]:
    """The threshold for a false accept rate, and what it accepts of the listed pairs."""
    threshold = threshold_at_far(impostor, far)
    return {
        "threshold": threshold,
        "tar_same_pairs": float(np.mean(scores[same] >= threshold)),
        "far_listed_different_pairs": float(np.mean(scores[~same] >= threshold)),
    }


def watchlist(
    paths: Sequence[Path],
    embeddings: FloatArray,
    threshold: float,
    margin: float,
    gallery_size: int | None = None,
    draws: int = 20,
) -> dict[str, float]:
    """Open-set identification, decided as the appliance decides (threshold and margin).

    Enrolled: one image (the first) of each person with two or more images, or
    ``gallery_size`` of those people drawn at random (averaged over ``draws``);
    known probes: their other images; unknown probes: people never enrolled.
    Rates are per probe face: identified (right subject), misidentified (wrong
    subject) and false alarm (an unknown face matched to anyone).
    """
    names = np.asarray([person(p) for p in paths])
    people, first, counts = np.unique(names, return_index=True, return_counts=True)
    repeat = people[counts >= 2]
    rng = np.random.default_rng(0)
    totals = np.zeros(3)
    runs = 1 if gallery_size is None else draws
    for _ in range(runs):
        enrolled = repeat if gallery_size is None else rng.choice(repeat, gallery_size, False)
        gallery = first[np.isin(people, enrolled)]
        probes = np.setdiff1d(np.arange(len(paths)), gallery)
        totals += _decide(embeddings, names, gallery, probes, threshold, margin)
    identified, misidentified, false_alarm = totals / runs
    return {
        "gallery": float(len(repeat) if gallery_size is None else gallery_size),
        "identified": identified,
        "misidentified": misidentified,
        "false_alarm": false_alarm,
    }


def _decide(
    embeddings: FloatArray,
    names: npt.NDArray[np.str_],
    gallery: npt.NDArray[np.intp],
    probes: npt.NDArray[np.intp],
    threshold: float,
    margin: float,
) -> npt.NDArray[np.float64]:
    """Identified, misidentified (known probes) and false alarm (unknown probes) rates."""
    scores = embeddings[probes] @ embeddings[gallery].T
    order = np.argsort(scores, axis=1)
    best = order[:, -1]
    best_score = np.take_along_axis(scores, best[:, None], axis=1)[:, 0]
    runner_up = np.take_along_axis(scores, order[:, -2:-1], axis=1)[:, 0]
    accepted = (best_score >= threshold) & (best_score - runner_up >= margin)
    known = np.isin(names[probes], names[gallery])
    right = names[gallery][best] == names[probes]
    return np.array(
        [
            np.mean(accepted[known] & right[known]),
            np.mean(accepted[known] & ~right[known]),
            np.mean(accepted[~known]),
        ]
    )


def run_embedder(
    model_id: str,
    manifest: ModelManifest,
    pairs: Sequence[Pair],
    detections: dict[Path, Detection | None],
) -> dict[str, Any]:
    """Align, embed and evaluate one embedder."""
    embedder = create_embedder(manifest, model_id)
    paths, chips, align_ms = align_all(detections, embedder)
    embeddings, embed_ms = embed_chips(embedder, chips)
    result = evaluate(pairs, paths, embeddings)
    spec = embedder.spec
    result.update(
        align_ms_per_face=align_ms,
        embed_ms_per_face=embed_ms,
        defaults={"threshold": spec.threshold, "margin": spec.margin},
        watchlist={
            "all": watchlist(paths, embeddings, spec.threshold, spec.margin),
            "20": watchlist(paths, embeddings, spec.threshold, spec.margin, gallery_size=20),
        },
    )
    return result


def print_result(model_id: str, r: dict[str, Any]) -> None:
    """A human-readable block per embedder."""
    print(f"\n== {model_id}")
    print(f"  pairs {r['pairs']} (without a face: {r['pairs_without_face']})")
    for view in ("end_to_end", "detected"):
        v = r[view]
        print(
            f"  {view:10s}: accuracy {v['best_threshold_accuracy']:.4f} at best single "
            f"threshold {v['best_threshold']:.4f}, 10-fold {v['tenfold_accuracy']:.4f}; "
            f"ROC AUC {v['roc_auc']:.4f}; mean cos same {v['mean_same']:.4f}, "
            f"different {v['mean_different']:.4f}"
        )
    for far, v in r["far"].items():
        print(
            f"  FAR {far}: threshold {v['threshold']:.4f} -> TAR {v['tar_same_pairs']:.4f} "
            f"(end to end), FAR on listed different pairs "
            f"{v['far_listed_different_pairs']:.4f} ({r['impostor_pairs']} impostor pairs)"
        )
    d = r["defaults"]
    for w in r["watchlist"].values():
        print(
            f"  watch-list of {w['gallery']:.0f} at manifest threshold {d['threshold']:.3f} "
            f"margin {d['margin']:.3f}: identified {w['identified']:.4f}, misidentified "
            f"{w['misidentified']:.4f}, false alarms {w['false_alarm']:.4f} per face"
        )
    print(f"  ms per face: embed {r['embed_ms_per_face']:.2f}, align {r['align_ms_per_face']:.3f}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Verification accuracy and FAR thresholds of the embedders on LFW "
        "pairsDevTest, with the product's detector and alignment.",
    )
    parser.add_argument(
        "--detector",
        choices=DETECTORS,
        default="blazeface-full-range",
        help="BlazeFace (the product's detector) or yunet (a peer, from ../shared)",
    )
    parser.add_argument(
        "--min-score", type=float, help="override the BlazeFace model's min_score (manifest)"
    )
    parser.add_argument(
        "--landmarker",
        default=DEFAULT_LANDMARKER,
        help="landmark model refining the keypoints, as on the device ('none': detector's own)",
    )
    parser.add_argument(
        "--models", nargs="+", choices=EMBEDDERS, default=list(EMBEDDERS), help="embedders"
    )
    parser.add_argument(
        "--limit", type=int, default=0, help="use the first N same and N different pairs only"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    args = parse_args(argv)
    try:
        manifest = load_manifest()
        pairs = read_pairs()
        if args.limit:
            pairs = balanced_subset(pairs, args.limit)
        images = sorted({p.first for p in pairs} | {p.second for p in pairs})
        start = time.perf_counter()
        landmarker = None if args.landmarker == "none" else args.landmarker
        finder = make_face_finder(args.detector, manifest, args.min_score, landmarker)
        detections = detect_all(images, finder)
        detect_s = time.perf_counter() - start
        setting = "" if args.min_score is None else f" min_score {args.min_score}"
        print(
            f"{len(pairs)} pairs, {len(images)} images, detector {args.detector}{setting}, "
            f"landmarker {args.landmarker} ",
            end="",
        )
        print(f"({sum(d is None for d in detections.values())} without a face, {detect_s:.1f} s)")
        results = {m: run_embedder(m, manifest, pairs, detections) for m in args.models}
    except EdgewatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for model_id, result in results.items():
        print_result(model_id, result)
    if args.json:
        summary = {
            "detector": args.detector,
            "landmarker": args.landmarker,
            "min_score": args.min_score,
            "results": results,
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
