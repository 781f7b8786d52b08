"""What the control room has already accepted from each unit: duplicates and gaps.

Per unit and signing key, the ledger keeps the highest sequence number below
which every event has been seen (``contiguous``) and the set of numbers seen
above it. An event whose number was seen is a duplicate (a redelivery after
a lost PUBACK, or a replay) and is dropped; a number that jumps ahead reveals
a gap, reported once; a gap that fills later (out-of-order delivery) is
simply accepted. A new signing key (a re-provisioned unit) starts afresh.

With a ``path`` the ledger is an SQLite file, so a restarted subscriber still
drops what it delivered before.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(slots=True)
class _Track:
    contiguous: int = 0
    above: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Observation:
    duplicate: bool
    missing: tuple[int, int] | None = None
    """A newly found gap: sequences first..last (inclusive) not yet seen."""


class Ledger:
    def __init__(self, path: Path | None = None) -> None:
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS ledger (device TEXT, kid TEXT, contiguous INTEGER, "
                "above TEXT, PRIMARY KEY (device, kid))"
            )
            for device, kid, contiguous, above in self._db.execute("SELECT * FROM ledger"):
                self._tracks[(device, kid)] = _Track(contiguous, set(json.loads(above)))

    def observe(self, device_id: str, kid: str, sequence: int) -> Observation:
        with self._lock:
            track = self._tracks.setdefault((device_id, kid), _Track())
            if sequence <= track.contiguous or sequence in track.above:
                return Observation(duplicate=True)
            missing = None
            highest = max(track.above, default=track.contiguous)
            if sequence > highest + 1:
                missing = (highest + 1, sequence - 1)
            track.above.add(sequence)
            while track.contiguous + 1 in track.above:
                track.contiguous += 1
                track.above.discard(track.contiguous)
            if self._db is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO ledger VALUES (?, ?, ?, ?)",
                    (device_id, kid, track.contiguous, json.dumps(sorted(track.above))),
                )
            return Observation(duplicate=False, missing=missing)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
