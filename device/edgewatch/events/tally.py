"""Transparency counters per deployment, kept across restarts.

A deployment (one authorised use of a watch-list at a place, for a time)
is what a data-protection officer audits: "while this list was active here,
how many faces did the unit see, how many did it discard, how many alerts
did it raise?". The pipeline counts per run; this module carries those
counts over restarts of the unit, per deployment id, in the unit's state
directory. Only totals are kept: nothing here describes a face or a person.

The file is rewritten (atomically) at every status and at every change of
watch-list, so a power cut loses at most one status interval of counting.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from edgewatch.errors import ConfigError
from edgewatch.fileio import PRIVATE, read_bytes, write_atomic
from edgewatch.pipeline import Counters

log = logging.getLogger(__name__)

FILE_NAME = "deployment-counters.json"
FIELDS = tuple(f.name for f in dataclasses.fields(Counters))


class DeploymentTally:
    """Totals of the active deployment: earlier runs' totals plus this run's counts since
    the deployment's watch-list was accepted."""

    def __init__(self, state_dir: Path | None) -> None:
        """``state_dir`` None keeps the totals for this run only (a desktop simulation)."""
        self.path = state_dir / FILE_NAME if state_dir is not None else None
        self._totals: dict[str, dict[str, int]] = self._load()
        self.deployment_id: str | None = None
        self._baseline = Counters()

    def _load(self) -> dict[str, dict[str, int]]:
        """The stored totals. A damaged file is set aside (never deleted), logged, and
        counting starts again: the unit keeps watching rather than refuse to start."""
        if self.path is None or not self.path.exists():
            return {}
        try:
            raw = json.loads(read_bytes(self.path, "deployment counters"))
            return {
                str(deployment): {name: int(counts.get(name, 0)) for name in FIELDS}
                for deployment, counts in raw.items()
            }
        except (ValueError, AttributeError, TypeError) as exc:
            aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
            self.path.replace(aside)
            log.error(
                "deployment counters %s are damaged (%s): kept as %s, counting starts again",
                self.path,
                exc,
                aside.name,
            )
            return {}

    def begin(self, deployment_id: str, counters: Counters) -> None:
        """Start counting for ``deployment_id`` from the run's ``counters`` as they are now."""
        if self.deployment_id is not None:
            self.end(counters)
        self.deployment_id = deployment_id
        self._baseline = dataclasses.replace(counters)
        self._totals.setdefault(deployment_id, dict.fromkeys(FIELDS, 0))

    def current(self, counters: Counters) -> dict[str, int] | None:
        """The active deployment's totals so far, or None when none is active."""
        if self.deployment_id is None:
            return None
        before = self._totals[self.deployment_id]
        return {
            name: before[name] + getattr(counters, name) - getattr(self._baseline, name)
            for name in FIELDS
        }

    def checkpoint(self, counters: Counters) -> None:
        """Fold this run's counts into the stored totals and write them."""
        totals = self.current(counters)
        if totals is None or self.deployment_id is None:
            return
        self._totals[self.deployment_id] = totals
        self._baseline = dataclasses.replace(counters)
        self._save()

    def end(self, counters: Counters) -> dict[str, int] | None:
        """Checkpoint and stop counting; returns the deployment's final totals on this unit."""
        totals = self.current(counters)
        self.checkpoint(counters)
        self.deployment_id = None
        return totals

    def _save(self) -> None:
        if self.path is None:
            return
        data = json.dumps(self._totals, sort_keys=True, indent=1).encode()
        try:
            write_atomic(self.path, data, PRIVATE, overwrite=True)
        except (OSError, ConfigError) as exc:  # counting must never stop the camera loop
            log.error("could not save deployment counters to %s: %s", self.path, exc)
