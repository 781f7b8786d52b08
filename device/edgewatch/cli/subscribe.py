"""``edgewatch subscribe``: the control room's verifying subscriber on the command line."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from edgewatch.cli.options import (
    add_broker_arguments,
    broker_address,
    broker_credentials,
    common_name,
)
from edgewatch.errors import ConfigError
from edgewatch.events.ledger import Ledger
from edgewatch.events.registry import DeviceRegistry
from edgewatch.events.subscriber import (
    EventVerifier,
    Rejected,
    Subscriber,
    SubscriberSettings,
    VerifiedEvent,
)
from edgewatch.fileio import PRIVATE, write_atomic
from edgewatch.security.keys import load_sealing_key
from edgewatch.transport.topics import DEFAULT_PREFIX, check_prefix

HELP = "receive, verify and print the units' signed events (control room)"

DESCRIPTION = """\
Connect to the control room's broker with this subscriber's certificate,
verify every event (registered unit, its own key, fresh, not seen before)
and print each verified event once, as one JSON object per line on stdout:
{"kind": "alert"|"status"|"audit", "device_id": ..., "payload": {...},
"gap": [first, last] or null, "crop_file": path or null}.
Rejected events and gaps in a unit's sequence are reported on stderr.
The format of events is documented in docs/events.md.
"""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "subscribe",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_broker_arguments(parser)
    parser.add_argument(
        "--registry", type=Path, required=True, metavar="TOML", help="units and their keys"
    )
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help="topic prefix (default %(default)s)"
    )
    parser.add_argument(
        "--share-group",
        metavar="NAME",
        help="join an MQTT v5 shared subscription so several subscribers split the events",
    )
    parser.add_argument(
        "--crop-key", type=Path, metavar="KEY", help="control room's crop.key: open sealed crops"
    )
    parser.add_argument(
        "--crops-dir", type=Path, metavar="DIR", help="write opened crops here as EVENT_ID.jpg"
    )
    parser.add_argument(
        "--ledger",
        type=Path,
        metavar="FILE",
        help="remember delivered sequence numbers across restarts (SQLite file)",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        default=3600.0,
        metavar="S",
        help="reject alerts and audit events sent longer ago (default 3600, the time the broker "
        "keeps this subscriber's queue); --ledger catches older replays",
    )
    parser.add_argument("--count", type=int, metavar="N", help="exit after N verified alerts")
    parser.add_argument("--timeout", type=float, metavar="S", help="exit after S seconds")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    host, port = broker_address(args.broker)
    prefix = check_prefix(args.prefix)
    if args.crops_dir is not None and args.crop_key is None:
        raise ConfigError("--crops-dir needs --crop-key")
    if args.crops_dir is not None and not args.crops_dir.is_dir():
        raise ConfigError(f"--crops-dir {args.crops_dir}: directory does not exist")
    credentials = broker_credentials(args)
    verifier = EventVerifier(
        DeviceRegistry.load(args.registry),
        prefix,
        Ledger(args.ledger),
        load_sealing_key(args.crop_key, "crop key") if args.crop_key else None,
        max_age_s=args.max_age,
    )
    done = threading.Event()
    alerts = 0
    lock = threading.Lock()

    def on_event(event: VerifiedEvent) -> None:
        nonlocal alerts
        crop_file = None
        if event.crop is not None and args.crops_dir is not None:
            crop_file = args.crops_dir / f"{event.payload['event_id']}.jpg"
            write_atomic(crop_file, event.crop, PRIVATE)
        line = {
            "kind": event.kind,
            "device_id": event.device_id,
            "payload": event.payload,
            "gap": list(event.gap) if event.gap else None,
            "crop_file": str(crop_file) if crop_file else None,
        }
        with lock:
            print(json.dumps(line, sort_keys=True), flush=True)
            if event.gap:
                print(
                    f"edgewatch: unit {event.device_id}: events {event.gap[0]}..{event.gap[1]} "
                    "missing so far",
                    file=sys.stderr,
                    flush=True,
                )
            if event.kind == "alert":
                alerts += 1
                if args.count is not None and alerts >= args.count:
                    done.set()

    def on_reject(topic: str, rejected: Rejected) -> None:
        if rejected.reason != "duplicate":
            print(f"edgewatch: rejected event on {topic}: {rejected}", file=sys.stderr, flush=True)

    subscriber = Subscriber(
        SubscriberSettings(
            host, port, credentials, common_name(args.cert), prefix, args.share_group
        ),
        verifier,
        on_event,
        on_reject,
    )
    subscriber.start()
    print(
        f"edgewatch: subscribed to {prefix}/+/alert|status|audit at {host}:{port}", file=sys.stderr
    )
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        while not done.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            done.wait(0.2)
    finally:
        subscriber.stop()
        verifier.ledger.close()
        counters = verifier.counters
        print(
            f"edgewatch: verified {dict(counters.accepted) or 'nothing'}; rejected "
            f"{dict(counters.rejected) or 'nothing'}; gaps {counters.gaps}",
            file=sys.stderr,
        )
    return 0
