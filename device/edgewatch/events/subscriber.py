"""The control room's subscriber: verify every event, deliver each alert once.

For every message, in order: the topic must be ``<prefix>/<device>/<kind>``;
the unit must be in the registry and not revoked; the JWS must verify with
exactly that unit's key and carry the schema of that topic's kind; the
payload must name the same unit. Alerts and audit events must have been sent
within ``max_age_s`` (and not from the future beyond ``max_skew_s``), and
their sequence number must be new (:class:`~edgewatch.events.ledger.Ledger`);
a status must be newer than the last one accepted from that unit. Anything
else is rejected with a reason, counted and logged, never delivered.

The verification (:meth:`EventVerifier.check`) is separate from the MQTT
client so that it can be used on messages from any source.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgewatch.errors import EdgewatchError
from edgewatch.events.ledger import Ledger
from edgewatch.events.payloads import ACCEPTED_OF_KIND, open_crop, parse_timestamp
from edgewatch.events.registry import DeviceRegistry
from edgewatch.security.jws import VerificationError, verify
from edgewatch.transport.mosquitto import ClientCredentials, configure_tls
from edgewatch.transport.topics import EVENT_KINDS, device_of, subscription_filter

log = logging.getLogger(__name__)

RejectReason = Literal[
    "bad_topic",
    "unknown_device",
    "revoked_device",
    "malformed",
    "bad_signature",
    "wrong_key",
    "wrong_type",
    "device_mismatch",
    "stale",
    "from_future",
    "duplicate",
]


class Rejected(EdgewatchError):  # noqa: N818 - "a rejected event", read at the call sites
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason


@dataclass(frozen=True, slots=True)
class VerifiedEvent:
    """An event whose signature, unit, freshness and novelty were all checked."""

    kind: str
    device_id: str
    payload: dict[str, Any]
    crop: bytes | None = None
    gap: tuple[int, int] | None = None
    """Sequences first..last that this event revealed as missing, if any."""


@dataclass(slots=True)
class VerifierCounters:
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    gaps: int = 0


class EventVerifier:
    def __init__(
        self,
        registry: DeviceRegistry,
        prefix: str,
        ledger: Ledger | None = None,
        crop_key: X25519PrivateKey | None = None,
        max_age_s: float = 3600.0,
        max_skew_s: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry = registry
        self.prefix = prefix
        self.ledger = ledger or Ledger()
        self.crop_key = crop_key
        self.max_age_s = max_age_s
        self.max_skew_s = max_skew_s
        self.clock = clock
        self.counters = VerifierCounters()
        self._last_status: dict[tuple[str, bool], datetime] = {}
        self.last_status_state: dict[str, str] = {}
        """The ``state`` of the newest status accepted from each unit."""
        self._lock = threading.Lock()

    def check(self, topic: str, message: bytes) -> VerifiedEvent:
        """The verified event, or :class:`Rejected` (also counted)."""
        try:
            event = self._check(topic, message)
        except Rejected as rejected:
            with self._lock:
                self.counters.rejected[rejected.reason] += 1
            raise
        with self._lock:
            self.counters.accepted[event.kind] += 1
            self.counters.gaps += event.gap is not None
        return event

    def _check(self, topic: str, message: bytes) -> VerifiedEvent:
        located = device_of(topic, self.prefix)
        if located is None:
            raise Rejected("bad_topic", f"{topic!r} is not an event topic under {self.prefix!r}")
        device_id, kind = located
        device = self.registry.get(device_id)
        if device is None:
            raise Rejected("unknown_device", f"unit {device_id} is not in the registry")
        if device.revoked:
            raise Rejected("revoked_device", f"unit {device_id} is revoked")

        def lookup(kid: str) -> Ed25519PublicKey | None:
            return device.signing_key if kid == device.kid else None

        try:
            verified = verify(message, lookup, ACCEPTED_OF_KIND[kind])
        except VerificationError as exc:
            reason: RejectReason = {
                "malformed": "malformed",
                "unknown_signer": "wrong_key",
                "bad_signature": "bad_signature",
                "wrong_type": "wrong_type",
            }[exc.reason]  # type: ignore[assignment]
            raise Rejected(reason, f"{topic}: {exc}") from None
        try:
            payload = json.loads(verified.payload)
            sent_at = parse_timestamp(str(payload["sent_at"]))
            if payload["schema"] != verified.typ or not isinstance(payload, dict):
                raise ValueError("schema differs from the JWS typ")
        except (ValueError, KeyError, TypeError) as exc:
            raise Rejected("malformed", f"{topic}: payload: {exc}") from None
        if payload.get("device_id") != device_id:
            raise Rejected("device_mismatch", f"{topic}: payload names another unit")
        now = self.clock()
        age = (now - sent_at).total_seconds()
        if -age > self.max_skew_s:
            raise Rejected("from_future", f"{topic}: sent {-age:.0f} s in the future")
        if kind == "status":
            # The "offline" last will is signed when the unit connects, so it is older than
            # the statuses sent during that connection: it is ordered only among wills.
            track = (device_id, payload.get("state") == "offline")
            with self._lock:
                previous = self._last_status.get(track)
                if previous is not None and sent_at <= previous:
                    raise Rejected("stale", f"{topic}: status older than one already accepted")
                self._last_status[track] = sent_at
                self.last_status_state[device_id] = str(payload.get("state"))
            return VerifiedEvent(kind, device_id, payload)
        if age > self.max_age_s:
            raise Rejected("stale", f"{topic}: sent {age:.0f} s ago (limit {self.max_age_s:.0f})")
        sequence = payload.get("sequence")
        if not isinstance(sequence, int) or sequence < 1:
            raise Rejected("malformed", f"{topic}: no valid sequence number")
        observation = self.ledger.observe(device_id, verified.kid, sequence)
        if observation.duplicate:
            raise Rejected("duplicate", f"{topic}: sequence {sequence} already delivered")
        if observation.missing is not None:
            first, last = observation.missing
            log.warning("unit %s: events %d..%d missing so far", device_id, first, last)
        crop = None
        if kind == "alert" and "crop" in payload and self.crop_key is not None:
            try:
                crop = open_crop(payload["crop"], str(payload["event_id"]), self.crop_key)
            except (InvalidTag, KeyError, ValueError, TypeError):
                log.warning("unit %s: alert %s crop does not open", device_id, sequence)
        return VerifiedEvent(kind, device_id, payload, crop, observation.missing)


@dataclass(frozen=True, slots=True)
class SubscriberSettings:
    host: str
    port: int
    credentials: ClientCredentials
    client_id: str
    prefix: str
    share_group: str | None = None
    session_expiry_s: int = 3600
    """How long the broker keeps this subscriber's queue while it is away; keep the
    verifier's ``max_age_s`` at least this long, or queued alerts arrive stale."""


class Subscriber:
    """MQTT side: subscribes to every unit's events and hands each to ``check``."""

    def __init__(
        self,
        settings: SubscriberSettings,
        verifier: EventVerifier,
        on_event: Callable[[VerifiedEvent], None],
        on_reject: Callable[[str, Rejected], None] | None = None,
    ) -> None:
        settings.credentials.check()
        self.settings = settings
        self.verifier = verifier
        self.on_event = on_event
        self.on_reject = on_reject
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=mqtt.MQTTv5
        )
        configure_tls(self.client, settings.credentials)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 30)

    def start(self, timeout_s: float = 10.0) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.settings.session_expiry_s
        try:
            self.client.connect(
                self.settings.host,
                self.settings.port,
                keepalive=30,
                clean_start=False,
                properties=properties,
            )
        except (OSError, ValueError) as exc:  # refused, unreachable, TLS handshake failed
            raise EdgewatchError(
                f"cannot connect to the broker at {self.settings.host}:{self.settings.port}: {exc}"
            ) from None
        self.client.loop_start()
        if not self.subscribed.wait(timeout_s):
            self.stop()
            raise EdgewatchError(
                f"could not subscribe at {self.settings.host}:{self.settings.port} within "
                f"{timeout_s:.0f} s (broker down, or this identity may not read events)"
            )

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the subscriber: %s", reason)
            return
        filters = [
            (subscription_filter(self.settings.prefix, kind, self.settings.share_group), 1)
            for kind in EVENT_KINDS
        ]
        client.subscribe(filters)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("subscription refused: %s", ", ".join(failed))
            return
        self.subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            event = self.verifier.check(message.topic, bytes(message.payload))
        except Rejected as rejected:
            level = logging.DEBUG if rejected.reason == "duplicate" else logging.WARNING
            log.log(level, "rejected event: %s", rejected)
            if self.on_reject is not None:
                self.on_reject(message.topic, rejected)
            return
        self.on_event(event)


def wait_for(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout_s``; for tests and the demo."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()
