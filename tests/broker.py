"""Fixtures and a small paho client wrapper for tests against a real Mosquitto.

Load with ``pytest_plugins = ["tests.broker"]`` in ``tests/conftest.py``.
Every wait has a timeout so a broken broker fails a test instead of hanging
it; nothing asserts how long anything took.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgewatch.transport.mosquitto import ClientCredentials, LocalBroker, configure_tls

TIMEOUT = 5.0
"""Upper bound for any single wait; generous so a loaded CI machine never flakes."""

BrokerFactory = Callable[..., LocalBroker]


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[BrokerFactory]:
    """Start LocalBrokers in ``tmp_path`` (keyword arguments go to LocalBroker); stop them all."""
    started: list[LocalBroker] = []

    def make(**kwargs: Any) -> LocalBroker:
        kwargs.setdefault("prefix", "edgewatch")
        broker = LocalBroker(tmp_path / f"broker-{len(started)}", **kwargs)
        started.append(broker)
        broker.start()
        return broker

    yield make
    for broker in started:
        broker.kill()


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> LocalBroker:
    """A fresh broker with prefix ``edgewatch`` and one reader, ``control-room``."""
    return broker_factory(readers=("control-room",))


class Probe:
    """A paho MQTT v5 client whose callbacks feed events and queues, for assertions."""

    def __init__(
        self,
        broker: LocalBroker,
        client_id: str,
        creds: ClientCredentials | None,
        *,
        clean_start: bool = True,
        session_expiry: int | None = None,
    ) -> None:
        self.broker = broker
        self.clean_start = clean_start
        self.session_expiry = session_expiry
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if creds is not None:
            configure_tls(self.client, creds)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._io = threading.Lock()
        """Without loop_start, paho writes to the TLS socket from whichever thread calls it:
        the network thread and the test thread must take turns, or TLS records interleave."""
        self.connack: ReasonCode | None = None
        self.disconnects = 0
        self.session_present = False
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self._acks: dict[int, list[ReasonCode]] = {}
        self._ack_events: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._syncs = 0
        self._stopping = threading.Event()
        self._network: threading.Thread | None = None
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    # -- callbacks (paho's network thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connack = reason_code
        self.session_present = flags.session_present
        if not reason_code.is_failure:
            self._connected.set()
        else:
            self._disconnected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.disconnects += 1
        self._disconnected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def _ack(self, mid: int, codes: list[ReasonCode]) -> None:
        with self._lock:
            self._acks[mid] = codes
            event = self._ack_events.setdefault(mid, threading.Event())
        event.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._ack(mid, list(reason_codes))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._ack(mid, [reason_code])

    def _wait_ack(self, mid: int | None) -> list[ReasonCode]:
        assert mid is not None
        with self._lock:
            event = self._ack_events.setdefault(mid, threading.Event())
        assert event.wait(TIMEOUT), f"no acknowledgement for message id {mid}"
        with self._lock:
            return self._acks.pop(mid)

    # -- actions

    def connect(self) -> bool:
        """True once the broker accepted us; False if TLS or MQTT refused the connection."""
        self._connected.clear()
        self._disconnected.clear()
        properties = None
        if self.session_expiry is not None:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.session_expiry
        try:
            self.client.connect(
                self.broker.host,
                self.broker.port,
                keepalive=30,
                clean_start=self.clean_start,
                properties=properties,
            )
        except OSError:  # ssl.SSLError included: refused during the handshake
            return False
        self._start_network()
        # With TLS 1.3 the client's handshake completes before the broker has checked
        # our certificate: a refusal then arrives as a closed connection instead.
        for _ in range(int(TIMEOUT / 0.05)):
            if self._connected.is_set():
                return True
            if self._disconnected.is_set():
                break
            self._connected.wait(0.05)
        self._stop_network()
        return False

    def wait_disconnected(self, timeout: float = TIMEOUT) -> bool:
        """True once the connection is gone (refused, dropped or closed)."""
        return self._disconnected.wait(timeout)

    def subscribe(self, topic: str, qos: int = 1) -> ReasonCode:
        with self._io:
            result, mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS, f"subscribe to {topic} failed: {result}"
        return self._wait_ack(mid)[0]

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> ReasonCode:
        """Publish and return the PUBACK reason code (QoS 1)."""
        with self._io:
            info = self.client.publish(topic, payload, qos)
        return self._wait_ack(info.mid)[0]

    def receive(self, count: int, timeout: float = TIMEOUT) -> list[mqtt.MQTTMessage]:
        """Exactly ``count`` messages, failing the test if they do not all arrive."""
        received = []
        for _ in range(count):
            try:
                received.append(self.messages.get(timeout=timeout))
            except queue.Empty:
                pytest.fail(f"received {len(received)} of {count} messages")
        return received

    def sync(self) -> None:
        """A SUBSCRIBE round trip: once its SUBACK is back, everything the broker sent
        us before it has been handled, so :meth:`pending` is complete up to now.

        (Any filter will do: Mosquitto 2.0 grants every subscription.)
        """
        self._syncs += 1
        self.subscribe(f"sync/{self._syncs}", 0)

    def pending(self) -> list[mqtt.MQTTMessage]:
        """Messages received and not yet taken, without waiting."""
        received = []
        while True:
            try:
                received.append(self.messages.get_nowait())
            except queue.Empty:
                return received

    def close(self) -> None:
        """Disconnect cleanly (keeps a persistent session) and stop the network thread."""
        if self._connected.is_set() and not self._disconnected.is_set():
            with self._io:
                self.client.disconnect()
            self._disconnected.wait(TIMEOUT)
        self._stop_network()

    # -- network thread: paho's loop_start would reconnect on its own (after a 1 s
    # back-off); tests want every reconnect to be explicit.

    def _start_network(self) -> None:
        self._stopping.clear()
        self._network = threading.Thread(target=self._run, name="probe-network", daemon=True)
        self._network.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._io:
                result = self.client.loop(timeout=0.02)
            if result != mqtt.MQTT_ERR_SUCCESS:
                return  # connection refused or lost

    def _stop_network(self) -> None:
        self._stopping.set()
        if self._network is not None:
            self._network.join(TIMEOUT)
            self._network = None


@pytest.fixture
def probes() -> Iterator[Callable[..., Probe]]:
    """Make Probes (same arguments as Probe); all are closed at teardown."""
    made: list[Probe] = []

    def make(*args: Any, **kwargs: Any) -> Probe:
        probe = Probe(*args, **kwargs)
        made.append(probe)
        return probe

    yield make
    for probe in made:
        probe.close()
