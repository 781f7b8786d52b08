"""``edgewatch demo``: the whole system on one desktop, end to end.

It plays every role with throw-away keys in a work directory: the control
room's Mosquitto broker (mutual TLS, per-unit ACL) on a free loopback port,
the issuer who builds an encrypted watch-list from reference photos, a unit
that replays a recorded video and publishes signed alerts, and the control
room's subscriber that verifies each one and opens its sealed face crop.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from edgewatch.cli.keys import generate_role
from edgewatch.errors import ConfigError, EdgewatchError
from edgewatch.events.ledger import Ledger
from edgewatch.events.registry import DeviceRegistry
from edgewatch.events.subscriber import (
    EventVerifier,
    Rejected,
    Subscriber,
    SubscriberSettings,
    VerifiedEvent,
    wait_for,
)
from edgewatch.security.keys import load_sealing_key, load_verify_key
from edgewatch.transport.mosquitto import LocalBroker

HELP = "run broker, issuer, unit and control room together on a recorded video"
DEVICE_ID = "cam-demo"
READER = "control-room"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help=HELP,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--video", type=Path, required=True, metavar="PATH")
    parser.add_argument(
        "--photos", type=Path, required=True, metavar="DIR", help="folder of reference photos"
    )
    parser.add_argument(
        "--entries",
        type=Path,
        required=True,
        metavar="CSV",
        help="watch-list entries (image paths relative to --photos), "
        "e.g. deploy/demo/hamilton-entries.csv",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="keep keys, broker and outbox here "
        "(default: a temporary directory, removed afterwards)",
    )
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop the video after N frames")
    parser.add_argument("--json", action="store_true", help="print verified events as JSON lines")
    parser.set_defaults(handler=run)


def _keys(workdir: Path) -> None:
    generate_role("issuer", workdir / "issuer")
    generate_role("device", workdir / "unit")
    generate_role("control-room", workdir / "control-room")


def _deployment(path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    path.write_text(
        'watchlist_id = "demo"\nversion = 1\n[deployment]\nid = "demo"\n'
        'purpose = "Desktop demonstration"\nlocation = "this computer"\n'
        'authorised_by = "demo issuer"\n'
        f"not_before = {(now - timedelta(hours=1)).isoformat()}\n"
        f"expires = {(now + timedelta(days=1)).isoformat()}\nmax_entries = 100\n"
    )


def _unit_config(path: Path, broker: LocalBroker, workdir: Path) -> None:
    creds = broker.issue_client(DEVICE_ID)
    (workdir / "unit" / "state").mkdir()
    path.write_text(
        f'[device]\nid = "{DEVICE_ID}"\nsigning_key = "unit/signing.key"\n'
        'state_dir = "unit/state"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nca_cert = "{creds.ca_cert}"\n'
        f'cert = "{creds.cert}"\nkey = "{creds.key}"\n'
        '[events]\nstatus_interval_s = 5\ncrop_key = "control-room/crop.pub"\n'
    )


class _Printer:
    """The control room's console: one line per verified event."""

    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out, self.as_json = out, as_json
        self.alerts = 0

    def event(self, event: VerifiedEvent) -> None:
        payload = event.payload
        if event.kind == "alert":
            self.alerts += 1
        if self.as_json:
            line = dict(payload)
            line.pop("crop", None)
            if event.crop is not None:
                line["crop_jpeg_bytes"] = len(event.crop)
            print(json.dumps({"verified": event.kind, **line}, sort_keys=True), file=self.out)
        elif event.kind == "alert":
            subject = payload["subject"]
            crop = f", sealed crop opened ({len(event.crop)} B JPEG)" if event.crop else ""
            print(
                f"control room: VERIFIED alert #{payload['sequence']} from {event.device_id}: "
                f"{subject['ref']} ({subject['category']}) score {payload['score']:.3f} "
                f"captured {payload['captured_at']}{crop}",
                file=self.out,
            )
        else:
            detail = payload.get("action") or payload.get("state")
            print(
                f"control room: verified {event.kind} from {event.device_id}: {detail}",
                file=self.out,
            )
        self.out.flush()

    def reject(self, topic: str, rejected: Rejected) -> None:
        print(f"control room: REJECTED {topic}: {rejected}", file=self.out, flush=True)


def say(text: str) -> None:
    print(f"demo: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from edgewatch.cli.main import main as edgewatch_main

    for path, what in (
        (args.video, "video"),
        (args.photos, "photos folder"),
        (args.entries, "entries"),
    ):
        if not path.exists():
            raise ConfigError(f"{what} {path}: not found")
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="edgewatch-demo-"))
            )
        else:
            workdir = args.workdir
            workdir.mkdir(parents=True, exist_ok=False)
        broker = stack.enter_context(LocalBroker(workdir / "broker", readers=(READER,)))
        say(f"Mosquitto with mutual TLS on 127.0.0.1:{broker.port} (work dir {workdir})")
        _keys(workdir)
        _deployment(workdir / "deployment.toml")
        say("issuer: building the encrypted watch-list from the reference photos")
        built = edgewatch_main(
            [
                "watchlist",
                "build",
                "--deployment",
                str(workdir / "deployment.toml"),
                "--entries",
                str(args.entries),
                "--photos",
                str(args.photos),
                "--issuer-key",
                str(workdir / "issuer" / "issuer.key"),
                "--recipient",
                str(workdir / "unit" / "watchlist.pub"),
                "--out",
                str(workdir / "demo.ewl"),
                "--no-progress",
            ]
        )
        if built != 0:
            return built
        registry = DeviceRegistry()
        registry.add(DEVICE_ID, load_verify_key(workdir / "unit" / "signing.pub", "unit key"))
        registry.save(workdir / "control-room" / "devices.toml")
        _unit_config(workdir / "unit.toml", broker, workdir)
        reader = broker.issue_client(READER)
        printer = _Printer(sys.stdout, args.json)
        verifier = EventVerifier(
            DeviceRegistry.load(workdir / "control-room" / "devices.toml"),
            "edgewatch",
            Ledger(),
            load_sealing_key(workdir / "control-room" / "crop.key", "crop key"),
        )
        subscriber = Subscriber(
            SubscriberSettings("127.0.0.1", broker.port, reader, READER, "edgewatch"),
            verifier,
            printer.event,
            printer.reject,
        )
        subscriber.start()
        stack.callback(subscriber.stop)
        say("control room: subscribed; unit: replaying the video and publishing signed events")
        simulate = [
            "simulate",
            "--video",
            str(args.video),
            "--watchlist",
            str(workdir / "demo.ewl"),
            "--device-key",
            str(workdir / "unit" / "watchlist.key"),
            "--issuer-key",
            str(workdir / "issuer" / "issuer.pub"),
            "--publish",
            str(workdir / "unit.toml"),
        ]
        if args.max_frames:
            simulate += ["--max-frames", str(args.max_frames)]
        with contextlib.redirect_stdout(io.StringIO()):  # the unit's own match lines
            code = edgewatch_main(simulate)
        if code != 0:
            return code
        wait_for(lambda: verifier.counters.accepted["status"] > 0 and _settled(verifier), 15.0)
        accepted, rejected = verifier.counters.accepted, verifier.counters.rejected
        say(
            f"control room verified {accepted['alert']} alerts, {accepted['audit']} audit and "
            f"{accepted['status']} status events; rejected {sum(rejected.values())} "
            f"({dict(rejected) or 'none'}); gaps {verifier.counters.gaps}"
        )
        if sum(rejected.values()) or verifier.counters.gaps:
            raise EdgewatchError("the control room rejected events or saw gaps (see above)")
    return 0


def _settled(verifier: EventVerifier) -> bool:
    """True once the unit's final 'stopped' status has been verified."""
    return verifier.last_status_state.get(DEVICE_ID) == "stopped"
