"""Parity and speed of the LiteRT conversions of dlib's ResNet against dlib itself.

Why: the ``dlib-resnet-v1-litert-*`` models (models/convert/dlib_resnet_to_tflite.py)
may replace dlib on the device only if they give dlib's embeddings, and are only
worth it if they are faster. Both are measured here on the product's own path:
chips made by the device's detector, landmark refinement and alignment from LFW
images of the *parity* half of the people (bench/export_dlib_chips.py), which the
int8 calibration never saw.

Per model: cosine of each face's embedding with dlib's (minimum, 1st percentile,
median); how far the match score of a pair of faces moves from dlib's score of the
same pair (99th percentile and maximum over all pairs: what the matcher's
threshold sees); and milliseconds per face (one chip per call, as the device embeds a
face at a time; normalisation and colour swap included): median and interquartile
range, for each LiteRT variant at 1 and 2 threads. Timings share the machine with
whatever else runs: the load average is printed with them.

Usage:
    .venv/bin/python bench/dlib_litert_parity.py [--count 300] [--chips FILE.npz] \\
        [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from edgewatch.errors import EdgewatchError
from edgewatch.vision.embed import Embedder, create_embedder
from edgewatch.vision.models import ModelManifest
from edgewatch.vision.runtime import runtime_name
from edgewatch.vision.types import FloatArray, ImageArray

try:
    from bench.export_dlib_chips import DLIB_MODEL_ID, lfw_split, make_chips
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    from export_dlib_chips import (  # type: ignore[import-not-found, no-redef]
        DLIB_MODEL_ID,
        lfw_split,
        make_chips,
    )

VARIANTS: Final = ("fp32", "fp16", "int8")
THREADS: Final = (1, 2)
WARMUP: Final = 3


def litert_id(variant: str) -> str:
    """The manifest id of a LiteRT variant."""
    return f"{DLIB_MODEL_ID}-litert-{variant}"


@dataclass(frozen=True)
class Row:
    """One model at one thread count."""

    model_id: str
    threads: int | None
    """None for dlib (its own threading)."""
    faces: int
    ms_median: float
    ms_p25: float
    ms_p75: float
    cos_min: float
    cos_p1: float
    cos_median: float
    drift_p99: float
    """99th percentile of |cos(a, b) - dlib's cos(a, b)| over all pairs of faces a, b."""
    drift_max: float


def timed_embeddings(embedder: Embedder, chips: ImageArray) -> tuple[FloatArray, list[float]]:
    """Embed one chip per call; the embeddings and each call's milliseconds."""
    for index in range(min(WARMUP, len(chips))):
        embedder.embed(chips[index : index + 1])
    out = np.empty((len(chips), embedder.spec.dim), dtype=np.float32)
    times = []
    for index in range(len(chips)):
        start = time.perf_counter()
        out[index] = embedder.embed(chips[index : index + 1])[0]
        times.append(1000 * (time.perf_counter() - start))
    return out, times


def score_drift(embeddings: FloatArray, reference: FloatArray) -> npt.NDArray[np.float64]:
    """How far each pair's match score moves from dlib's: what the matcher would see."""
    upper = np.triu_indices(len(reference), k=1)
    ours = (embeddings.astype(np.float64) @ embeddings.T.astype(np.float64))[upper]
    theirs = (reference.astype(np.float64) @ reference.T.astype(np.float64))[upper]
    drift: npt.NDArray[np.float64] = np.abs(ours - theirs)
    return drift


def row(
    model_id: str,
    threads: int | None,
    times: Sequence[float],
    cos: npt.NDArray[np.float64],
    drift: npt.NDArray[np.float64],
) -> Row:
    ms = np.asarray(times)
    return Row(
        model_id=model_id,
        threads=threads,
        faces=len(ms),
        ms_median=float(np.median(ms)),
        ms_p25=float(np.percentile(ms, 25)),
        ms_p75=float(np.percentile(ms, 75)),
        cos_min=float(cos.min()),
        cos_p1=float(np.percentile(cos, 1)),
        cos_median=float(np.median(cos)),
        drift_p99=float(np.percentile(drift, 99)) if drift.size else 0.0,
        drift_max=float(drift.max()) if drift.size else 0.0,
    )


def measure(
    manifest: ModelManifest,
    chips: ImageArray,
    variants: Sequence[str],
    threads: Sequence[int],
) -> list[Row]:
    """dlib first (the reference), then every variant at every thread count."""
    reference, times = timed_embeddings(create_embedder(manifest, DLIB_MODEL_ID), chips)
    rows = [row(DLIB_MODEL_ID, None, times, np.ones(len(chips)), np.zeros(0))]
    for variant in variants:
        for count in threads:
            embedder = create_embedder(manifest, litert_id(variant), num_threads=count)
            embeddings, times = timed_embeddings(embedder, chips)
            cos = (embeddings.astype(np.float64) * reference).sum(axis=1)
            drift = score_drift(embeddings, reference)
            rows.append(row(litert_id(variant), count, times, cos, drift))
    return rows


def load_chips(path: Path) -> ImageArray:
    """Chips from bench/export_dlib_chips.py (BGR uint8)."""
    with np.load(path, allow_pickle=False) as data:
        chips: ImageArray = np.ascontiguousarray(data["chips_bgr"])
    return chips


def print_table(rows: Sequence[Row]) -> None:
    print(
        f"{'model':28s} {'threads':>7s} {'ms/face median [IQR]':>24s}   "
        f"{'cos min':>9s} {'cos p1':>9s} {'cos med':>9s}   {'pair drift p99/max':>18s}"
    )
    for r in rows:
        threads = "dlib" if r.threads is None else str(r.threads)
        timing = f"{r.ms_median:7.2f} [{r.ms_p25:6.2f}, {r.ms_p75:6.2f}]"
        cos = (
            "(reference)"
            if r.threads is None
            else f"{r.cos_min:9.7f} {r.cos_p1:9.7f} {r.cos_median:9.7f}   "
            f"{r.drift_p99:8.2e}/{r.drift_max:8.2e}"
        )
        print(f"{r.model_id:28s} {threads:>7s} {timing:>24s}   {cos}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Cosine with dlib and ms per face of the LiteRT conversions of dlib's "
        "ResNet, on LFW faces the int8 calibration never saw.",
    )
    parser.add_argument(
        "--count", type=int, default=300, help="parity-half LFW images to use (default 300)"
    )
    parser.add_argument(
        "--chips",
        type=Path,
        help="use chips exported by bench/export_dlib_chips.py instead of making them",
    )
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="variants"
    )
    parser.add_argument(
        "--threads", nargs="+", type=int, default=list(THREADS), help="LiteRT thread counts"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    args = parse_args(argv)
    try:
        manifest = ModelManifest.default()
        if args.chips:
            chips = load_chips(args.chips)
            source = str(args.chips)
        else:
            _, chips = make_chips(lfw_split("parity", args.count), manifest)
            source = f"{args.count} LFW images (parity half)"
        load_before = os.getloadavg()[0]
        rows = measure(manifest, chips, args.variants, args.threads)
        load_after = os.getloadavg()[0]
    except EdgewatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{len(chips)} faces from {source}; {runtime_name()}, {os.cpu_count()} CPUs, "
        f"load average {load_before:.2f} -> {load_after:.2f}"
    )
    print_table(rows)
    if args.json:
        summary = {
            "faces": len(chips),
            "source": source,
            "runtime": runtime_name(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": [load_before, load_after],
            "rows": [asdict(r) for r in rows],
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
