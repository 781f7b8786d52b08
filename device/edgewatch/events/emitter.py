"""The camera loop's side of the events: turn decisions into queued events.

Everything here is quick and local (an SQLite append); the network is the
:class:`~edgewatch.events.publisher.Publisher` thread's business. A full
outbox, or one that cannot write at all (disk full, I/O error), is logged and
counted (the count travels in every status that can be stored), never fatal:
the unit keeps watching.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from edgewatch import __version__
from edgewatch.errors import ConfigError
from edgewatch.events.config import PublishConfig
from edgewatch.events.outbox import Outbox, OutboxError, OutboxFull
from edgewatch.events.payloads import (
    alert_body,
    audit_body,
    encode,
    new_event_id,
    seal_crop,
    status_body,
    timestamp,
)
from edgewatch.events.publisher import BrokerSettings, Publisher
from edgewatch.events.tally import DeploymentTally
from edgewatch.pipeline import Counters, MatchReport
from edgewatch.security.jws import Signer
from edgewatch.security.keys import load_recipient_key, load_signing_key
from edgewatch.transport.topics import EventKind, event_topic
from edgewatch.watchlist.active import ActiveWatchlist, WatchlistChange

log = logging.getLogger(__name__)


class EventEmitter:
    """Queues alerts, audit events and status for one unit."""

    def __init__(
        self,
        outbox: Outbox,
        device_id: str,
        prefix: str,
        watchlist: ActiveWatchlist,
        crop_key: X25519PublicKey | None = None,
        on_queued: Callable[[], None] | None = None,
        tally: DeploymentTally | None = None,
    ) -> None:
        self.outbox = outbox
        self.device_id = device_id
        self.prefix = prefix
        self.watchlist = watchlist
        self.tally = tally or DeploymentTally(None)
        self.crop_key = crop_key
        self.on_queued = on_queued
        self.started_at = timestamp()
        self.alerts = 0
        self.refused = 0
        """Events refused because the outbox is full (also persisted by the outbox)."""
        self.unstored = 0
        """Events the outbox could not store at all (disk full, I/O error): counted here
        and reported in the next status that can be stored."""

    def _queue(self, kind: EventKind, build: Callable[[int | None], dict[str, Any]]) -> bool:
        try:
            self.outbox.append(
                kind,
                event_topic(self.prefix, self.device_id, kind),
                lambda sequence: encode(build(sequence)),
                retain=kind == "status",
            )
        except OutboxFull:
            self.refused += 1
            return False
        except OutboxError as exc:
            self.unstored += 1
            log.error("could not queue an event (%s; %d so far): %s", kind, self.unstored, exc)
            return False
        if self.on_queued is not None:
            self.on_queued()
        return True

    def alert(self, report: MatchReport) -> bool:
        """Queue an alert for a match (with its crop sealed, if configured)."""
        event_id = new_event_id()
        crop = None
        if self.crop_key is not None and report.crop is not None:
            crop = seal_crop(report.crop, event_id, self.crop_key)
        status = self.watchlist.status()
        queued = self._queue(
            "alert",
            lambda sequence: alert_body(
                device_id=self.device_id,
                sequence=_sequenced(sequence),
                event_id=event_id,
                captured_at=report.capture_time,
                watchlist=status,
                subject_ref=report.subject,
                category=report.category,
                score=report.score,
                threshold=report.threshold,
                margin=report.margin,
                model_id=report.model_id,
                track=report.track,
                box=report.box,
                crop=crop,
            ),
        )
        self.alerts += queued
        return queued

    def audit(self, action: str, detail: str, counters: Counters) -> bool:
        """An event in the unit's life, with the active deployment's totals if any."""
        return self._audit(
            action, detail, counters, self.tally.deployment_id, self.tally.current(counters)
        )

    def watchlist_changed(self, change: WatchlistChange, counters: Counters) -> bool:
        """Audit a watch-list change; starts or closes its deployment's tally.

        A deployment's audit trail opens with its totals carried over from
        earlier runs and closes (expired, ended) with its final totals.
        """
        totals = None
        if change.state == "active" and change.deployment_id is not None:
            self.tally.begin(change.deployment_id, counters)
            totals = self.tally.current(counters)
        elif change.state in ("expired", "ended"):
            totals = self.tally.end(counters)
        action = "watchlist_accepted" if change.state == "active" else f"watchlist_{change.state}"
        return self._audit(action, change.detail, counters, change.deployment_id, totals)

    def _audit(
        self,
        action: str,
        detail: str,
        counters: Counters,
        deployment_id: str | None,
        deployment_counters: dict[str, int] | None,
    ) -> bool:
        return self._queue(
            "audit",
            lambda sequence: audit_body(
                device_id=self.device_id,
                sequence=_sequenced(sequence),
                deployment_id=deployment_id,
                action=action,
                detail=detail,
                counters=dataclasses.asdict(counters),
                deployment_counters=deployment_counters,
            ),
        )

    def status_body(self, state: str, counters: Counters, fps: float) -> dict[str, Any]:
        depth = self.outbox.depth()
        watchlist = self.watchlist.status()
        deployment_counters = self.tally.current(counters)
        if deployment_counters is not None:
            watchlist["counters"] = deployment_counters
        return status_body(
            device_id=self.device_id,
            state=state,
            software_version=__version__,
            started_at=self.started_at,
            watchlist=watchlist,
            counters=dataclasses.asdict(counters),
            fps=fps,
            outbox={
                "depth": sum(depth.values()),
                "alerts_refused": self.outbox.alerts_refused + self.unstored,
            },
        )

    def status(self, state: str, counters: Counters, fps: float) -> bool:
        """Queue a status; the deployment's totals are saved with each one."""
        body = self.status_body(state, counters, fps)
        self.tally.checkpoint(counters)
        return self._queue("status", lambda _sequence: body)


def _sequenced(sequence: int | None) -> int:
    if sequence is None:
        raise ValueError("the outbox did not allocate a sequence number")
    return sequence


class EventService:
    """Outbox, emitter and publisher of one unit, started and stopped together."""

    def __init__(
        self,
        config: PublishConfig,
        watchlist: ActiveWatchlist,
        on_command: Callable[[bytes], None] | None = None,
    ) -> None:
        """``on_command`` receives the raw messages on the unit's command topic
        (from the publisher's thread: queue them, do not act there)."""
        device, mqtt = config.device, config.mqtt
        if not device.state_dir.is_dir():
            raise ConfigError(f"device.state_dir {device.state_dir}: directory does not exist")
        self.signer = Signer(load_signing_key(device.signing_key, "device signing key"))
        crop_key = None
        if config.events.crop_key is not None:
            crop_key = load_recipient_key(config.events.crop_key, "control room crop key")
        self.outbox = Outbox(
            Path(device.state_dir) / "outbox.sqlite", capacity=config.events.outbox_capacity
        )
        self.emitter = EventEmitter(
            self.outbox,
            device.id,
            mqtt.prefix,
            watchlist,
            crop_key,
            on_queued=self._nudge,
            tally=DeploymentTally(Path(device.state_dir)),
        )
        offline = self.emitter.status_body("offline", Counters(), 0.0)
        self.publisher = Publisher(
            self.outbox,
            self.signer,
            device.id,
            BrokerSettings(
                host=mqtt.host,
                port=mqtt.port,
                credentials=mqtt.credentials,
                prefix=mqtt.prefix,
                keepalive_s=mqtt.keepalive_s,
            ),
            encode(offline),
            on_command,
        )
        self.status_interval_s = config.events.status_interval_s
        self._last_status = 0.0
        self.crop_matches = crop_key is not None
        self.outbox_depth_at_stop: dict[str, int] = {}

    def _nudge(self) -> None:
        self.publisher.notify()

    def start(self, counters: Counters) -> None:
        self.publisher.start()
        self.emitter.status("online", counters, 0.0)
        self._last_status = time.monotonic()

    def tick(self, counters: Counters, fps: float) -> None:
        """Called once a frame: a status every ``status_interval_s``."""
        if time.monotonic() - self._last_status >= self.status_interval_s:
            self.emitter.status("online", counters, fps)
            self._last_status = time.monotonic()

    def stop(self, counters: Counters, fps: float, drain_timeout_s: float = 10.0) -> None:
        self.emitter.status("stopped", counters, fps)
        self.publisher.stop(drain_timeout_s)
        self.outbox_depth_at_stop = self.outbox.depth()
        self.outbox.close()
