"""Top-1 search time and memory of the product's matcher for watch-lists up to a million.

Why: the README's accuracy budget already says how large a list each model
can serve without false alerts; this measures what a large list costs in
time per face and in memory, with the product's own code
(:class:`~edgewatch.matching.gallery.Gallery` and
:class:`~edgewatch.matching.matcher.Matcher`, as the pipeline calls it once
per frame), so that a deployment can see where the matcher, not the models,
becomes the bottleneck.

Each (size, run) happens in a fresh spawned process: ``size`` random 128-d
templates (synthetic, one per subject: nobody's face), built into a
``Gallery`` (copied into locked memory and normalised, as a loaded watch-list
is), then ``Matcher.decide`` on one random unit probe (one face), timed
repeatedly, once with OpenBLAS's default threads (every core, as the
appliance runs today) and once with ``OPENBLAS_NUM_THREADS=1``: on a busy
2-core machine a second BLAS thread often waits for a core, and a single
thread shows the matcher's own cost. Memory: the resident set before, the
peak (VmHWM, which
includes the random source matrix the gallery is copied from, as a list's
decrypted templates are) and what the gallery and its subjects keep.

The sealed-file load (``bench.watchlist_load``) is far heavier than the
search: at a million entries one full ``watchlist_load`` run (seal, load,
load again by phases, and twice more in a memory child) took about 4.7
minutes on the development VM. :func:`light_load` is the lighter path for
such sizes: seal once, then time ``load_watchlist`` ``runs`` times in one
child, with the peak resident set of each load.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bench.watchlist_load import (
    DIM,
    MODEL,
    device_trust,
    header_fields,
    reset_peak_rss,
    status_kib,
    synthetic,
)
from edgewatch.matching.gallery import Gallery, Subject
from edgewatch.matching.matcher import Matcher, MatchPolicy
from edgewatch.watchlist.device import load_watchlist
from edgewatch.watchlist.format import seal

POLICY = MatchPolicy(threshold=0.95, margin=0.01)
"""Any policy: random probes match nobody, and the decision's cost does not depend on it."""
MIN_SAMPLES = 20
MAX_SAMPLES = 2000
SAMPLE_BUDGET_S = 3.0
"""Time each size's probes for about this long (at least MIN_SAMPLES of them)."""
PROBES = 64


@dataclass(frozen=True, slots=True)
class SearchRun:
    """One gallery size in one fresh process."""

    size: int
    dim: int
    blas_threads: str
    """``OPENBLAS_NUM_THREADS`` in the child ("default": unset, OpenBLAS uses every core)."""
    build_s: float
    search_ms: float
    """Median over the timed calls of ``Matcher.decide`` for one face."""
    search_p95_ms: float
    samples: int
    baseline_rss_mib: float
    kept_rss_mib: float
    """Resident set the gallery and its subjects add (after the source matrix is freed)."""
    peak_rss_mib: float
    """Peak resident set above the baseline (VmHWM), source matrix included."""
    mlocked: bool


def search_run(size: int, seed: int) -> SearchRun:
    """Build a ``size``-subject gallery and time one-face decisions (a spawned child's work)."""
    gc.collect()
    baseline = status_kib()["VmRSS"]
    rng = np.random.default_rng(seed)
    source = rng.standard_normal((size, DIM), dtype=np.float32)
    subjects = [Subject(f"synthetic-{i:07d}") for i in range(size)]
    started = time.perf_counter()
    gallery = Gallery(MODEL.id, subjects, list(source[:, None, :]))
    build_s = time.perf_counter() - started
    del source
    gc.collect()
    kept = status_kib()["VmRSS"] - baseline
    matcher = Matcher(gallery, POLICY)
    probes = rng.standard_normal((PROBES, 1, DIM), dtype=np.float32)
    probes /= np.linalg.norm(probes, axis=2, keepdims=True)
    matcher.decide(probes[0])  # warm-up: first touch of the scores' pages
    samples: list[float] = []
    budget_ends = time.perf_counter() + SAMPLE_BUDGET_S
    while len(samples) < MAX_SAMPLES and (
        len(samples) < MIN_SAMPLES or time.perf_counter() < budget_ends
    ):
        probe = probes[len(samples) % PROBES]
        began = time.perf_counter()
        if matcher.decide(probe):
            raise RuntimeError("a random probe matched a random template: check the policy")
        samples.append(time.perf_counter() - began)
    peak = status_kib()["VmHWM"] - baseline
    locked = gallery.locked_in_memory
    gallery.wipe()
    return SearchRun(
        size=size,
        dim=DIM,
        blas_threads=os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        build_s=build_s,
        search_ms=statistics.median(samples) * 1e3,
        search_p95_ms=statistics.quantiles(samples, n=20)[18] * 1e3,
        samples=len(samples),
        baseline_rss_mib=baseline / 1024,
        kept_rss_mib=kept / 1024,
        peak_rss_mib=peak / 1024,
        mlocked=locked,
    )


def light_load(size: int, runs: int, seed: int) -> dict[str, Any]:
    """Seal one ``size``-entry list, then time ``runs`` loads of it (a spawned child's work).

    Uses ``bench.watchlist_load``'s synthetic entries, header and trust, and
    the unit's own ``load_watchlist``; the peak resident set of each load is
    measured from the high-water mark reset just before it, above the
    resident set at that moment (the sealed bytes already in memory).
    """
    rng = np.random.default_rng(seed)
    issuer = Ed25519PrivateKey.generate()
    device = X25519PrivateKey.generate()
    entries, templates = synthetic(size, rng)
    started = time.perf_counter()
    data = seal(
        header_fields(size, datetime.now(UTC)), entries, templates, [device.public_key()], issuer
    )
    seal_s = time.perf_counter() - started
    del entries, templates
    loads: list[dict[str, float]] = []
    for _ in range(runs):
        gc.collect()
        before = status_kib()["VmRSS"]
        hwm_reset = reset_peak_rss()
        started = time.perf_counter()
        loaded = load_watchlist(data, device_trust(issuer.public_key(), device))
        load_s = time.perf_counter() - started
        after = status_kib()
        if len(loaded.gallery) != size:
            raise RuntimeError(f"loaded {len(loaded.gallery)} subjects, sealed {size}")
        loads.append(
            {
                "load_s": load_s,
                "peak_rss_mib": (after["VmHWM"] - before) / 1024 if hwm_reset else float("nan"),
                "kept_rss_mib": (after["VmRSS"] - before) / 1024,
            }
        )
        loaded.gallery.wipe()
        del loaded
    return {"size": size, "file_mib": len(data) / 2**20, "seal_s": seal_s, "loads": loads}
