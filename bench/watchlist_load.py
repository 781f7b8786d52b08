"""What a big watch-list costs the device: file size, load time, memory, and one search.

For each size, ``--runs`` times: seal a synthetic watch-list (one random
128-d float32 template per entry, random pseudonymous references, fresh
issuer and device keys, valid now) as the issuer would (timed: the "seal"
column), then load it on the "device" with
:func:`~edgewatch.watchlist.device.load_watchlist`, which is what a unit does
at start and on every new list: parse, check the issuer's Ed25519 signature
over the whole file, unseal the content key (HPKE), decrypt the body
(AES-256-GCM), validate the entries and build the gallery (copy into locked
memory, normalise). The load is also timed in three phases, with the same
functions load_watchlist calls: parse + verify (header checks, signature),
decrypt (HPKE, AES-GCM, entries JSON and validation) and gallery (subjects,
template matrix, wipe of the plaintext). Then one probe (a random (1, 128)
unit vector) is scored against the loaded gallery with
``gallery.subject_scores`` plus the top-1 ``argmax``, median of 200.

Memory is measured in a fresh process per run (a spawned child), so that
neither the allocator's reuse of an earlier run's memory nor earlier peaks
hide the cost: with the file's bytes already in memory, "peak RSS" is the
peak resident set during the load minus the resident set before it (the
kernel's high-water mark, reset just before via ``/proc/self/clear_refs``),
"kept RSS" what is still resident once it returned (the gallery and the
subjects). "tracemalloc peak" is the peak of Python-level allocations during
a second load in the same child: numpy arrays are tracked, but the gallery's
matrix lives in an anonymous ``mmap`` (``LockedBuffer``), which tracemalloc
does not see and RSS does. "mlocked" says whether that buffer could be
locked out of swap under this process's RLIMIT_MEMLOCK (the systemd unit
raises it; a shell's default is often 8 MiB, about 16,000 templates; root is not
limited).

On the development VM (2 cores, Xeon @ 2.00GHz, as root), medians of 5 runs: 100,000
entries make a 60 MiB file that loads in about 2.7 s (signature 0.3 s; decrypt 1.2 s, of
which AES-GCM about 0.1 s and the entries' JSON and pydantic validation about 1 s; gallery
1 s) and peaks at about 450 MiB of extra RSS, 7.5 times the file; one probe takes about
8 ms (memory-bound). 10,000 entries: 6 MiB, 0.18 s, 47 MiB peak, 0.2 ms per probe.

Figures are medians over the runs, (min-max) in brackets.

    .venv/bin/python -m bench.watchlist_load --sizes 1000,10000,100000 --runs 5 --json /tmp/wl.json
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bench.machine import cpu_model
from edgewatch.accuracy.budget import issuing_threshold
from edgewatch.matching.gallery import Gallery, Subject
from edgewatch.security.keys import key_id
from edgewatch.vision.models import ModelManifest
from edgewatch.watchlist.device import AcceptedVersions, DeviceTrust, check_header, load_watchlist
from edgewatch.watchlist.format import (
    CATEGORIES,
    Deployment,
    Entry,
    HeaderFields,
    ModelRef,
    Policy,
    open_body,
    parse,
    seal,
)

DIM = 128
MODEL = ModelRef(id="dlib-resnet-v1", sha256="ab" * 32)
MANIFEST = ModelManifest.default()
SEARCH_REPEATS = 200


def machine_description() -> str:
    """CPU model, cores, Python and numpy, for the header."""
    return f"{cpu_model()}, numpy {np.__version__}; load average {os.getloadavg()[0]:.2f} at start"


def synthetic(count: int, rng: np.random.Generator) -> tuple[list[Entry], np.ndarray]:
    """``count`` entries with random references, one random template each."""
    templates = rng.standard_normal((count, DIM)).astype(np.float32)
    entries = [
        Entry(
            ref=f"ref-{uuid.uuid4().hex}",
            category=CATEGORIES[i % len(CATEGORIES)],
            templates=1,
            source="bench",
            added_by="bench",
        )
        for i in range(count)
    ]
    return entries, templates


def header_fields(count: int, now: datetime) -> HeaderFields:
    return HeaderFields(
        watchlist_id="bench-list",
        version=1,
        deployment=Deployment(
            id="bench-op",
            purpose="benchmark",
            location="bench",
            authorised_by="bench",
            not_before=now - timedelta(hours=1),
            expires=now + timedelta(days=1),
            max_entries=max(count, 1),
        ),
        model=MODEL,
        policy=Policy(
            threshold=issuing_threshold(MANIFEST, MODEL.id, max(count, 1), 0.926, 1e-3),
            margin=0.01,
        ),
    )


def device_trust(issuer: Ed25519PublicKey, device: X25519PrivateKey) -> DeviceTrust:
    """A fresh trust each time: no version accepted yet, nothing written to disk."""
    return DeviceTrust(
        issuers={key_id(issuer): issuer},
        device_key=device,
        model=MODEL,
        accepted=AcceptedVersions(None),
        manifest=MANIFEST,
    )


def phases(data: bytes, trust: DeviceTrust) -> tuple[float, float, float]:
    """Seconds for parse + verify, decrypt, gallery build: load_watchlist's steps, timed."""
    started = time.perf_counter()
    container = parse(data)
    header = check_header(container, trust, datetime.now(UTC))
    verified = time.perf_counter()
    plaintext = open_body(container, trust.device_key)
    decrypted = time.perf_counter()
    try:
        subjects = [Subject(e.ref, e.category) for e in plaintext.entries]
        bounds = np.cumsum([0] + [e.templates for e in plaintext.entries])
        templates = [plaintext.templates[a:b] for a, b in itertools.pairwise(bounds)]
        gallery = Gallery(header.model.id, subjects, templates)
    finally:
        plaintext.wipe()
    built = time.perf_counter()
    gallery.wipe()
    return verified - started, decrypted - verified, built - decrypted


def search_ms(gallery: Gallery, rng: np.random.Generator) -> float:
    """Median milliseconds to score one unit-norm probe against the gallery and take top-1."""
    probe = rng.standard_normal((1, DIM)).astype(np.float32)
    probe /= np.linalg.norm(probe)
    samples = []
    for _ in range(SEARCH_REPEATS):
        started = time.perf_counter()
        scores = gallery.subject_scores(probe)
        int(np.argmax(scores[0]))
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e3


def status_kib() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {key: int(value) for key, value in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current resident set (Linux); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory_probe(path: str, issuer_raw: bytes, device_raw: bytes) -> dict[str, Any]:
    """In a fresh process: RSS peak and kept, and tracemalloc peak, of loading ``path``."""
    issuer = Ed25519PublicKey.from_public_bytes(issuer_raw)
    device = X25519PrivateKey.from_private_bytes(device_raw)
    data = Path(path).read_bytes()
    gc.collect()
    before = status_kib()["VmRSS"]
    hwm_reset = reset_peak_rss()
    loaded = load_watchlist(data, device_trust(issuer, device))
    after = status_kib()
    locked = loaded.gallery.locked_in_memory
    loaded.gallery.wipe()
    del loaded
    gc.collect()
    tracemalloc.start()
    again = load_watchlist(data, device_trust(issuer, device))
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    again.gallery.wipe()
    return {
        "peak_rss_mib": (after["VmHWM"] - before) / 1024,
        "kept_rss_mib": (after["VmRSS"] - before) / 1024,
        "tracemalloc_peak_mib": traced_peak / 2**20,
        "hwm_reset": hwm_reset,
        "mlocked": locked,
    }


@dataclass(frozen=True, slots=True)
class Run:
    file_mib: float
    seal_s: float
    load_s: float
    verify_s: float
    decrypt_s: float
    gallery_s: float
    search_ms: float
    peak_rss_mib: float
    kept_rss_mib: float
    tracemalloc_peak_mib: float
    mlocked: bool
    hwm_reset: bool


def one_run(size: int, scratch: Path, seed: int) -> Run:
    rng = np.random.default_rng(seed)
    issuer = Ed25519PrivateKey.generate()
    device = X25519PrivateKey.generate()
    entries, templates = synthetic(size, rng)
    fields = header_fields(size, datetime.now(UTC))
    started = time.perf_counter()
    data = seal(fields, entries, templates, [device.public_key()], issuer)
    seal_s = time.perf_counter() - started
    del entries, templates
    path = scratch / f"list-{size}.ewl"
    path.write_bytes(data)

    gc.collect()
    started = time.perf_counter()
    loaded = load_watchlist(data, device_trust(issuer.public_key(), device))
    load_s = time.perf_counter() - started
    if len(loaded.gallery) != size:
        raise RuntimeError(f"loaded {len(loaded.gallery)} subjects, sealed {size}")
    search = search_ms(loaded.gallery, rng)
    loaded.gallery.wipe()
    del loaded
    gc.collect()
    verify_s, decrypt_s, gallery_s = phases(data, device_trust(issuer.public_key(), device))

    # A fresh child per run, so its RSS and high-water mark start clean; started only now,
    # so that its start-up does not compete with the timings above for the cores.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        memory: dict[str, Any] = pool.apply(
            memory_probe,
            (str(path), issuer.public_key().public_bytes_raw(), device.private_bytes_raw()),
        )
    return Run(
        file_mib=len(data) / 2**20,
        seal_s=seal_s,
        load_s=load_s,
        verify_s=verify_s,
        decrypt_s=decrypt_s,
        gallery_s=gallery_s,
        search_ms=search,
        **memory,
    )


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes: not a list of integers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("--sizes: at least one size, each at least 1")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[1_000, 10_000, 100_000],
        help="entries per watch-list, comma-separated (default 1000,10000,100000)",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per size (default 5)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    return parser.parse_args(argv)


def cell(values: list[float], digits: int = 0) -> str:
    """Median and (min-max) over the runs."""
    median = statistics.median(values)
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


COLUMNS: tuple[tuple[str, str, float, int], ...] = (
    # heading, Run field, scale, digits
    ("seal ms", "seal_s", 1e3, 0),
    ("load ms", "load_s", 1e3, 0),
    ("parse+verify ms", "verify_s", 1e3, 1),
    ("decrypt ms", "decrypt_s", 1e3, 0),
    ("gallery ms", "gallery_s", 1e3, 0),
    ("peak RSS MiB", "peak_rss_mib", 1.0, 1),
    ("kept RSS MiB", "kept_rss_mib", 1.0, 1),
    ("tracemalloc peak MiB", "tracemalloc_peak_mib", 1.0, 1),
    ("top-1 search ms", "search_ms", 1.0, 3),
)


def render(machine: str, args: argparse.Namespace, results: dict[int, list[Run]]) -> str:
    command = "python -m bench.watchlist_load " + " ".join(sys.argv[1:])
    lines = [
        "# Watch-list load",
        "",
        f"Machine: {machine}. One {DIM}-d float32 template per entry, one recipient. "
        f"{args.runs} runs per size, median (min-max over the runs). load = load_watchlist "
        "(parse, verify signature, HPKE, AES-GCM, entries, gallery); its phases timed "
        "separately; memory in a fresh process per run, relative to the file's bytes in "
        f"memory; search = subject_scores + argmax of one probe, median of {SEARCH_REPEATS}.",
        "",
        f"Command: `{command.strip()}`",
        "",
        "| entries | file MiB | " + " | ".join(heading for heading, *_ in COLUMNS) + " | mlocked |",
        "|---:|---:|" + "---:|" * len(COLUMNS) + "---|",
    ]
    for size, runs in results.items():
        cells = [f"{size:,}", f"{statistics.median(r.file_mib for r in runs):.2f}"]
        for _, name, scale, digits in COLUMNS:
            cells.append(cell([getattr(r, name) * scale for r in runs], digits))
        locked = {r.mlocked for r in runs}
        cells.append("yes" if locked == {True} else "no" if locked == {False} else "some runs")
        lines.append("| " + " | ".join(cells) + " |")
    if not all(r.hwm_reset for runs in results.values() for r in runs):
        lines += ["", "(VmHWM could not be reset: peak RSS includes the child's start-up peak.)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_description()
    results: dict[int, list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="edgewatch-bench-wl-") as scratch:
        for size in args.sizes:
            runs = []
            for run in range(args.runs):
                runs.append(one_run(size, Path(scratch), seed=run))
                print(
                    f"{size} entries, run {run + 1}/{args.runs}: load "
                    f"{runs[-1].load_s * 1e3:.0f} ms",
                    file=sys.stderr,
                )
            results[size] = runs
    print(render(machine, args, results))
    if args.json:
        document = {
            "benchmark": "watchlist_load",
            "machine": machine,
            "dim": DIM,
            "runs": args.runs,
            "search_repeats": SEARCH_REPEATS,
            "sizes": {
                str(size): {
                    "runs": [asdict(r) for r in runs],
                    "median": {
                        name: statistics.median(getattr(r, name) for r in runs)
                        for name in Run.__dataclass_fields__
                        if name not in ("mlocked", "hwm_reset")
                    },
                }
                for size, runs in results.items()
            },
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
