"""``edgewatch simulate``: the whole appliance on a recorded video or a folder of stills."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgewatch.appliance import (
    build_pipeline,
    device_trust,
    load_vision,
    policy_for_watchlist,
    run_camera,
)
from edgewatch.camera.registry import create_camera
from edgewatch.cli.options import add_model_arguments, model_config
from edgewatch.config import parse_config
from edgewatch.errors import ConfigError
from edgewatch.events.config import load_publish_config
from edgewatch.events.emitter import EventService
from edgewatch.matching.enrol import ReferencePhoto, build_gallery, parse_enrol_option
from edgewatch.pipeline import MatchReport
from edgewatch.progress import ProgressLine
from edgewatch.security.process import protect_process
from edgewatch.tracking import TrackingPolicy
from edgewatch.watchlist.active import ActiveWatchlist, WatchlistChange
from edgewatch.watchlist.device import WatchlistRefusedError, read_watchlist

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
        help="enrol NAME from a reference photo (repeat for more people or more photos); "
        "for trying things out: a field unit only takes a --watchlist",
    )
    listing = parser.add_argument_group("encrypted watch-list (as on a field unit)")
    listing.add_argument(
        "--watchlist", type=Path, metavar="FILE", help="watch-list file from 'watchlist build'"
    )
    listing.add_argument(
        "--device-key", type=Path, metavar="KEY", help="this unit's watch-list key (watchlist.key)"
    )
    listing.add_argument(
        "--issuer-key",
        type=Path,
        action="append",
        default=[],
        metavar="PUB",
        help="a trusted issuer's public key (repeat to trust several)",
    )
    parser.add_argument(
        "--publish",
        type=Path,
        metavar="TOML",
        help="also send signed events over MQTT as a field unit would: the unit's [device], "
        "[mqtt] and [events] settings (see deploy/publish.example.toml); a refused "
        "--watchlist is then reported in signed events and the run goes on without one",
    )
    listing.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the unit remembers accepted watch-list versions (rollback protection); "
        "default: remembered for this run only",
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
        "--threshold", type=float, help="minimum cosine similarity (default: the model's)"
    )
    parser.add_argument(
        "--margin", type=float, help="minimum lead over the runner-up (default: the model's)"
    )
    parser.add_argument(
        "--confirm-frames",
        type=int,
        default=2,
        metavar="N",
        help="frames of one tracked face that must match the same subject before its one "
        "alert (default 2; with --images every image is judged alone and alerts at once)",
    )
    add_model_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    parser.set_defaults(handler=run)


def _report_delivery(events: EventService) -> None:
    left = sum(events.outbox_depth_at_stop.values())
    print(
        f"events: {events.publisher.acknowledged} acknowledged by the broker, "
        f"{left} still queued in the outbox (sent when the unit next connects)"
        + (f"; last error: {events.publisher.last_error}" if events.publisher.last_error else ""),
        file=sys.stderr,
    )


def _check_watchlist_options(args: argparse.Namespace, photos: list[ReferencePhoto]) -> None:
    if args.watchlist is None:
        if args.device_key or args.issuer_key or args.state_dir:
            raise ConfigError("--device-key, --issuer-key and --state-dir need --watchlist")
        return
    if photos:
        raise ConfigError("give either --watchlist or --enrol, not both")
    if args.device_key is None or not args.issuer_key:
        raise ConfigError(
            "--watchlist needs --device-key (this unit's watchlist.key) and at least one "
            "--issuer-key (the issuer's public key the unit trusts)"
        )


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


def _tracking_config(args: argparse.Namespace) -> dict[str, Any]:
    """Still photos are unrelated scenes: no linking, one alert per matching face."""
    if args.images is not None:
        return TrackingPolicy.stills().model_dump()
    return {"confirm_frames": args.confirm_frames}


def run(args: argparse.Namespace) -> int:
    protect_process()  # face data is handled below: no core dumps, no ptrace
    config = parse_config(
        {
            "camera": _camera_config(args),
            "matching": {"threshold": args.threshold, "margin": args.margin},
            "tracking": _tracking_config(args),
            **model_config(args),
        },
        "command line",
    )
    photos = [parse_enrol_option(value) for value in args.enrol]
    _check_watchlist_options(args, photos)
    publish = load_publish_config(args.publish) if args.publish is not None else None
    parts = load_vision(config)
    active = ActiveWatchlist(parts.encoder.embedder.spec.model_id)
    changes: list[WatchlistChange] = []
    if args.watchlist is not None:
        state_dir = args.state_dir or (publish.device.state_dir if publish else None)
        trust = device_trust(parts, args.issuer_key, args.device_key, state_dir, "state")
        try:
            loaded = read_watchlist(args.watchlist, trust)
        except WatchlistRefusedError as refused:
            if publish is None:
                raise
            # Acting as a field unit: report the refusal and keep running without a list.
            changes.append(active.refuse(refused))
        else:
            changes.append(active.accept(loaded))
            parts = parts.with_policy(policy_for_watchlist(loaded.header, config))
            print(f"edgewatch: {loaded.describe()}", file=sys.stderr)
        gallery = active.gallery
    else:
        gallery = build_gallery(photos, parts.encoder)
    if len(gallery) == 0:
        print(
            "edgewatch: no one enrolled (--enrol) and no --watchlist: faces are not even "
            "looked for",
            file=sys.stderr,
        )
    events = EventService(publish, active) if publish is not None else None
    pipeline = build_pipeline(parts, gallery, crop_matches=bool(events and events.crop_matches))
    per_subject: Counter[str] = Counter()
    started = time.monotonic()

    def fps() -> float:
        elapsed = time.monotonic() - started
        return pipeline.counters.frames / elapsed if elapsed > 0 else 0.0

    def on_match(report: MatchReport) -> None:
        per_subject[report.subject] += 1
        if events is not None:
            events.emitter.alert(report)
        print(_format_json(report) if args.json else _format_text(report), flush=True)

    def on_frame() -> None:
        change = active.check_expiry()
        if events is not None:
            if change is not None:
                events.emitter.watchlist_changed(change, pipeline.counters)
                events.emitter.status("online", pipeline.counters, fps())
            events.tick(pipeline.counters, fps())

    if events is not None:
        events.start(pipeline.counters)
        events.emitter.audit("started", "simulation started", pipeline.counters)
        for change in changes:
            events.emitter.watchlist_changed(change, pipeline.counters)
    try:
        with create_camera(config.camera) as camera:
            progress = ProgressLine("frames", camera.frame_count, enabled=not args.no_progress)
            summary = run_camera(camera, pipeline, on_match, args.max_frames, progress, on_frame)
    finally:
        if events is not None:
            events.emitter.audit("stopped", "simulation ended", pipeline.counters)
            events.stop(pipeline.counters, fps())
            _report_delivery(events)
    c = summary.counters
    stages = ", ".join(f"{k} {v:.1f}" for k, v in summary.stage_ms.items())
    print(
        f"summary: {c.frames} frames, {c.faces_seen} faces seen, {c.faces_discarded} discarded "
        f"({c.faces_rejected} of them unusable, never embedded), {c.matches} matching faces "
        f"in {pipeline.tracker.tracks_started} tracks, {sum(per_subject.values())} alerts, "
        f"{summary.fps:.1f} frames/s\n"
        f"median ms per frame: {stages}\n"
        f"alerts per subject: {dict(per_subject) or 'none'}\n"
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
            "track": None if report.track is None else asdict(report.track),
        },
        sort_keys=True,
    )


def _format_text(report: MatchReport) -> str:
    minutes, seconds = divmod(report.stream_time, 60)
    return (
        f"{int(minutes):02d}:{seconds:06.3f}  frame {report.frame_index:>6}  "
        f"{report.subject:<24} score {report.score:.3f}  box {report.box}"
        + (
            ""
            if report.track is None
            else f"  track {report.track.track_id} ({report.track.matching_frames} of "
            f"{report.track.frames} frames)"
        )
    )
