"""How fast signed alerts get from a unit's emitter to a verifying control room, and how late.

Starts a real Mosquitto (mutual TLS, the project's ACL) on a free loopback
port in a temp dir, one unit (outbox + emitter + publisher, i.e. the real
:class:`~edgewatch.events.emitter.EventService`) and one verifying
:class:`~edgewatch.events.subscriber.Subscriber`, all in this process.

Burst: each of ``--runs`` runs queues ``--alerts`` alerts as fast as the
emitter allows (one fsynced SQLite transaction each, as in the appliance),
and the subscriber's callback notes when each alert arrived verified. Per
run: the append rate alone (``emitter.alert`` calls per second), alerts per
second end to end (first queued to last verified) and the latency of each
alert from capture (its ``captured_at``, ``time.time()`` when the match report
was made) to verified delivery, p50/p95/max. Every run must deliver exactly N
alerts, none twice, none rejected, or the benchmark fails.

Trickle: closer to a real unit, ``--trickle-rate`` alerts per second for
``--trickle-s`` seconds, paced; the latency of each alert, p50/p95/max.

Everything (broker, publisher thread, subscriber thread, the producer) shares
the machine's cores, so this is a lower bound on what separate machines do,
and one clock serves both ends. ``captured_at`` is stamped in whole
milliseconds (truncated), so latencies parsed from it read up to 1 ms high;
the JSON also carries latencies from the exact capture times.

On the development VM (2 cores, Xeon @ 2.00GHz, SQLite 3.40.1, mosquitto 2.0.11), medians
of 5 runs of 2,000: about 1,550 appends/s and 550 alerts/s end to end, so a burst queues up
and its alerts wait 1.5-2.3 s, nearly all of it in the outbox (the broker + control room
share is about 11 ms). At a steady 10 alerts/s: p50 18 ms, p95 48 ms, of which about 2 ms
after ``sent_at``; the unit's share depends on when an alert lands in the publisher's idle
cycle (it can wait out a 50 ms ``client.loop`` that ``notify`` does not interrupt).

    .venv/bin/python -m bench.events_speed --alerts 2000 --runs 5 --json /tmp/events.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.machine import cpu_model
from bench.synthetic import match_report
from edgewatch.cli.keys import generate_role
from edgewatch.events.config import load_publish_config
from edgewatch.events.emitter import EventService
from edgewatch.events.ledger import Ledger
from edgewatch.events.payloads import parse_timestamp
from edgewatch.events.registry import DeviceRegistry
from edgewatch.events.subscriber import (
    EventVerifier,
    Rejected,
    Subscriber,
    SubscriberSettings,
    VerifiedEvent,
    wait_for,
)
from edgewatch.pipeline import Counters
from edgewatch.security.keys import load_verify_key
from edgewatch.transport.mosquitto import LocalBroker
from edgewatch.watchlist.active import ActiveWatchlist

PREFIX = "edgewatch"
DEVICE_ID = "cam-bench"
MODEL_ID = "dlib-resnet-v1"


def machine_description(mosquitto: Path) -> str:
    """CPU model, cores, Python, SQLite and Mosquitto versions, for the header."""
    broker = "mosquitto (version unknown)"
    try:
        out = subprocess.run(
            [str(mosquitto), "-h"], capture_output=True, text=True, check=False, timeout=10
        )
        first = (out.stdout or out.stderr).splitlines()
        if first:
            broker = first[0].strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return (
        f"{cpu_model()}, SQLite {sqlite3.sqlite_version}, {broker}; "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )


class Recorder:
    """The control room's side: when each verified alert arrived, and what was rejected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.arrivals: dict[int, tuple[float, str, str]] = {}
        """Sequence -> (time.time() at the callback, captured_at, sent_at)."""
        self.repeats = 0
        self.rejected: Counter[str] = Counter()

    def on_event(self, event: VerifiedEvent) -> None:
        now = time.time()
        if event.kind != "alert":
            return
        sequence = int(event.payload["sequence"])
        with self._lock:
            if sequence in self.arrivals:
                self.repeats += 1
            else:
                payload = event.payload
                self.arrivals[sequence] = (
                    now,
                    str(payload["captured_at"]),
                    str(payload["sent_at"]),
                )

    def on_reject(self, _topic: str, rejected: Rejected) -> None:
        with self._lock:
            self.rejected[rejected.reason] += 1

    def count_in(self, sequences: range) -> int:
        with self._lock:
            return sum(1 for s in sequences if s in self.arrivals)

    def snapshot(self) -> tuple[dict[int, tuple[float, str, str]], int, Counter[str]]:
        with self._lock:
            return dict(self.arrivals), self.repeats, Counter(self.rejected)


@dataclass(slots=True)
class Rig:
    broker: LocalBroker
    service: EventService
    subscriber: Subscriber
    recorder: Recorder


def start_rig(root: Path) -> Rig:
    """Broker, unit and verifying control room, as tests/test_events.py sets them up."""
    broker = LocalBroker(root / "broker", prefix=PREFIX)
    broker.start()
    unit_dir = root / DEVICE_ID
    generate_role("device", unit_dir)
    (unit_dir / "state").mkdir()
    creds = broker.issue_client(DEVICE_ID)
    config = unit_dir / "unit.toml"
    config.write_text(
        f'[device]\nid = "{DEVICE_ID}"\nsigning_key = "signing.key"\nstate_dir = "state"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nprefix = "{PREFIX}"\n'
        f'ca_cert = "{creds.ca_cert}"\ncert = "{creds.cert}"\nkey = "{creds.key}"\n'
        "[events]\nstatus_interval_s = 3600\n"
    )
    registry = DeviceRegistry()
    registry.add(DEVICE_ID, load_verify_key(unit_dir / "signing.pub", "device signing key"))
    recorder = Recorder()
    subscriber = Subscriber(
        SubscriberSettings(
            "127.0.0.1", broker.port, broker.issue_client("control-room"), "control-room", PREFIX
        ),
        EventVerifier(registry, PREFIX, Ledger()),
        recorder.on_event,
        recorder.on_reject,
    )
    subscriber.start()
    service = EventService(load_publish_config(config), ActiveWatchlist(MODEL_ID))
    service.start(Counters())
    if not wait_for(service.publisher.connected.is_set, 30.0):
        raise RuntimeError(f"the unit's publisher did not connect: {service.publisher.last_error}")
    return Rig(broker, service, subscriber, recorder)


def stop_rig(rig: Rig) -> None:
    rig.service.stop(Counters(), 0.0)
    rig.subscriber.stop()
    rig.broker.stop()


@dataclass(frozen=True, slots=True)
class Latency:
    p50_ms: float
    p95_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        ordered = sorted(seconds)
        p95 = statistics.quantiles(ordered, n=100, method="inclusive")[94]
        return cls(statistics.median(ordered) * 1e3, p95 * 1e3, ordered[-1] * 1e3)


@dataclass(slots=True)
class Outcome:
    """One run's numbers; ``latency`` from ``captured_at``, ``exact`` from the true capture.

    ``in_unit`` is capture to ``sent_at`` (outbox, publisher wake-up, signing: the unit's
    share), ``on_wire`` is ``sent_at`` to verified delivery (broker, subscriber, verifying).
    """

    alerts: int
    appends_per_s: float
    end_to_end_per_s: float
    latency: Latency
    exact: Latency
    in_unit: Latency
    on_wire: Latency
    delivered: int
    duplicates: int
    rejected: int
    rejected_reasons: dict[str, int] = field(default_factory=dict)


def send(rig: Rig, count: int, rate: float | None, timeout_s: float) -> Outcome:
    """Queue ``count`` alerts (as fast as possible, or ``rate`` per second) and await them."""
    emitter, outbox, recorder = rig.service.emitter, rig.service.outbox, rig.recorder
    _, repeats_before, rejected_before = recorder.snapshot()
    first = outbox.next_sequence
    sequences = range(first, first + count)
    captured: list[float] = []
    append_s = 0.0
    started = time.perf_counter()
    for index in range(count):
        if rate is not None:
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        report = match_report(index)
        before = time.perf_counter()
        if not emitter.alert(report):
            raise RuntimeError(f"the outbox refused alert {index} (full?)")
        append_s += time.perf_counter() - before
        captured.append(report.capture_time)
    if outbox.next_sequence != first + count:
        raise RuntimeError("sequence numbers were not allocated one per alert")
    arrived = wait_for(lambda: recorder.count_in(sequences) == count, timeout_s, 0.005)
    # Let PUBACKs drain the outbox, and late duplicates show up, before the next run.
    wait_for(lambda: sum(outbox.depth().values()) == 0, 10.0)
    time.sleep(0.2)
    arrivals, repeats, rejected = recorder.snapshot()
    rejected.subtract(rejected_before)
    rejected_now = {reason: n for reason, n in rejected.items() if n > 0}
    ours = {s: arrivals[s] for s in sequences if s in arrivals}
    duplicates = repeats - repeats_before + rejected_now.pop("duplicate", 0)
    outcome_rejected = sum(rejected_now.values())
    if not arrived or len(ours) != count or duplicates or outcome_rejected:
        raise RuntimeError(
            f"delivery check failed: {len(ours)} of {count} alerts delivered, "
            f"{duplicates} duplicates, rejected {rejected_now or 0} "
            f"(broker log ends with:\n{rig.broker.log_tail()})"
        )
    parsed, exact, in_unit, on_wire = [], [], [], []
    for offset, sequence in enumerate(sequences):
        when, captured_at, sent_at = ours[sequence]
        sent = parse_timestamp(sent_at).timestamp()
        parsed.append(when - parse_timestamp(captured_at).timestamp())
        exact.append(when - captured[offset])
        in_unit.append(sent - captured[offset])
        on_wire.append(when - sent)
    last = max(when for when, _, _ in ours.values())
    return Outcome(
        alerts=count,
        appends_per_s=count / append_s,
        end_to_end_per_s=count / (last - captured[0]),
        latency=Latency.of(parsed),
        exact=Latency.of(exact),
        in_unit=Latency.of(in_unit),
        on_wire=Latency.of(on_wire),
        delivered=len(ours),
        duplicates=duplicates,
        rejected=outcome_rejected,
        rejected_reasons=rejected_now,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=2_000, help="alerts per run (default 2000)")
    parser.add_argument("--runs", type=int, default=5, help="burst runs (default 5)")
    parser.add_argument(
        "--trickle-rate", type=float, default=10.0, help="trickle alerts per second (default 10)"
    )
    parser.add_argument(
        "--trickle-s", type=float, default=10.0, help="trickle duration in seconds (default 10)"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    return parser.parse_args(argv)


def cell(values: list[float], digits: int = 0) -> str:
    """Median and (min-max) over the runs."""
    median = statistics.median(values)
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def render(machine: str, args: argparse.Namespace, bursts: list[Outcome], trickle: Outcome) -> str:
    command = "python -m bench.events_speed " + " ".join(sys.argv[1:])
    lines = [
        "# Events: emitter to verified delivery",
        "",
        f"Machine: {machine}. Broker, unit and control room on one machine (loopback, "
        "mutual TLS, QoS 1, one clock). Burst: "
        f"{args.alerts} alerts queued as fast as possible, {args.runs} runs, median "
        "(min-max over the runs); latencies are per alert within a run, capture to verified "
        "delivery, from `captured_at` (ms resolution); split at `sent_at` (when the publisher "
        "signed it) into the unit's share and the broker + control room's share. Trickle: "
        f"{args.trickle_rate:g} alerts/s for {args.trickle_s:g} s, one run, "
        "percentiles over its alerts.",
        "",
        f"Command: `{command.strip()}`",
        "",
        "| scenario | alerts | appends/s | end-to-end alerts/s | latency p50 ms | "
        "latency p95 ms | latency max ms | capture→sent p50 ms | sent→verified p50 ms | "
        "delivered / duplicates / rejected |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines.append(
        "| "
        + " | ".join(
            (
                "burst",
                str(args.alerts),
                cell([b.appends_per_s for b in bursts]),
                cell([b.end_to_end_per_s for b in bursts]),
                cell([b.latency.p50_ms for b in bursts], 1),
                cell([b.latency.p95_ms for b in bursts], 1),
                cell([b.latency.max_ms for b in bursts], 1),
                cell([b.in_unit.p50_ms for b in bursts], 1),
                cell([b.on_wire.p50_ms for b in bursts], 1),
                " / ".join(
                    str(sum(getattr(b, name) for b in bursts))
                    for name in ("delivered", "duplicates", "rejected")
                )
                + f" (of {args.alerts * len(bursts)})",
            )
        )
        + " |"
    )
    lines.append(
        "| "
        + " | ".join(
            (
                f"trickle {args.trickle_rate:g}/s",
                str(trickle.alerts),
                "-",
                "-",
                f"{trickle.latency.p50_ms:.1f}",
                f"{trickle.latency.p95_ms:.1f}",
                f"{trickle.latency.max_ms:.1f}",
                f"{trickle.in_unit.p50_ms:.1f}",
                f"{trickle.on_wire.p50_ms:.1f}",
                f"{trickle.delivered} / {trickle.duplicates} / {trickle.rejected} "
                f"(of {trickle.alerts})",
            )
        )
        + " |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    trickle_count = max(1, round(args.trickle_rate * args.trickle_s))
    with tempfile.TemporaryDirectory(prefix="edgewatch-bench-events-") as scratch:
        rig = start_rig(Path(scratch))
        try:
            machine = machine_description(rig.broker.binary)
            send(rig, min(args.alerts, 100), None, 60.0)  # warm-up: TLS session, caches
            bursts = []
            for run in range(args.runs):
                outcome = send(rig, args.alerts, None, 60.0 + args.alerts / 20)
                bursts.append(outcome)
                print(
                    f"burst run {run + 1}/{args.runs}: {outcome.end_to_end_per_s:.0f} alerts/s, "
                    f"p50 {outcome.latency.p50_ms:.1f} ms",
                    file=sys.stderr,
                )
            trickle = send(rig, trickle_count, args.trickle_rate, args.trickle_s + 60.0)
        finally:
            stop_rig(rig)
    print(render(machine, args, bursts, trickle))
    if args.json:
        result: dict[str, Any] = {
            "benchmark": "events_speed",
            "machine": machine,
            "alerts": args.alerts,
            "runs": args.runs,
            "trickle_rate": args.trickle_rate,
            "trickle_s": args.trickle_s,
            "latency_note": "latency: from captured_at (ms, truncated); exact: from the capture "
            "time recorded at creation; in_unit: capture to sent_at; on_wire: sent_at to "
            "verified delivery (sent_at also ms, truncated)",
            "burst": [asdict(b) for b in bursts],
            "burst_median": {
                "appends_per_s": statistics.median(b.appends_per_s for b in bursts),
                "end_to_end_per_s": statistics.median(b.end_to_end_per_s for b in bursts),
                "latency_p50_ms": statistics.median(b.latency.p50_ms for b in bursts),
                "latency_p95_ms": statistics.median(b.latency.p95_ms for b in bursts),
                "latency_max_ms": statistics.median(b.latency.max_ms for b in bursts),
            },
            "trickle": asdict(trickle),
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
