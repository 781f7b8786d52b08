"""``edgewatch run``: the field unit's service (the systemd unit's ExecStart)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from edgewatch.camera.video import VideoCameraConfig
from edgewatch.errors import ConfigError
from edgewatch.fileio import resolve_path
from edgewatch.progress import ProgressLine
from edgewatch.security.process import protect_process
from edgewatch.unit.config import UnitConfig, load_unit_config
from edgewatch.unit.layout import UnitLayout
from edgewatch.unit.service import UnitService

HELP = "run a provisioned field unit: camera, watch-list, signed events, commands"

DESCRIPTION = """\
Run the appliance as a field unit, from its configuration file (every option
is explained in deploy/edgewatch.example.toml): watch the camera, match faces
against the watch-list the unit holds, send signed events over MQTT with
mutual TLS, and obey the issuer's signed commands (a new watch-list, the end
of a deployment) from the unit's command topic. Under systemd (Type=notify)
it reports readiness once frames flow and pets the watchdog on every frame.
SIGTERM or Ctrl-C stops it cleanly, with a final signed status.
"""

EXAMPLES = """\
examples:
  edgewatch run                                   # on a unit, as systemd runs it
  edgewatch run --video clip.mp4 --max-frames 300 # bench-test a provisioned unit
  edgewatch run --root /tmp/unit --video clip.mp4 # a unit's files below another root
"""


def add_unit_arguments(parser: argparse.ArgumentParser) -> None:
    """--config and --root, shared by the commands that act on a unit's files."""
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("/etc/edgewatch/edgewatch.toml"),
        metavar="TOML",
        help="the unit's configuration (default %(default)s)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help="the unit's root file system is mounted here (an SD card on a workshop PC, "
        "or a simulated unit): absolute paths, --config's too, are taken below it",
    )


def unit_config(args: argparse.Namespace) -> UnitConfig:
    """The configuration named by --config, below --root if given."""
    root = args.root
    if root is not None and not root.is_dir():
        raise ConfigError(f"--root {root}: not a directory")
    path = Path(resolve_path(str(args.config), Path.cwd(), root))
    return load_unit_config(path, root)


def layout(args: argparse.Namespace) -> UnitLayout:
    return UnitLayout(args.root or Path("/"))


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "run",
        help=HELP,
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_unit_arguments(parser)
    parser.add_argument(
        "--video",
        type=Path,
        metavar="PATH",
        help="replay this recorded video instead of the configured camera",
    )
    parser.add_argument(
        "--realtime", action="store_true", help="with --video: at its recorded frame rate"
    )
    parser.add_argument("--loop", action="store_true", help="with --video: replay it forever")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument(
        "--progress", action="store_true", help="a progress line on stderr (not under systemd)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    protect_process()  # face data is handled below: no core dumps, no ptrace
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError("--max-frames must be at least 1")
    config = unit_config(args)
    camera = None
    if args.video is not None:
        camera = VideoCameraConfig(
            type="video", path=args.video, realtime=args.realtime, loop=args.loop
        )
    elif args.realtime or args.loop:
        raise ConfigError("--realtime and --loop go with --video")
    service = UnitService(config, camera)
    signal.signal(signal.SIGTERM, service.request_stop)
    signal.signal(signal.SIGINT, service.request_stop)
    progress = ProgressLine("frames", None, enabled=args.progress)
    summary = service.run(args.max_frames, progress)
    c = summary.counters
    print(
        f"edgewatch: unit {config.device_id} stopped: {c.frames} frames, {c.faces_seen} faces "
        f"seen, {c.faces_discarded} discarded, {service.alerts} alerts, "
        f"{summary.fps:.1f} frames/s; watch-list {service.active.state}; "
        f"{service.events.publisher.acknowledged} events acknowledged by the broker, "
        f"{sum(service.events.outbox_depth_at_stop.values())} still queued",
        file=sys.stderr,
    )
    return 0
