"""A unit without a camera, for delivery tests: queue N synthetic alerts through the real
outbox, emitter and publisher (``python -m tests.event_producer UNIT.toml N``).

It prints each sequence number once queued, so a test can kill it mid-stream
with SIGKILL and then check that nothing queued was lost.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench.synthetic import match_report as report
from edgewatch.events.config import load_publish_config
from edgewatch.events.emitter import EventService
from edgewatch.pipeline import Counters
from edgewatch.watchlist.active import ActiveWatchlist


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
