"""``edgewatch simulate``: the whole appliance on a recorded video or a folder of stills."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from edgewatch.appliance import build_pipeline, load_vision, run_camera
from edgewatch.camera.registry import create_camera
from edgewatch.config import (
    DEFAULT_DETECTOR,
    DEFAULT_EMBEDDER,
    DEFAULT_LANDMARKER,
    parse_config,
)
from edgewatch.matching.enrol import build_gallery, parse_enrol_option
from edgewatch.pipeline import MatchReport
from edgewatch.progress import ProgressLine

HELP = "run the appliance on a recorded video (or stills) and print its match decisions"

DESCRIPTION = """\
Run the full on-device pipeline (detect, align, embed, match, discard) on a
recorded video or a set of still images, exactly as a field unit would run it
on its camera, and print every match decision the unit would send.

Until an encrypted watch-list is given, --enrol builds an in-memory gallery
from reference photos: nothing is written to disk. Faces that match nobody
are counted and discarded; nothing about them is printed.
"""

EXAMPLES = """\
examples:
  edgewatch simulate --video ../shared/data/video/short_hamilton_clip.mp4 \\
      --enrol "Lin-Manuel Miranda=../shared/data/faces/examples/lin-manuel-miranda.png" \\
      --enrol "Barack Obama=../shared/data/faces/examples/obama.jpg"
  edgewatch simulate --images 'shots/*.jpg' --enrol "Jane=jane.jpg" --json
"""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "simulate",
        help=HELP,
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", type=Path, metavar="PATH", help="video file (mp4, mkv, avi)")
    source.add_argument(
        "--images", metavar="SOURCE", help="folder of images, or a glob such as 'shots/*.jpg'"
    )
    parser.add_argument(
        "--enrol",
        action="append",
        default=[],
        metavar="NAME=IMAGE",
        help="enrol NAME from a reference photo (repeat for more people or more photos)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per match on stdout"
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="deliver frames at their recorded rate, like a live camera "
        "(default: as fast as possible)",
    )
    parser.add_argument("--loop", action="store_true", help="replay the source forever")
    parser.add_argument(
        "--images-fps", type=float, default=1.0, metavar="FPS", help="frame rate for --images"
    )
    parser.add_argument(
        "--max-frames",
        type=int,
        metavar="N",
        help="stop after N frames (default: the whole source)",
    )
    parser.add_argument(
        "--detector", default=DEFAULT_DETECTOR, metavar="MODEL", help="detector model id"
    )
    parser.add_argument(
        "--landmarker",
        default=DEFAULT_LANDMARKER,
        metavar="MODEL",
        help="landmark model that refines alignment and rejects unusable faces "
        "('none': align on the detector's keypoints, no gate)",
    )
    parser.add_argument(
        "--embedder", default=DEFAULT_EMBEDDER, metavar="MODEL", help="embedder model id"
    )
    parser.add_argument(
        "--threshold", type=float, help="minimum cosine similarity (default: the model's)"
    )
    parser.add_argument(
        "--margin", type=float, help="minimum lead over the runner-up (default: the model's)"
    )
    parser.add_argument(
        "--min-face-px",
        type=float,
        default=40.0,
        metavar="PX",
        help="faces narrower than this are never embedded (default 40)",
    )
    parser.add_argument(
        "--model-manifest",
        action="append",
        default=[],
        type=Path,
        metavar="TOML",
        help="extra model manifest (e.g. research-only models for comparison)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    parser.set_defaults(handler=run)


def _camera_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.video is not None:
        return {"type": "video", "path": args.video, "realtime": args.realtime, "loop": args.loop}
    return {
        "type": "images",
        "source": args.images,
        "fps": args.images_fps,
        "realtime": args.realtime,
        "loop": args.loop,
    }


def run(args: argparse.Namespace) -> int:
    config = parse_config(
        {
            "camera": _camera_config(args),
            "detector": {"model": args.detector},
            "landmarker": {"model": args.landmarker},
            "embedder": {"model": args.embedder},
            "matching": {"threshold": args.threshold, "margin": args.margin},
            "quality": {"min_face_px": args.min_face_px},
            "model_manifests": args.model_manifest,
        },
        "command line",
    )
    photos = [parse_enrol_option(value) for value in args.enrol]
    parts = load_vision(config)
    gallery = build_gallery(photos, parts.encoder)
    if not photos:
        print("edgewatch: no one enrolled (--enrol): every face will be discarded", file=sys.stderr)
    pipeline = build_pipeline(parts, gallery)
    per_subject: Counter[str] = Counter()

    def on_match(report: MatchReport) -> None:
        per_subject[report.subject] += 1
        print(_format_json(report) if args.json else _format_text(report), flush=True)

    with create_camera(config.camera) as camera:
        progress = ProgressLine("frames", camera.frame_count, enabled=not args.no_progress)
        summary = run_camera(camera, pipeline, on_match, args.max_frames, progress)
    c = summary.counters
    stages = ", ".join(f"{k} {v:.1f}" for k, v in summary.stage_ms.items())
    print(
        f"summary: {c.frames} frames, {c.faces_seen} faces seen, {c.faces_discarded} discarded "
        f"({c.faces_rejected} of them unusable, never embedded), {c.matches} matches, "
        f"{summary.fps:.1f} frames/s\n"
        f"median ms per frame: {stages}\n"
        f"matches per subject: {dict(per_subject) or 'none'}\n"
        f"policy: {parts.encoder.embedder.spec.model_id} threshold {parts.policy.threshold} "
        f"margin {parts.policy.margin}",
        file=sys.stderr,
    )
    return 0


def _format_json(report: MatchReport) -> str:
    return json.dumps(
        {
            "type": "match",
            "subject": report.subject,
            "category": report.category,
            "score": report.score,
            "threshold": report.threshold,
            "frame_index": report.frame_index,
            "stream_time": report.stream_time,
            "capture_time": round(report.capture_time, 3),
            "box": list(report.box),
            "model_id": report.model_id,
        },
        sort_keys=True,
    )


def _format_text(report: MatchReport) -> str:
    minutes, seconds = divmod(report.stream_time, 60)
    return (
        f"{int(minutes):02d}:{seconds:06.3f}  frame {report.frame_index:>6}  "
        f"{report.subject:<24} score {report.score:.3f}  box {report.box}"
    )
