"""The appliance against what people would pick instead, in one run (docs/benchmarks.md).

Why: the other bench scripts measure the product alone. A buyer, an auditor
or a maintainer deciding where to spend effort needs the same figures for
the obvious alternatives, measured on the same frames, on the same machine,
in the same session, with the spread stated. This driver runs:

1. Pipelines (``bench.peers``): this product exactly as ``edgewatch
   simulate`` runs it, peer P1 (the ``face_recognition`` library's
   defaults) and peer P2 (Frigate-style YuNet + MobileFaceNet), on every clip
   in ``../shared/data/video``, each run in a fresh process: frames per
   second, faces, per-stage median times, peak memory, the product's speed
   over each peer's.
2. Matching at scale (``bench.search_scale``): the product's matcher on
   1,000 to 1,000,000 synthetic templates, time per face and memory.
3. Watch-list load (``bench.watchlist_load``, and a lighter seal-once path
   for the sizes where its full protocol would take too long).
4. Outbox and broker (``bench.events_speed``): alerts per second and
   capture-to-delivery latency.

Every figure is the median of repeated runs with its min-max. Runs are
interleaved (each repeat runs every clip through every pipeline) so that a
change in the machine's load during the session falls on all pipelines
alike; the load average is recorded with each run.

    .venv/bin/python -m bench.compare_peers --repeat 3 --output docs/benchmarks.md
    .venv/bin/python -m bench.compare_peers --quick          # smoke check, a minute or two

``scripts/bench`` sets up the checkout and runs the first command.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import math
import multiprocessing
import os
import shlex
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import cv2

from bench import events_speed, watchlist_load
from bench.peers import (
    APPLICABLE,
    FACE_RECOGNITION,
    LABELS,
    PIPELINES,
    PRODUCT,
    SHORT,
    YUNET_MOBILEFACENET,
    Job,
    KnownFaces,
    PipelineRun,
    enrol_face_recognition,
    run_job,
)
from bench.pipeline_speed import PROJECT_ROOT, machine_description
from bench.search_scale import SearchRun, light_load, search_run
from edgewatch.timing import STAGES

T = TypeVar("T")

SECTIONS = ("pipelines", "search", "load", "events")
DEFAULT_MAX_FRAMES = 0
"""0: whole clips (275 frames at most, 492 over the six clips; see --max-frames)."""
DEFAULT_SEARCH_SIZES = (1_000, 10_000, 100_000, 1_000_000)
DEFAULT_LOAD_SIZES = (1_000, 10_000, 100_000)
DEFAULT_LIGHT_LOAD_SIZES = (1_000_000,)
QUICK_CLIP = "head-pose-face-detection-female.mp4"
BLAS_SETTINGS = ("default", "1")


# --------------------------------------------------------------------------- arguments


def parse_sizes(text: str) -> list[int]:
    """``1000,10_000`` -> [1000, 10000]; empty text -> [] (skip that part)."""
    if not text.strip():
        return []
    return watchlist_load.parse_sizes(text)


def parse_names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare_peers",
        description="Benchmark the appliance against the face_recognition library (P1) and a "
        "Frigate-style YuNet + MobileFaceNet pipeline (P2) on every clip, plus the matcher "
        "at 1,000-1,000,000 templates, watch-list loading and alert delivery; write a "
        "markdown report, its raw figures as JSON and two plots.",
        epilog="Progress goes to stderr, one line per pipeline, clip and repeat. Needs "
        "../shared (clips, reference photos, YuNet, MobileFaceNet) and face_recognition "
        "(.venv/bin/pip install --no-deps face_recognition==1.3.0). scripts/bench runs the "
        "full benchmark from a clean checkout.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--shared", type=Path, default=PROJECT_ROOT.parent / "shared", help="the shared folder"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of every measurement; figures are medians"
    )
    parser.add_argument(
        "--max-frames",
        type=int,
        default=DEFAULT_MAX_FRAMES,
        metavar="N",
        help="the first N frames of each clip, the same frames for every pipeline (0: whole clips)",
    )
    parser.add_argument(
        "--clips",
        type=parse_names,
        default=[],
        metavar="NAME,...",
        help="only these clips (file names in ../shared/data/video; default: all *.mp4)",
    )
    parser.add_argument(
        "--pipelines",
        type=parse_names,
        default=list(PIPELINES),
        metavar="NAME,...",
        help=f"pipelines to run, of {', '.join(PIPELINES)}",
    )
    parser.add_argument(
        "--sections",
        type=parse_names,
        default=list(SECTIONS),
        metavar="NAME,...",
        help=f"parts to run, of {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--search-sizes",
        type=parse_sizes,
        default=list(DEFAULT_SEARCH_SIZES),
        metavar="N,...",
        help="gallery sizes for the matcher's search time and memory",
    )
    parser.add_argument(
        "--load-sizes",
        type=parse_sizes,
        default=list(DEFAULT_LOAD_SIZES),
        metavar="N,...",
        help="watch-list sizes run through bench.watchlist_load's full protocol",
    )
    parser.add_argument(
        "--light-load-sizes",
        type=parse_sizes,
        default=list(DEFAULT_LIGHT_LOAD_SIZES),
        metavar="N,...",
        help="watch-list sizes only sealed once and loaded --repeat times (too slow for the "
        "full protocol); empty to skip",
    )
    parser.add_argument("--alerts", type=int, default=2000, help="alerts per burst run")
    parser.add_argument("--event-runs", type=int, default=5, help="burst runs")
    parser.add_argument(
        "--trickle-s", type=float, default=10.0, help="seconds of the 10 alerts/s trickle"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke check: 2 repeats of 10 frames of {QUICK_CLIP}, 1,000 and 10,000 "
        "templates, a 1,000-entry list, 2 bursts of 100 alerts (about two minutes)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="write the markdown report here, with .json beside it and the plots as "
        "<stem>-fps.png and <stem>-search.png (default: report on stdout only)",
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat = min(args.repeat, 2)
        args.max_frames = args.max_frames or 10
        args.clips = args.clips or [QUICK_CLIP]
        args.search_sizes = [1_000, 10_000]
        args.load_sizes = [1_000]
        args.light_load_sizes = []
        args.alerts, args.event_runs, args.trickle_s = 100, 2, 1.0
    unknown = set(args.pipelines) - set(PIPELINES)
    if unknown:
        parser.error(f"--pipelines: unknown {', '.join(sorted(unknown))}")
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"--sections: unknown {', '.join(sorted(unknown))}")
    if args.repeat < 1 or args.max_frames < 0:
        parser.error("--repeat must be at least 1 and --max-frames at least 0")
    return args


# --------------------------------------------------------------------------- running


def in_child(function: Callable[..., T], *arguments: Any) -> T:
    """``function(*arguments)`` in a freshly spawned process: clean memory, no shared state."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: T = pool.apply(function, arguments)
    return result


def say(text: str) -> None:
    print(f"compare_peers: {text}", file=sys.stderr, flush=True)


def find_clips(args: argparse.Namespace) -> list[Path]:
    folder = args.shared / "data" / "video"
    clips = sorted(folder.glob("*.mp4"))
    if args.clips:
        missing = set(args.clips) - {clip.name for clip in clips}
        if missing:
            raise SystemExit(f"error: no such clip in {folder}: {', '.join(sorted(missing))}")
        clips = [clip for clip in clips if clip.name in args.clips]
    if not clips:
        raise SystemExit(f"error: no clips found under {folder} (is ../shared there?)")
    return clips


def run_pipelines(args: argparse.Namespace, clips: Sequence[Path]) -> list[PipelineRun]:
    """Every pipeline on every clip, ``--repeat`` times, interleaved, one child per run."""
    known: KnownFaces | None = None
    if FACE_RECOGNITION in args.pipelines:
        say("P1: encoding the cast's reference photos with face_recognition (once)")
        known = in_child(enrol_face_recognition, args.shared)
    max_frames = args.max_frames or None
    total = args.repeat * len(clips) * len(args.pipelines)
    runs: list[PipelineRun] = []
    for repeat in range(args.repeat):
        for clip in clips:
            for pipeline in args.pipelines:
                label = f"{SHORT[pipeline]} {clip.name} run {repeat + 1}/{args.repeat}"
                say(f"[{len(runs) + 1}/{total}] {label}")
                job = Job(
                    pipeline=pipeline,
                    clip=clip,
                    shared=args.shared,
                    max_frames=max_frames,
                    label=label,
                    known=known if pipeline == FACE_RECOGNITION else None,
                )
                run = in_child(run_job, job)
                runs.append(run)
                say(
                    f"[{len(runs)}/{total}] {label}: {run.frames} frames, {run.fps:.1f} frames/s, "
                    f"{run.faces_detected} faces, peak {run.peak_rss_mib:.0f} MiB, "
                    f"load {run.load_average:.2f}"
                )
    return runs


@contextlib.contextmanager
def blas_threads(threads: str) -> Iterator[None]:
    """Children spawned inside get ``OPENBLAS_NUM_THREADS=threads`` ("default": unset).

    OpenBLAS reads it when numpy loads, so it affects only processes started
    here, never this one.
    """
    saved = os.environ.pop("OPENBLAS_NUM_THREADS", None)
    if threads != "default":
        os.environ["OPENBLAS_NUM_THREADS"] = threads
    try:
        yield
    finally:
        os.environ.pop("OPENBLAS_NUM_THREADS", None)
        if saved is not None:
            os.environ["OPENBLAS_NUM_THREADS"] = saved


def run_search(args: argparse.Namespace) -> list[SearchRun]:
    """Every size, with default and with single-threaded BLAS, ``--repeat`` times."""
    runs = []
    for repeat in range(args.repeat):
        for threads in BLAS_SETTINGS:
            for size in args.search_sizes:
                what = f"search: {size:,} templates, BLAS threads {threads}"
                say(f"{what}, run {repeat + 1}/{args.repeat}")
                with blas_threads(threads):
                    runs.append(in_child(search_run, size, repeat))
                say(f"{what}: {runs[-1].search_ms:.3f} ms per face")
    return runs


def run_loads(args: argparse.Namespace) -> dict[str, Any]:
    """bench.watchlist_load's own main for the full protocol, light_load beyond it."""
    result: dict[str, Any] = {"full": None, "light": []}
    if args.load_sizes:
        say(f"watch-list load: bench.watchlist_load for {args.load_sizes}, {args.repeat} runs")
        with tempfile.TemporaryDirectory(prefix="edgewatch-compare-") as scratch:
            path = Path(scratch) / "load.json"
            sizes = ",".join(str(size) for size in args.load_sizes)
            with contextlib.redirect_stdout(sys.stderr):
                watchlist_load.main(
                    ["--sizes", sizes, "--runs", str(args.repeat), "--json", str(path)]
                )
            result["full"] = json.loads(path.read_text(encoding="utf-8"))
    for size in args.light_load_sizes:
        say(f"watch-list load: {size:,} entries, sealed once, loaded {args.repeat} times")
        started = time.monotonic()
        light = in_child(light_load, size, args.repeat, 0)
        light["wall_s"] = time.monotonic() - started
        result["light"].append(light)
        loads = ", ".join(f"{load['load_s']:.1f} s" for load in light["loads"])
        say(f"watch-list load: {size:,} entries: {loads}")
    return result


def run_events(args: argparse.Namespace) -> dict[str, Any]:
    """bench.events_speed's own main (broker, outbox, publisher, verifying subscriber)."""
    say(f"events: {args.event_runs} bursts of {args.alerts} alerts, {args.trickle_s:g} s trickle")
    with tempfile.TemporaryDirectory(prefix="edgewatch-compare-") as scratch:
        path = Path(scratch) / "events.json"
        with contextlib.redirect_stdout(sys.stderr):
            events_speed.main(
                [
                    "--alerts",
                    str(args.alerts),
                    "--runs",
                    str(args.event_runs),
                    "--trickle-s",
                    str(args.trickle_s),
                    "--json",
                    str(path),
                ]
            )
        result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


# --------------------------------------------------------------------------- figures


def cell(values: Sequence[float], digits: int = 1) -> str:
    """Median (min-max) over the runs, as every bench table writes it."""
    if not values or any(math.isnan(v) for v in values):
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1 run)"
    return watchlist_load.cell(list(values), digits)


def by_clip(runs: Sequence[PipelineRun]) -> dict[str, dict[str, list[PipelineRun]]]:
    """clip -> pipeline -> its runs, in the order they ran."""
    table: dict[str, dict[str, list[PipelineRun]]] = {}
    for run in runs:
        table.setdefault(run.clip, {}).setdefault(run.pipeline, []).append(run)
    return table


def all_clips_fps(runs: Sequence[PipelineRun], pipeline: str) -> list[float]:
    """Per repeat, frames over seconds summed across the clips (a pipeline's overall rate)."""
    mine = [r for r in runs if r.pipeline == pipeline]
    clips = len({r.clip for r in mine})
    rates = []
    for start in range(0, len(mine) - clips + 1, clips):
        chunk = mine[start : start + clips]
        rates.append(sum(r.frames for r in chunk) / sum(r.wall_s for r in chunk))
    return rates


def ratios(ours: Sequence[float], theirs: Sequence[float]) -> list[float]:
    """The product's rate over a peer's, repeat by repeat (runs that ran side by side)."""
    return [a / b for a, b in zip(ours, theirs, strict=True) if b > 0]


def summary(runs: Sequence[PipelineRun], pipelines: Sequence[str]) -> dict[str, Any]:
    """Medians and ranges per clip and pipeline, and the ratios: the JSON's summary block."""
    result: dict[str, Any] = {}
    for clip, per_pipeline in by_clip(runs).items():
        entry: dict[str, Any] = {}
        for pipeline in pipelines:
            mine = per_pipeline.get(pipeline, [])
            if not mine:
                continue
            fps = [r.fps for r in mine]
            entry[pipeline] = {
                "frames": mine[0].frames,
                "faces_detected": statistics.median(r.faces_detected for r in mine),
                "fps_median": statistics.median(fps),
                "fps_min": min(fps),
                "fps_max": max(fps),
                "peak_rss_mib_median": statistics.median(r.peak_rss_mib for r in mine),
                "stage_ms_median": {
                    s: statistics.median(r.stage_ms[s] for r in mine) for s in APPLICABLE[pipeline]
                },
            }
            if pipeline != PRODUCT and PRODUCT in per_pipeline:
                pairs = ratios([r.fps for r in per_pipeline[PRODUCT]], fps)
                entry[pipeline]["product_fps_ratio_median"] = statistics.median(pairs)
                entry[pipeline]["product_fps_ratio_min"] = min(pairs)
                entry[pipeline]["product_fps_ratio_max"] = max(pairs)
        result[clip] = entry
    return result


# --------------------------------------------------------------------------- report


def machine_line() -> str:
    """CPU, runtimes and library versions: what the figures are figures of."""
    versions = []
    for package in ("numpy", "opencv-python-headless", "dlib-bin", "face_recognition", "av"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"{machine_description()}, OpenCV {cv2.__version__}; " + ", ".join(versions)


def pipeline_tables(runs: Sequence[PipelineRun], pipelines: Sequence[str]) -> list[str]:
    clips = by_clip(runs)
    peers = [p for p in pipelines if p != PRODUCT]
    head = ["clip", "frames"] + [f"{SHORT[p]} frames/s" for p in pipelines]
    if PRODUCT in pipelines:
        head += [f"edgewatch ÷ {SHORT[p].split()[0]}" for p in peers]
    lines = [
        "| " + " | ".join(head) + " |",
        "|---|---:|" + "---:|" * (len(head) - 2),
    ]
    rows: list[tuple[str, str, dict[str, list[float]]]] = [
        (clip, str(next(iter(per.values()))[0].frames), {p: [r.fps for r in per[p]] for p in per})
        for clip, per in clips.items()
    ]
    total_frames = sum(int(frames) for _, frames, _ in rows)
    rows.append(
        (
            "**all clips** (frames ÷ seconds, summed)",
            str(total_frames),
            {p: all_clips_fps(runs, p) for p in pipelines},
        )
    )
    for name, frames, fps in rows:
        cells = [name, frames] + [cell(fps.get(p, [])) for p in pipelines]
        if PRODUCT in pipelines:
            for peer in peers:
                pairs = ratios(fps[PRODUCT], fps[peer]) if peer in fps else []
                cells.append(cell(pairs, 1).replace(" (", "× (", 1) if pairs else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def stage_table(runs: Sequence[PipelineRun], pipelines: Sequence[str]) -> list[str]:
    head = ["clip", "pipeline", "faces detected / embedded / matched", "frames/s"]
    head += [f"{stage} ms" for stage in STAGES] + ["embed ms/face"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---:|" + "---:|" * (len(head) - 3)]
    for clip, per in by_clip(runs).items():
        for pipeline in pipelines:
            mine = per.get(pipeline, [])
            if not mine:
                continue
            faces = " / ".join(
                f"{statistics.median(getattr(r, name) for r in mine):.0f}"
                for name in ("faces_detected", "faces_embedded", "faces_matched")
            )
            cells = [clip, SHORT[pipeline], faces, cell([r.fps for r in mine])]
            for stage in STAGES:
                applies = stage in APPLICABLE[pipeline]
                cells.append(cell([r.stage_ms[stage] for r in mine]) if applies else "-")
            cells.append(cell([r.embed_ms_per_face for r in mine]))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def memory_table(runs: Sequence[PipelineRun], pipelines: Sequence[str]) -> list[str]:
    lines = [
        "| clip | pipeline | baseline RSS MiB (before models) | with models + gallery MiB | "
        "peak RSS MiB (VmHWM) | peak − baseline MiB | set-up s (models + enrolment) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for clip, per in by_clip(runs).items():
        for pipeline in pipelines:
            mine = per.get(pipeline, [])
            if not mine:
                continue
            cells = [
                clip,
                SHORT[pipeline],
                cell([r.baseline_rss_mib for r in mine], 0),
                cell([r.loaded_rss_mib for r in mine], 0),
                cell([r.peak_rss_mib for r in mine], 0),
                cell([r.peak_rss_mib - r.baseline_rss_mib for r in mine], 0),
                cell([r.setup_s for r in mine], 1),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def search_table(runs: Sequence[SearchRun]) -> list[str]:
    lines = [
        "| templates (128-d) | top-1 search ms/face, default BLAS threads | p95 ms/face | "
        "top-1 search ms/face, 1 BLAS thread | p95 ms/face | faces/s it allows (1 thread) | "
        "gallery build ms | gallery kept MiB | peak MiB above baseline |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sorted({r.size for r in runs}):
        default = [r for r in runs if r.size == size and r.blas_threads == "default"]
        single = [r for r in runs if r.size == size and r.blas_threads == "1"]
        mine = default + single
        rate = f"{1000 / statistics.median(r.search_ms for r in single):,.0f}" if single else "-"
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{size:,}",
                    cell([r.search_ms for r in default], 3),
                    cell([r.search_p95_ms for r in default], 3),
                    cell([r.search_ms for r in single], 3),
                    cell([r.search_p95_ms for r in single], 3),
                    rate,
                    cell([r.build_s * 1e3 for r in mine], 0),
                    cell([r.kept_rss_mib for r in mine], 1),
                    cell([r.peak_rss_mib for r in mine], 1),
                ]
            )
            + " |"
        )
    return lines


def load_table(loads: dict[str, Any]) -> list[str]:
    lines = [
        "| entries | file MiB | load ms (verify, HPKE, AES-GCM, entries, gallery) | "
        "peak RSS MiB during load | kept RSS MiB | seal ms | protocol |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    full = loads.get("full")
    if full:
        for size, entry in full["sizes"].items():
            runs = entry["runs"]
            lines.append(
                "| "
                + " | ".join(
                    [
                        f"{int(size):,}",
                        f"{statistics.median(r['file_mib'] for r in runs):.1f}",
                        cell([r["load_s"] * 1e3 for r in runs], 0),
                        cell([r["peak_rss_mib"] for r in runs], 1),
                        cell([r["kept_rss_mib"] for r in runs], 1),
                        cell([r["seal_s"] * 1e3 for r in runs], 0),
                        f"bench.watchlist_load, {len(runs)} runs (fresh keys and list each)",
                    ]
                )
                + " |"
            )
    for light in loads.get("light", []):
        runs = light["loads"]
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{light['size']:,}",
                    f"{light['file_mib']:.1f}",
                    cell([r["load_s"] * 1e3 for r in runs], 0),
                    cell([r["peak_rss_mib"] for r in runs], 1),
                    cell([r["kept_rss_mib"] for r in runs], 1),
                    f"{light['seal_s'] * 1e3:.0f} (1 seal)",
                    f"sealed once, loaded {len(runs)} times in one process "
                    f"({light['wall_s'] / 60:.1f} min in all)",
                ]
            )
            + " |"
        )
    return lines


def events_table(events: dict[str, Any]) -> list[str]:
    bursts = events["burst"]
    trickle = events["trickle"]

    def latency(key: str, field: str) -> list[float]:
        return [b[key][field] for b in bursts]

    delivered = sum(b["delivered"] for b in bursts)
    duplicates = sum(b["duplicates"] for b in bursts)
    rejected = sum(b["rejected"] for b in bursts)
    lines = [
        "| scenario | alerts queued/s (outbox appends) | delivered and verified alerts/s | "
        "capture → verified p50 ms | p95 ms | max ms | delivered / duplicates / rejected |",
        "|---|---:|---:|---:|---:|---:|---|",
        "| "
        + " | ".join(
            [
                f"burst of {events['alerts']:,}, {len(bursts)} runs",
                cell([b["appends_per_s"] for b in bursts], 0),
                cell([b["end_to_end_per_s"] for b in bursts], 0),
                cell(latency("latency", "p50_ms"), 0),
                cell(latency("latency", "p95_ms"), 0),
                cell(latency("latency", "max_ms"), 0),
                f"{delivered} / {duplicates} / {rejected} (of {events['alerts'] * len(bursts)})",
            ]
        )
        + " |",
        "| "
        + " | ".join(
            [
                f"trickle {events['trickle_rate']:g}/s for {events['trickle_s']:g} s (1 run)",
                "-",
                "-",
                f"{trickle['latency']['p50_ms']:.1f}",
                f"{trickle['latency']['p95_ms']:.1f}",
                f"{trickle['latency']['max_ms']:.1f}",
                f"{trickle['delivered']} / {trickle['duplicates']} / {trickle['rejected']} "
                f"(of {trickle['alerts']})",
            ]
        )
        + " |",
    ]
    return lines


def headline(runs: Sequence[PipelineRun], pipelines: Sequence[str]) -> str:
    """One sentence: the product's overall rate against each peer's."""
    if PRODUCT not in pipelines or not runs:
        return ""
    ours = all_clips_fps(runs, PRODUCT)
    parts = [f"edgewatch ran the clips at {statistics.median(ours):.1f} frames/s"]
    for peer in (p for p in pipelines if p != PRODUCT):
        theirs = all_clips_fps(runs, peer)
        pairs = ratios(ours, theirs)
        ratio = statistics.median(pairs)
        if 0.95 <= ratio <= 1.05:
            relation = f"about as fast as edgewatch: edgewatch ÷ peer {ratio:.2f}"
        elif ratio > 1:
            relation = f"edgewatch {ratio:.1f}× as fast"
        else:
            relation = f"edgewatch ÷ peer {ratio:.2f}: edgewatch {1 / ratio:.1f}× slower"
        parts.append(f"{SHORT[peer]} at {statistics.median(theirs):.1f} ({relation})")
    return "; ".join(parts) + " (all clips, frames ÷ seconds, median of the repeats)."


PI_SLOWDOWN: dict[str, tuple[float, float]] = {
    "Raspberry Pi 5 (4x Cortex-A76, 2.4 GHz)": (1.5, 2.5),
    "Raspberry Pi 4 (4x Cortex-A72, 1.5-1.8 GHz)": (3.0, 6.0),
}
"""ASSUMED per-core slowdown against one core of the development VM, for a planning
estimate only: broad ranges in the spirit of published single-core comparisons of
these CPUs, not measurements. The Pi section says so wherever it uses them."""


def pi_section(machine: str, runs: Sequence[PipelineRun], pipelines: Sequence[str]) -> list[str]:
    """What a Pi would do, reasoned from this run's figures; every number marked as such."""
    lines = [
        "## On a Raspberry Pi 4 or 5: NOT MEASURED",
        "",
        "**Nothing in this section was measured on a Pi.** No Raspberry Pi was available. "
        "What follows is reasoning from the figures above and from the CPUs' published "
        "characteristics; the estimates below rest on an assumed slowdown and must not be "
        "quoted as results.",
        "",
        "To measure it, on the Pi (Raspberry Pi OS 64-bit, set up as in the README's "
        '"On a Raspberry Pi"), with `../shared` beside the checkout:',
        "",
        "```sh",
        ".venv/bin/python -m bench.compare_peers --quick   # first, a smoke check",
        "scripts/bench                                     # the same benchmark, same report",
        "```",
        "",
        "Check first that `ai-edge-litert`, `dlib-bin`, `opencv-python-headless` and `av` "
        "install as aarch64 wheels for the Pi's Python; where one has no wheel, pip tries "
        "to build it from source (dlib: an hour or more on a Pi 4) or fails, and P1 "
        "cannot run without dlib.",
        "",
    ]
    if runs and PRODUCT in pipelines:
        assumed = " and ".join(
            f"a {name} is {low:g}-{high:g}× slower" for name, (low, high) in PI_SLOWDOWN.items()
        )
        lines += [
            "**Planning estimate, NOT MEASURED.** Assume, for planning only, that per core "
            + assumed
            + " than one core of this machine, and that every stage slows alike. Dividing "
            "each pipeline's measured all-clips rate by those factors gives:",
            "",
            "| pipeline | measured here, all clips, frames/s | "
            + " | ".join(f"{name}: ESTIMATE, not measured" for name in PI_SLOWDOWN)
            + " |",
            "|---|---:|" + "---:|" * len(PI_SLOWDOWN),
        ]
        for pipeline in pipelines:
            fps = statistics.median(all_clips_fps(runs, pipeline))
            cells = [SHORT[pipeline], f"{fps:.1f}"] + [
                f"~{fps / high:.1f}-{fps / low:.1f}" for low, high in PI_SLOWDOWN.values()
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "The ratios between the pipelines are the better guide: they depend far less on "
            "the assumption than the rates do.",
            "",
        ]
    lines += [
        "What to expect, and why:",
        "",
        f"- **CPU.** This machine: {machine.split(',')[0]} (AVX-512, 2 cores, a VM). A "
        "Pi 4 has four Cortex-A72 cores at 1.5-1.8 GHz (128-bit NEON); a Pi 5 four "
        "Cortex-A76 at 2.4 GHz, a much stronger core. The product runs BlazeFace and "
        "FaceMesh on 2 LiteRT threads and its embedder on 1; OpenCV's DNN (P2's YuNet) "
        "uses every core; dlib (P1) mostly one. A Pi's four cores therefore help P2's "
        "detector most, and the product only as far as its 2-thread models (or a second "
        "camera's process) use them, so the estimate above is, if anything, pessimistic "
        "for P2 relative to the others.",
        "- **The product.** Detection (BlazeFace on the whole frame plus three tiles) and "
        "the embedder are LiteRT models, the workload XNNPACK is tuned for on Arm NEON. A "
        "frame without usable faces costs only decoding and detection, so on a quiet "
        "scene the rate is the detect column's.",
        "- **P1 (face_recognition).** HOG and dlib's ResNet run in dlib's own C++; nothing "
        "about Arm narrows its gap to the product. On a Pi the usual remedy is to shrink "
        "the frames, which loses exactly the small, distant faces a camera on a pole must "
        "find.",
        "- **P2 (YuNet + MobileFaceNet).** OpenCV's DNN runs YuNet with its own NEON "
        "kernels; MobileFaceNet runs on LiteRT like the product's embedder.",
        "- **Matching.** The search reads every template once per face: 512 bytes per "
        "128-d template, 512 MB at a million. From about 100,000 templates it is limited "
        "by memory bandwidth, of which a Pi's LPDDR4/LPDDR4X offers a fraction of this "
        "server's, so the large-list times above would grow by more than the CPU factor.",
        "- **Memory.** The resident sets above carry over roughly (the same code and "
        "libraries, 64-bit): each pipeline fits any Pi, but the load of a "
        "million-entry list peaks at several GiB above the process's own size and does "
        "not fit a 2 or 4 GB Pi (the accuracy budget in the README refuses such a list "
        "for dlib's model anyway).",
        "- **Outbox.** A burst's delivery rate is set by the fsync of every "
        "acknowledgement (`synchronous=FULL`); an SD card's fsync is far slower than this "
        "VM's disk, so expect fewer alerts per second in a burst (`python -m "
        "bench.outbox_speed --dir` on the Pi's state directory measures that part alone). "
        "The trickle latency is mostly waiting in the publisher's cycle and should change "
        "little.",
        "",
    ]
    return lines


def render(
    args: argparse.Namespace,
    command: str,
    machine: str,
    started: dict[str, Any],
    finished: dict[str, Any],
    results: dict[str, Any],
) -> str:
    runs: list[PipelineRun] = results.get("pipelines", [])
    pipelines = [p for p in args.pipelines if any(r.pipeline == p for r in runs)]
    frames_note = (
        f"the first {args.max_frames} frames of each clip (fewer where a clip is shorter)"
        if args.max_frames
        else "every frame of every clip (no frame limit)"
    )
    loads = [r.load_average for r in runs]
    lines = [
        "# Benchmarks: edgewatch against what people would pick instead",
        "",
        "Generated by `bench/compare_peers.py` (run by `scripts/bench`); do not edit by hand, "
        "rerun it. Raw figures: `docs/benchmarks.json`.",
        "",
        f"- Machine: {machine}.",
        f"- Load average (1/5/15 min) at the start {started['load']}, at the end "
        f"{finished['load']}"
        + (
            f"; at the start of each pipeline run {min(loads):.2f}-{max(loads):.2f}"
            if loads
            else ""
        )
        + ". The machine was shared with another engineer's test runs, so "
        "some runs competed for the 2 cores: the min-max ranges show how much.",
        f"- Command: `{command}`",
        f"- Whole run: {finished['elapsed_min']:.1f} minutes ({started['time']} to "
        f"{finished['time']}).",
        f"- Every figure is the median of {args.repeat} runs, with the min-max over the runs "
        "in brackets (per-stage times: the median over frames within a run, then the median "
        "of those over the runs).",
        "",
    ]
    if runs:
        lines += [
            "## Pipelines, clip by clip",
            "",
            f"Frames: {frames_note}, read by the product's video camera (PyAV) for every "
            "pipeline, so all three see identical frames and pay identical decoding. Each "
            "pipeline, clip and repeat ran in a fresh process (multiprocessing spawn); a "
            "repeat runs every clip through every pipeline before the next repeat starts.",
            "",
            *(f"- **{LABELS[p]}**: {PIPELINE_NOTES[p]}" for p in pipelines),
            "",
            headline(runs, pipelines),
            "",
            "### Frames per second",
            "",
            "End to end, decoding included, as fast as possible; the last columns are "
            "edgewatch's rate over the peer's, repeat by repeat (runs that ran back to back). "
            "`docs/pipeline-speed.md` measured the product alone at another time; where its "
            "figures differ, the machine's load (above) is the first suspect.",
            "",
            *pipeline_tables(runs, pipelines),
            "",
            "![frames per second per pipeline and clip](benchmarks-fps.png)",
            "",
            "### Faces and time per stage",
            "",
            "Faces summed over the frames (a face seen in 10 frames counts 10 times); "
            '"matched": faces that matched one of the hamilton cast\'s reference photos in '
            "their frame. Stage times are medians over frames of ms per frame (a frame "
            "without faces costs nothing to embed, so see embed ms/face for the model's cost "
            'per face); "-": the pipeline has no such stage. P1\'s embed column is the whole '
            "`face_encodings` call (dlib's landmarks, chip and ResNet); its decode column "
            "includes the BGR-to-RGB copy the library needs. The product's landmarks column "
            "is FaceMesh plus the quality gates.",
            "",
            *stage_table(runs, pipelines),
            "",
            "### Memory",
            "",
            "Resident set of the run's process: before any model was loaded (interpreter and "
            "libraries imported, the same modules for all three), with the models and the "
            "gallery loaded, and the peak over the whole run (`VmHWM` from "
            "`/proc/self/status`). P1's set-up is loading the library's dlib models; the "
            "cast's encodings were computed once, in a process of their own, and handed to "
            "every P1 run (HOG on the reference photos takes about 15 s).",
            "",
            *memory_table(runs, pipelines),
            "",
        ]
    if "search" in results:
        lines += [
            "## Matching at scale",
            "",
            "The product's `Gallery` and `Matcher` (the code the pipeline calls once per "
            "frame) over N synthetic 128-d templates (random, one per subject: nobody's face; "
            "the default embedder's dimension). Time: `Matcher.decide` for one face (one "
            "matrix-vector product over the whole gallery, top two, threshold and margin), "
            "median of at least 20 calls and about 3 s of calls within a run, then the median "
            "over runs. Each size ran in a fresh process with OpenBLAS's default threads (one "
            "per core, as the appliance runs) and with `OPENBLAS_NUM_THREADS=1`: a second "
            "thread speeds up large lists when a core is free, and can stall the search "
            "while the other core is busy (on this shared machine, see the load averages "
            "above); the single-thread column is the matcher's cost on one core, what a unit "
            "that also runs the models can count on. Memory: kept = the gallery and its "
            "subjects, peak = "
            "the high-water mark above the process's start, including the random matrix the "
            "gallery is copied from (as a loaded list's decrypted templates are).",
            "",
            *search_table(results["search"]),
            "",
            "![top-1 search time against watch-list size](benchmarks-search.png)",
            "",
        ]
    if "load" in results:
        lines += [
            "## Watch-list load",
            "",
            "Loading a sealed watch-list file on the unit (`load_watchlist`: parse, verify the "
            "issuer's signature, HPKE, AES-256-GCM, entries, gallery) with synthetic 128-d "
            "templates. Up to 100,000 entries: `bench.watchlist_load`'s own protocol (a new "
            "list, keys and seal per run; memory in a fresh process). At 1,000,000 entries "
            "that protocol took 4.7 minutes for one run when tried during development (seal "
            "27 s, load 31 s, the load again by phases, twice more for memory; 3 runs would "
            "be a quarter of an hour), so the list is sealed once and loaded "
            f"{args.repeat} times in one fresh process instead (peak RSS per load from the "
            "high-water mark reset before it). The phases of each load are in "
            "`docs/benchmarks.json` (`load.full`).",
            "",
            *load_table(results["load"]),
            "",
        ]
    if "events" in results:
        events = results["events"]
        lines += [
            "## Outbox and broker",
            "",
            f"`bench.events_speed` as it is: {events['machine']}. A real Mosquitto with mutual "
            "TLS on loopback, the unit's durable SQLite outbox and publisher (QoS 1), and the "
            "verifying control-room subscriber, all on this machine. Latency: from the "
            "alert's capture time to its verified delivery, per alert, p50/p95/max within a "
            "run, then median (min-max) over the runs.",
            "",
            *events_table(events),
            "",
        ]
    lines += [
        *pi_section(machine, runs, pipelines),
        "## What this leaves out",
        "",
        "- Whether the faster pipeline is the better one: P2 embeds every face it detects, "
        "including the small, blurred and turned faces the product's gates refuse unembedded "
        "(such faces are where false alerts come from, `docs/accuracy.md`), and the faces "
        "matched here are not checked against who is really in the frame (no per-frame "
        "ground truth), so a higher count is not a better one.",
        "- Accuracy: these runs count faces, they do not score identities; "
        "`docs/accuracy.md` compares the embedders (and the face_recognition library) on "
        "LFW with the same code.",
        "- Real-time behaviour: every pipeline runs as fast as it can; at a camera's 30 "
        "frames/s a slower pipeline drops frames, a faster one idles.",
        "- Frigate itself: P2 is its detector-and-embedder recipe (YuNet, an ArcFace-style "
        "MobileFaceNet, landmark alignment) in this product's frame loop, not Frigate's "
        "person detector, tracker or process layout; Frigate's own small model is a "
        "FaceNet. The MobileFaceNet weights are research-only and never shipped.",
        "- GPU or NPU acceleration (the peers' documented fast paths): all three run on the "
        "CPU with their default threading (the product's BlazeFace and FaceMesh on 2 LiteRT "
        "threads, its embedder on 1; OpenCV's DNN on every core; dlib mostly on one).",
        "",
    ]
    return "\n".join(lines)


PIPELINE_NOTES: dict[str, str] = {
    PRODUCT: "Exactly as `edgewatch simulate --video CLIP --enrol ...` with the hamilton cast "
    "(9 photos of 4 people) and default options: tiled detection, FaceMesh refinement, quality "
    "gates (faces under 40 px, blurred or near profile are discarded unembedded), tracking.",
    FACE_RECOGNITION: "`face_locations(rgb)` (HOG, upsampled once), `face_encodings(rgb, "
    "locations)` for every face, `face_distance` to the cast's encodings, tolerance 0.6.",
    YUNET_MOBILEFACENET: "`cv2.FaceDetectorYN` (score 0.6, NMS 0.3) on the full frame, every "
    "face aligned on YuNet's five points to the ArcFace template and embedded by "
    "`mobilefacenet-insightface` (research-only, loaded through `bench/research_models.toml` "
    "by the product's embedder code), cosine match; in the product's frame loop without "
    "FaceMesh, quality gates or size floor. Faces whose points are degenerate cannot be "
    "aligned and are not embedded (the detected/embedded columns show how many).",
}


# --------------------------------------------------------------------------- plots


def plot_fps(runs: Sequence[PipelineRun], pipelines: Sequence[str], path: Path) -> None:
    """Grouped bars: frames/s per clip and pipeline, min-max over the runs as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = list(by_clip(runs))
    width = 0.8 / max(len(pipelines), 1)
    figure, axes = plt.subplots(figsize=(11, 5.5))
    for index, pipeline in enumerate(pipelines):
        medians, low, high = [], [], []
        for clip in clips:
            fps = [r.fps for r in runs if r.clip == clip and r.pipeline == pipeline]
            median = statistics.median(fps) if fps else 0.0
            medians.append(median)
            low.append(median - min(fps) if fps else 0.0)
            high.append(max(fps) - median if fps else 0.0)
        positions = [c + (index - (len(pipelines) - 1) / 2) * width for c in range(len(clips))]
        bars = axes.bar(
            positions, medians, width, yerr=[low, high], capsize=3, label=LABELS[pipeline]
        )
        axes.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    axes.set_xticks(range(len(clips)))
    axes.set_xticklabels(
        [textwrap.fill(clip.removesuffix(".mp4"), 22) for clip in clips], fontsize=8
    )
    axes.set_ylabel("frames per second (median; bars: min-max)")
    axes.set_title("End-to-end frames per second, same frames, same machine")
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_search(runs: Sequence[SearchRun], path: Path) -> None:
    """Log-log: one face's top-1 search time against the number of templates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 5))
    for threads in BLAS_SETTINGS:
        sizes = sorted({r.size for r in runs if r.blas_threads == threads})
        if not sizes:
            continue
        medians, low, high = [], [], []
        for size in sizes:
            values = [r.search_ms for r in runs if r.size == size and r.blas_threads == threads]
            median = statistics.median(values)
            medians.append(median)
            low.append(median - min(values))
            high.append(max(values) - median)
        label = "default BLAS threads" if threads == "default" else f"{threads} BLAS thread"
        axes.errorbar(
            sizes,
            medians,
            yerr=[low, high],
            marker="o",
            capsize=4,
            label=f"Matcher.decide, {label}",
        )
        for size, median in zip(sizes, medians, strict=True):
            axes.annotate(
                f"{median:.3g} ms",
                (size, median),
                textcoords="offset points",
                xytext=(-8, 8) if threads == "1" else (8, -14),
                ha="right" if threads == "1" else "left",
                fontsize=8,
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("templates in the watch-list (128-d, synthetic)")
    axes.set_ylabel("top-1 search per face, ms (median; bars: min-max)")
    axes.set_title("The product's matcher: search time against watch-list size")
    axes.legend(fontsize=8)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# --------------------------------------------------------------------------- main


def moment() -> dict[str, Any]:
    return {
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load": " / ".join(f"{value:.2f}" for value in os.getloadavg()),
        "monotonic": time.monotonic(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(given)
    command = shlex.join([".venv/bin/python", "-m", "bench.compare_peers", *given])
    wants_p1 = "pipelines" in args.sections and FACE_RECOGNITION in args.pipelines
    if wants_p1 and importlib.util.find_spec("face_recognition") is None:
        print(
            "error: face_recognition is not installed: "
            ".venv/bin/pip install --no-deps face_recognition==1.3.0 "
            "(or leave it out with --pipelines)",
            file=sys.stderr,
        )
        return 2
    started = moment()
    machine = machine_line()
    results: dict[str, Any] = {}
    if "pipelines" in args.sections:
        results["pipelines"] = run_pipelines(args, find_clips(args))
    if "search" in args.sections and args.search_sizes:
        results["search"] = run_search(args)
    if "load" in args.sections and (args.load_sizes or args.light_load_sizes):
        results["load"] = run_loads(args)
    if "events" in args.sections:
        results["events"] = run_events(args)
    finished = moment()
    finished["elapsed_min"] = (finished["monotonic"] - started["monotonic"]) / 60
    report = render(args, command, machine, started, finished, results)
    print(report)
    if args.output is not None:
        write_outputs(args, command, machine, started, finished, results, report)
    say(f"done in {finished['elapsed_min']:.1f} minutes")
    return 0


def write_outputs(
    args: argparse.Namespace,
    command: str,
    machine: str,
    started: dict[str, Any],
    finished: dict[str, Any],
    results: dict[str, Any],
    report: str,
) -> None:
    """The report, its raw figures as JSON beside it, and the two plots."""
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report, encoding="utf-8")
    runs: list[PipelineRun] = results.get("pipelines", [])
    pipelines = [p for p in args.pipelines if any(r.pipeline == p for r in runs)]
    document: dict[str, Any] = {
        "benchmark": "compare_peers",
        "command": command,
        "machine": machine,
        "started": {k: v for k, v in started.items() if k != "monotonic"},
        "finished": {k: v for k, v in finished.items() if k != "monotonic"},
        "repeat": args.repeat,
        "max_frames": args.max_frames or None,
        "pipelines": {p: LABELS[p] for p in pipelines},
        "pipeline_runs": [{**asdict(r), "fps": r.fps} for r in runs],
        "pipeline_summary": summary(runs, pipelines),
        "search_runs": [asdict(r) for r in results.get("search", [])],
        "load": results.get("load"),
        "events": results.get("events"),
    }
    output.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n", "utf-8")
    if runs:
        plot_fps(runs, pipelines, output.with_name(f"{output.stem}-fps.png"))
    if results.get("search"):
        plot_search(results["search"], output.with_name(f"{output.stem}-search.png"))


if __name__ == "__main__":
    sys.exit(main())
