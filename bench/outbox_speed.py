"""What durability costs: outbox appends and acknowledges per second, synchronous FULL vs NORMAL.

For each setting, ``--runs`` times over a fresh outbox: append ``--events``
alerts one by one (each its own fsynced transaction, as in the appliance),
then acknowledge them one by one; then the same with a camera thread
appending while a publisher thread drains (pending + acknowledge), as in the
appliance. Prints medians over the runs. Nothing is asserted: the numbers
depend on the storage far more than on the code, so run it on the device,
with ``--dir`` on the partition that will hold the outbox:

    .venv/bin/python -m bench.outbox_speed --dir /var/lib/edgewatch

On the development VM (x86_64, 2 cores, ext4 on a virtual disk, SQLite 3.40.1),
2,000 alerts of 512 bytes, medians of 5 runs: FULL 2600-3000 appends/s (p99
0.6 ms) and 3450 acknowledges/s; NORMAL 4700-4900 appends/s and 6500-7000
acknowledges/s. A virtual disk's fsync is cheap; expect far fewer on an SD card.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edgewatch.events.outbox import Outbox, Synchronous

TOPIC = "edgewatch/bench/alert"


@dataclass(frozen=True, slots=True)
class Run:
    appends_per_s: float
    append_p99_ms: float
    acks_per_s: float
    concurrent_per_s: float


def file_system(directory: Path) -> str:
    """Type and device of the file system holding ``directory`` (fsync cost depends on it)."""
    best, description = "", "unknown"
    target = str(directory.resolve())
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return description
    for line in mounts:
        device, mount_point, fs_type, *_ = line.split()
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, description = mount_point, f"{fs_type} on {device}"
    return description


def body_of(size: int) -> bytes:
    return os.urandom(size)


def one_run(directory: Path, synchronous: Synchronous, events: int, body: bytes) -> Run:
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        with Outbox(Path(scratch) / "sequential.db", synchronous=synchronous) as outbox:
            latencies = []
            started = time.perf_counter()
            for _ in range(events):
                before = time.perf_counter()
                outbox.append("alert", TOPIC, lambda _: body)
                latencies.append(time.perf_counter() - before)
            append_s = time.perf_counter() - started
            entries = outbox.pending(limit=events)
            started = time.perf_counter()
            for entry in entries:
                outbox.acknowledge(entry.id)
            ack_s = time.perf_counter() - started
        with Outbox(Path(scratch) / "concurrent.db", synchronous=synchronous) as outbox:
            concurrent_s = append_while_draining(outbox, events, body)
    return Run(
        appends_per_s=events / append_s,
        append_p99_ms=statistics.quantiles(latencies, n=100)[98] * 1000.0,
        acks_per_s=events / ack_s,
        concurrent_per_s=events / concurrent_s,
    )


def append_while_draining(outbox: Outbox, events: int, body: bytes) -> float:
    """Seconds until ``events`` alerts appended by one thread are all drained by another."""
    camera_done = threading.Event()

    def camera() -> None:
        try:
            for _ in range(events):
                outbox.append("alert", TOPIC, lambda _: body)
        finally:
            camera_done.set()

    def publisher() -> None:
        while True:
            finished = camera_done.is_set()
            batch = outbox.pending(limit=64)
            for entry in batch:
                outbox.acknowledge(entry.id)
            if not batch:
                if finished:
                    return
                camera_done.wait(0.001)

    threads = [threading.Thread(target=camera), threading.Thread(target=publisher)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs per setting (default 5)")
    parser.add_argument("--events", type=int, default=2_000, help="events per run (default 2000)")
    parser.add_argument("--body-bytes", type=int, default=512, help="event size (default 512)")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where to create the outboxes: use the outbox's partition (default: temp dir)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    body = body_of(args.body_bytes)
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; outboxes in {args.dir} ({file_system(args.dir)})"
    )
    print(
        f"{args.events} alerts of {args.body_bytes} bytes, median of {args.runs} runs "
        "(min-max in brackets)\n"
    )
    header = (
        "synchronous",
        "appends/s",
        "append p99 ms",
        "acknowledges/s",
        "append+drain events/s",
    )
    print(" | ".join(header))
    print(" | ".join("-" * len(column) for column in header))
    settings: tuple[Synchronous, ...] = ("FULL", "NORMAL")
    for synchronous in settings:
        runs = [one_run(args.dir, synchronous, args.events, body) for _ in range(args.runs)]

        def cell(values: list[float], digits: int = 0) -> str:
            median = statistics.median(values)
            return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

        print(
            " | ".join(
                (
                    synchronous,
                    cell([r.appends_per_s for r in runs]),
                    cell([r.append_p99_ms for r in runs], 2),
                    cell([r.acks_per_s for r in runs]),
                    cell([r.concurrent_per_s for r in runs]),
                )
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
