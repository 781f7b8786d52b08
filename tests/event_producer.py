"""A unit without a camera, for delivery tests: queue N synthetic alerts through the real
outbox, emitter and publisher (``python -m tests.event_producer UNIT.toml N``).

It prints each sequence number once queued, so a test can kill it mid-stream
with SIGKILL and then check that nothing queued was lost.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from edgewatch.events.config import load_publish_config
from edgewatch.events.emitter import EventService
from edgewatch.pipeline import Counters, MatchReport
from edgewatch.watchlist.active import ActiveWatchlist


def report(index: int) -> MatchReport:
    return MatchReport(
        subject=f"case-{index % 7}",
        category="wanted",
        score=0.95,
        threshold=0.926,
        margin=0.012,
        frame_index=index,
        stream_time=index / 30,
        capture_time=time.time(),
        box=(10, 10, 60, 60),
        model_id="dlib-resnet-v1",
    )


def main() -> int:
    config = load_publish_config(Path(sys.argv[1]))
    count = int(sys.argv[2])
    pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    service = EventService(config, ActiveWatchlist("dlib-resnet-v1"))
    counters = Counters()
    service.start(counters)
    for index in range(count):
        service.emitter.alert(report(index))
        print(service.outbox.next_sequence - 1, flush=True)
        if pause:
            time.sleep(pause)
    service.stop(counters, 0.0, drain_timeout_s=30.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
