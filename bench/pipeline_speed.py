"""Per-stage time and end-to-end frames per second of the appliance's pipeline, per clip.

Runs the same pipeline as ``edgewatch simulate`` (camera as fast as possible,
detect, align, embed, match, discard) over every clip in
``../shared/data/video``, several times, and reports medians: per stage the
median milliseconds per frame, end to end the median frames per second, with
the spread (min-max over the repeats).

    .venv/bin/python -m bench.pipeline_speed --repeat 3 --output docs/pipeline-speed.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from bench.hamilton_cast import REFERENCE_PHOTOS
from bench.machine import cpu_model
from edgewatch.appliance import build_pipeline, load_vision, run_camera
from edgewatch.camera.registry import create_camera
from edgewatch.config import DEFAULT_DETECTOR, DEFAULT_EMBEDDER, parse_config
from edgewatch.matching.enrol import ReferencePhoto, build_gallery
from edgewatch.progress import ProgressLine
from edgewatch.timing import STAGES
from edgewatch.vision.runtime import runtime_name

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def machine_description() -> str:
    """CPU model and core count, for the table's caption."""
    return f"{cpu_model()}, {runtime_name()}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Per-stage time and frames per second of the pipeline on every clip.",
    )
    parser.add_argument(
        "--shared",
        type=Path,
        default=PROJECT_ROOT.parent / "shared",
        help="the shared data folder (default: ../shared)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per clip (default 3)")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, help="detector model id")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="embedder model id")
    parser.add_argument(
        "--model-manifest",
        action="append",
        type=Path,
        default=[],
        help="extra manifest, e.g. bench/research_models.toml",
    )
    parser.add_argument("--clip", action="append", default=[], help="only these clip names")
    parser.add_argument("--output", type=Path, help="write the markdown table here too")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    videos = sorted((args.shared / "data" / "video").glob("*.mp4"))
    if args.clip:
        videos = [v for v in videos if v.name in args.clip]
    if not videos:
        print(f"no clips found under {args.shared}/data/video", file=sys.stderr)
        return 1
    base = {
        "detector": {"model": args.detector},
        "embedder": {"model": args.embedder},
        "model_manifests": args.model_manifest,
    }
    config = parse_config({**base, "camera": {"type": "video", "path": videos[0]}}, "bench")
    parts = load_vision(config)
    examples = args.shared / "data" / "faces" / "examples"
    photos = [
        ReferencePhoto(name, examples / file)
        for name, files in REFERENCE_PHOTOS.items()
        for file in files
    ]
    gallery = build_gallery(photos, parts.encoder)

    rows = []
    for video in videos:
        clip_config = parse_config({**base, "camera": {"type": "video", "path": video}}, "bench")
        fps_runs: list[float] = []
        per_face_runs: list[float] = []
        stage_runs: dict[str, list[float]] = {stage: [] for stage in STAGES}
        faces = frames = 0
        for repeat in range(args.repeat):
            pipeline = build_pipeline(parts, gallery)
            with create_camera(clip_config.camera) as camera:
                progress = ProgressLine(f"{video.name} run {repeat + 1}", camera.frame_count)
                summary = run_camera(camera, pipeline, lambda _: None, progress=progress)
            fps_runs.append(summary.fps)
            embedded = summary.counters.faces_seen - summary.counters.faces_rejected
            embed_total = sum(pipeline.clock.samples["embed"])
            per_face_runs.append(embed_total / embedded * 1000.0 if embedded else 0.0)
            for stage, value in summary.stage_ms.items():
                stage_runs[stage].append(value)
            faces, frames = summary.counters.faces_seen, summary.counters.frames
        rows.append((video.name, frames, faces, fps_runs, per_face_runs, stage_runs))

    table = render(rows, args)
    print(table)
    if args.output:
        args.output.write_text(table, encoding="utf-8")
    return 0


def render(
    rows: list[tuple[str, int, int, list[float], list[float], dict[str, list[float]]]],
    args: argparse.Namespace,
) -> str:
    command = ".venv/bin/python -m bench.pipeline_speed " + " ".join(sys.argv[1:])
    lines = [
        "# Pipeline speed",
        "",
        f"Machine: {machine_description()}. Detector `{args.detector}`, embedder "
        f"`{args.embedder}`. Each clip run {args.repeat} times as fast as possible; "
        "figures are medians over the runs (per stage: median ms per frame within a run), "
        "spread in brackets is min-max over the runs. Per stage, the median over frames "
        "(frames without faces cost nothing to embed, so see embed ms/face for the model's "
        "cost per face).",
        "",
        f"Command: `{command.strip()}`",
        "",
        "| clip | frames | faces | frames/s | embed ms/face | "
        + " | ".join(f"{s} ms" for s in STAGES)
        + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(STAGES),
    ]
    for name, frames, faces, fps_runs, per_face_runs, stage_runs in rows:
        cells = [
            name,
            str(frames),
            str(faces),
            f"{statistics.median(fps_runs):.1f} ({min(fps_runs):.1f}-{max(fps_runs):.1f})",
            f"{statistics.median(per_face_runs):.1f}",
        ]
        for stage in STAGES:
            values = stage_runs[stage]
            cells.append(f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
