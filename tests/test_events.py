"""Signed events end to end, against a real Mosquitto with mutual TLS and the ACL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edgewatch.cli.keys import generate_role
from edgewatch.events.config import load_publish_config
from edgewatch.events.emitter import EventService
from edgewatch.events.ledger import Ledger
from edgewatch.events.payloads import STATUS, encode, stamp
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
from edgewatch.security.jws import Signer
from edgewatch.security.keys import load_sealing_key, load_signing_key, load_verify_key
from edgewatch.transport.mosquitto import LocalBroker
from edgewatch.watchlist.active import ActiveWatchlist
from tests.broker import Probe
from tests.event_producer import report

PREFIX = "edgewatch"
WAIT = 60.0


class Unit:
    """A unit's keys, TLS identity and configuration file in a folder."""

    def __init__(
        self,
        root: Path,
        broker: LocalBroker,
        device_id: str,
        crop: bool = False,
        keys: Path | None = None,
        status_interval_s: float = 3600,
    ) -> None:
        """``keys``: an existing folder of the unit's keys (default: new keys in its folder)."""
        self.device_id = device_id
        self.dir = keys or root / device_id
        if keys is None:
            generate_role("device", self.dir)
        self.state = root / device_id / "state"
        self.state.mkdir(parents=True)
        self.creds = creds = broker.issue_client(device_id)
        crop_line = f'crop_key = "{root / "control-room" / "crop.pub"}"\n' if crop else ""
        self.config = root / device_id / "unit.toml"
        self.config.write_text(
            f'[device]\nid = "{device_id}"\nsigning_key = "{self.dir / "signing.key"}"\n'
            f'state_dir = "{self.state}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nca_cert = "{creds.ca_cert}"\n'
            f'cert = "{creds.cert}"\nkey = "{creds.key}"\n'
            f"[events]\nstatus_interval_s = {status_interval_s}\n{crop_line}"
        )

    def service(self) -> EventService:
        return EventService(load_publish_config(self.config), ActiveWatchlist("dlib-resnet-v1"))


class ControlRoom:
    """A verifying subscriber that records what the application sees."""

    def __init__(self, root: Path, broker: LocalBroker, units: list[Unit]) -> None:
        if not (root / "control-room").exists():
            generate_role("control-room", root / "control-room")
        registry = DeviceRegistry()
        for unit in units:
            registry.add(unit.device_id, load_verify_key(unit.dir / "signing.pub", "key"))
        self.events: list[VerifiedEvent] = []
        self.rejected: list[str] = []
        self.verifier = EventVerifier(
            registry,
            PREFIX,
            Ledger(),
            load_sealing_key(root / "control-room" / "crop.key", "crop key"),
        )
        creds = broker.issue_client("control-room")
        self.subscriber = Subscriber(
            SubscriberSettings("127.0.0.1", broker.port, creds, "control-room", PREFIX),
            self.verifier,
            self.events.append,
            lambda _topic, rejected: self.rejected.append(rejected.reason),
        )
        self.subscriber.start()

    def alerts(self) -> list[VerifiedEvent]:
        return [e for e in self.events if e.kind == "alert"]

    def sequences(self) -> list[int]:
        return [int(e.payload["sequence"]) for e in self.alerts()]

    def close(self) -> None:
        self.subscriber.stop()


@pytest.fixture
def room_dir(tmp_path: Path) -> Path:
    generate_role("control-room", tmp_path / "control-room")
    return tmp_path


def test_alerts_and_status_round_trip_with_sealed_crop(broker: LocalBroker, room_dir: Path) -> None:
    unit = Unit(room_dir, broker, "cam-a", crop=True)
    room = ControlRoom(room_dir, broker, [unit])
    service = unit.service()
    counters = Counters(frames=10, faces_seen=4, faces_discarded=2, matches=2)
    service.start(counters)
    jpeg = b"\xff\xd8fake jpeg of the matched face\xff\xd9"
    for index in range(2):
        service.emitter.alert(report(index).__class__(**{**_fields(report(index)), "crop": jpeg}))
    service.stop(counters, 5.0)
    assert wait_for(lambda: len(room.alerts()) == 2 and room.verifier.last_status_state, WAIT)
    room.close()
    alert = room.alerts()[0]
    assert alert.payload["device_id"] == "cam-a" and alert.payload["sequence"] == 1
    assert alert.crop == jpeg, "the control room opens the sealed crop"
    assert "embedding" not in json.dumps(alert.payload)
    statuses = [e for e in room.events if e.kind == "status"]
    assert statuses[-1].payload["state"] == "stopped"
    assert statuses[-1].payload["counters"]["faces_discarded"] == 2
    assert room.rejected == []


def _fields(value: object) -> dict[str, object]:
    return {name: getattr(value, name) for name in value.__slots__}  # type: ignore[attr-defined]


def signed_alert(key: Ed25519PrivateKey, device_id: str, sequence: int, **changes: object) -> bytes:
    from edgewatch.events.payloads import alert_body

    body = alert_body(
        device_id=device_id,
        sequence=sequence,
        event_id="00000000-0000-4000-8000-000000000001",
        captured_at=time.time(),
        watchlist={},
        subject_ref="case-1",
        category="wanted",
        score=0.95,
        threshold=0.926,
        margin=0.012,
        model_id="dlib-resnet-v1",
        track=None,
        box=(1, 2, 3, 4),
        crop=None,
    )
    body.update(changes)
    return Signer(key).sign(stamp(encode(body)), "edgewatch.alert/1")


def test_forged_altered_replayed_and_misdirected_events_are_rejected(
    broker: LocalBroker, room_dir: Path, probes: object
) -> None:
    unit_a = Unit(room_dir, broker, "cam-a")
    unit_b = Unit(room_dir, broker, "cam-b")
    room = ControlRoom(room_dir, broker, [unit_a, unit_b])
    key_a = load_signing_key(unit_a.dir / "signing.key", "key")
    device = Probe(broker, "cam-a", unit_a.creds)
    assert device.connect()
    topic = f"{PREFIX}/cam-a/alert"
    genuine = signed_alert(key_a, "cam-a", 1)
    assert not device.publish(topic, genuine).is_failure
    forged = signed_alert(Ed25519PrivateKey.generate(), "cam-a", 2)
    device.publish(topic, forged)
    envelope = json.loads(genuine)
    payload = json.loads(_b64(envelope["payload"]))
    payload["subject"]["ref"] = "someone else"
    from edgewatch.security.keys import b64url

    envelope["payload"] = b64url(encode(payload))
    device.publish(topic, json.dumps(envelope))
    device.publish(topic, genuine)  # replay
    # a unit's valid signature, but about another unit, on its own topic
    device.publish(topic, signed_alert(key_a, "cam-b", 3))
    # cam-a may not publish under cam-b's topic at all: the broker refuses it
    refused = device.publish(f"{PREFIX}/cam-b/alert", signed_alert(key_a, "cam-b", 4))
    assert refused.value == 135
    stale = signed_alert(key_a, "cam-a", 5)
    device.close()
    assert wait_for(lambda: len(room.rejected) == 4, WAIT), room.rejected
    assert [e.payload["sequence"] for e in room.alerts()] == [1]
    assert Counter(room.rejected) == Counter(
        {"wrong_key": 1, "bad_signature": 1, "duplicate": 1, "device_mismatch": 1}
    )
    later = EventVerifier(
        room.verifier.registry,
        PREFIX,
        clock=lambda: datetime.now(UTC) + timedelta(hours=2),
    )
    with pytest.raises(Rejected, match="stale"):
        later.check(topic, stale)
    with pytest.raises(Rejected, match="unknown_device"):
        later.check(f"{PREFIX}/cam-z/alert", stale)
    room.verifier.registry.revoke("cam-a")
    with pytest.raises(Rejected, match="revoked_device"):
        room.verifier.check(topic, stale)
    room.close()


def _b64(text: str) -> bytes:
    from edgewatch.security.keys import b64url_decode

    return b64url_decode(text, "payload")


def test_broker_outage_loses_nothing_and_duplicates_nothing(
    broker: LocalBroker, room_dir: Path
) -> None:
    unit = Unit(room_dir, broker, "cam-a")
    room = ControlRoom(room_dir, broker, [unit])
    service = unit.service()
    counters = Counters()
    service.start(counters)
    assert wait_for(lambda: service.publisher.connected.is_set(), WAIT)
    for index in range(100):
        service.emitter.alert(report(index))
    broker.stop()
    for index in range(100, 1000):  # produced while the broker is down
        service.emitter.alert(report(index))
    assert sum(service.outbox.depth().values()) > 0
    broker.start()
    assert wait_for(lambda: len(room.alerts()) >= 1000, WAIT * 2), len(room.alerts())
    service.stop(counters, 0.0)
    room.close()
    assert sorted(room.sequences()) == list(range(1, 1001))
    assert len(room.sequences()) == 1000, "the application sees no alert twice"
    assert service.publisher.connections >= 2


def test_sigkill_mid_stream_resends_only_what_was_not_acknowledged(
    broker: LocalBroker, room_dir: Path
) -> None:
    unit = Unit(room_dir, broker, "cam-a")
    room = ControlRoom(room_dir, broker, [unit])
    command = [sys.executable, "-m", "tests.event_producer", str(unit.config)]
    first = subprocess.Popen([*command, "400", "0.002"], stdout=subprocess.PIPE, text=True)
    assert first.stdout is not None
    queued = []
    for line in first.stdout:
        queued.append(int(line))
        if len(queued) == 150:
            first.send_signal(signal.SIGKILL)
            break
    first.wait(timeout=WAIT)
    delivered_before = set(room.sequences())
    second = subprocess.run([*command, "50"], capture_output=True, text=True, timeout=WAIT * 2)
    assert second.returncode == 0, second.stderr
    last = int(second.stdout.split()[-1])
    assert wait_for(lambda: len(set(room.sequences())) >= last, WAIT), (len(room.sequences()), last)
    room.close()
    assert sorted(room.sequences()) == list(range(1, last + 1)), "nothing queued was lost"
    assert len(room.sequences()) == len(set(room.sequences())), "the application saw none twice"
    assert set(queued) <= set(room.sequences())
    assert delivered_before <= set(room.sequences())


def test_shared_subscription_splits_the_load(broker_factory: object, room_dir: Path) -> None:
    make = broker_factory  # type: ignore[assignment]
    broker: LocalBroker = make(readers=("reader-1", "reader-2"))  # type: ignore[operator]
    unit = Unit(room_dir, broker, "cam-a")
    registry = DeviceRegistry()
    registry.add("cam-a", load_verify_key(unit.dir / "signing.pub", "key"))
    ledger = Ledger()
    seen: dict[str, list[int]] = {"reader-1": [], "reader-2": []}
    subscribers = []
    for name in seen:
        subscriber = Subscriber(
            SubscriberSettings(
                "127.0.0.1",
                broker.port,
                broker.issue_client(name),
                name,
                PREFIX,
                share_group="alerts",
            ),
            EventVerifier(registry, PREFIX, ledger),
            lambda event, name=name: seen[name].append(int(event.payload.get("sequence", 0))),
        )
        subscriber.start()
        subscribers.append(subscriber)
    service = unit.service()
    service.start(Counters())
    for index in range(40):
        service.emitter.alert(report(index))
    service.stop(Counters(), 0.0)
    assert wait_for(lambda: len([s for s in seen["reader-1"] + seen["reader-2"] if s]) >= 40, WAIT)
    for subscriber in subscribers:
        subscriber.stop()
    assert seen["reader-1"] and seen["reader-2"], "both instances take a share"
    alerts = [s for s in seen["reader-1"] + seen["reader-2"] if s]
    assert len(alerts) == len(set(alerts))


def test_crop_key_mismatch_is_not_fatal(room_dir: Path) -> None:
    from edgewatch.events.payloads import open_crop, seal_crop

    key = X25519PrivateKey.generate()
    crop = seal_crop(b"jpeg", "event-1", key.public_key())
    assert open_crop(crop, "event-1", key) == b"jpeg"
    with pytest.raises(Exception):  # noqa: B017 - any failure to open is the point
        open_crop(crop, "event-2", key)


def test_offline_will_is_accepted_after_newer_statuses(room_dir: Path) -> None:
    from edgewatch.events.payloads import status_body

    key = Ed25519PrivateKey.generate()
    registry = DeviceRegistry()
    registry.add("cam-a", key.public_key())
    verifier = EventVerifier(registry, PREFIX)
    topic = f"{PREFIX}/cam-a/status"

    def status(state: str, seconds_ago: float) -> bytes:
        body = status_body(
            device_id="cam-a", state=state, software_version="t", started_at="x",
            watchlist={"state": "none"}, counters={}, fps=0.0, outbox={},
        )  # fmt: skip
        sent = (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()
        payload = stamp(encode(body), sent.replace("+00:00", "Z"))
        return Signer(key).sign(payload, STATUS)

    will = status("offline", 60)  # signed when the unit connected
    verifier.check(topic, status("online", 30))
    verifier.check(topic, status("online", 1))
    assert verifier.check(topic, will).payload["state"] == "offline"
    with pytest.raises(Rejected, match="stale"):
        verifier.check(topic, status("online", 20))
    with pytest.raises(Rejected, match="from_future"):
        verifier.check(topic, status("online", -120))


def test_a_full_disk_is_logged_and_counted_not_fatal(
    broker: LocalBroker, room_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite's own "database or disk is full", forced with max_page_count."""
    unit = Unit(room_dir, broker, "cam-a")
    service = unit.service()
    for index in range(3):
        assert service.emitter.alert(report(index))
    pages = service.outbox._conn.execute("PRAGMA page_count").fetchone()[0]
    service.outbox._conn.execute(f"PRAGMA max_page_count = {pages}")
    stored = sum(service.emitter.alert(report(index)) for index in range(3, 400))
    assert stored < 397 and service.emitter.unstored == 397 - stored
    assert "could not queue an event (alert" in caplog.text and "full" in caplog.text
    assert (
        service.emitter.status_body("online", Counters(), 0.0)["outbox"]["alerts_refused"]
        == service.emitter.unstored
    )
    service.outbox.close()
