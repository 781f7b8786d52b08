"""The device's publisher: outbox in, signed events to the broker out.

One background thread owns the MQTT connection (paho-mqtt 2.x, MQTT v5,
mutual TLS, QoS 1) and does nothing else, so the camera loop never waits on
the network: it only appends to the :class:`~edgewatch.events.outbox.Outbox`.

Each connection is a fresh paho client. On connect, the pending events are
read from the outbox in order, each is stamped with ``sent_at``, signed and
published, with at most ``window`` unacknowledged at a time; the broker's
PUBACK deletes the event from the outbox. If the connection drops, the
client and everything it had in flight are discarded, and after a backoff
(1 s doubling to 60 s, with jitter) a new connection starts again from the
oldest unacknowledged event, re-stamped and re-signed. Nothing is deleted
unacknowledged, so nothing is lost; an event the broker received whose PUBACK
was lost is sent twice, and the subscriber drops the copy by its sequence
number.

The connection carries an MQTT last will: a signed, retained status
``offline``, which the broker publishes if the unit vanishes.

The same connection (the broker allows one per client id, which is the
certificate's CN) subscribes to the unit's command topic. Commands are
published retained, so the latest one reaches a unit that was offline when
it was sent; :attr:`Publisher.on_command` gets each one's raw bytes, in this
thread, and must only queue them (the unit verifies and acts in its own loop).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edgewatch.events.outbox import Outbox
from edgewatch.events.payloads import SCHEMA_OF_KIND, STATUS, stamp
from edgewatch.security.jws import Signer
from edgewatch.transport.mosquitto import ClientCredentials, configure_tls
from edgewatch.transport.topics import command_topic, event_topic

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    host: str
    port: int
    credentials: ClientCredentials
    prefix: str
    keepalive_s: int = 30
    window: int = 32
    """Events published but not yet acknowledged, at most."""
    connect_timeout_s: float = 10.0
    max_backoff_s: float = 60.0


class Publisher:
    """Drains an outbox to the broker in a background thread until :meth:`stop`."""

    def __init__(
        self,
        outbox: Outbox,
        signer: Signer,
        device_id: str,
        settings: BrokerSettings,
        offline_status: bytes,
        on_command: Callable[[bytes], None] | None = None,
    ) -> None:
        """``offline_status`` is the unsigned status body the broker publishes as the will;
        ``on_command``, if given, receives every message on the unit's command topic."""
        settings.credentials.check()
        self.outbox = outbox
        self.signer = signer
        self.device_id = device_id
        self.settings = settings
        self._offline = offline_status
        self.on_command = on_command
        self.commands_received = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgewatch-publisher", daemon=True)
        self.connected = threading.Event()
        self.published = 0
        self.acknowledged = 0
        self.connections = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """Tell the publisher an event was queued (it also polls, so this is only a nudge)."""
        self._wake.set()

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Give queued events ``drain_timeout_s`` to go out (connecting if need be), then
        disconnect; what is still queued stays in the outbox for the next start."""
        deadline = time.monotonic() + drain_timeout_s
        while time.monotonic() < deadline and self._backlog() and self._thread.is_alive():
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=self.settings.connect_timeout_s + 5)

    def _backlog(self) -> int:
        return sum(self.outbox.depth().values())

    # -------------------------------------------------------------- the thread

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                if self._session():
                    backoff = 1.0
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("MQTT connection to %s:%d failed: %s", *self._where(), self.last_error)
            self.connected.clear()
            if self._stop.is_set():
                break
            delay = backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
            log.info("reconnecting to the broker in %.1f s", delay)
            self._stop.wait(delay)
            backoff = min(backoff * 2, self.settings.max_backoff_s)

    def _where(self) -> tuple[str, int]:
        return self.settings.host, self.settings.port

    def _client(self, state: dict[str, Any]) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.device_id,
            protocol=mqtt.MQTTv5,
        )
        configure_tls(client, self.settings.credentials)
        will = self.signer.sign(stamp(self._offline), STATUS)
        client.will_set(
            event_topic(self.settings.prefix, self.device_id, "status"), will, qos=1, retain=True
        )
        client.max_inflight_messages_set(self.settings.window)

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
            state["connack"] = reason

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
            state["disconnected"] = reason

        def on_publish(_c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
            entry_id = state["inflight"].pop(mid, None)
            if entry_id is None:
                return
            if reason.is_failure:
                # Keep the event; reconnecting retries it in order, after a backoff.
                state["refused"] = f"broker refused event {entry_id}: {reason}"
                return
            self.outbox.acknowledge(entry_id)
            self.acknowledged += 1

        def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
            if self.on_command is not None and message.topic == self._command_topic:
                self.commands_received += 1
                self.on_command(bytes(message.payload))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_message = on_message
        return client

    @property
    def _command_topic(self) -> str:
        return command_topic(self.settings.prefix, self.device_id)

    def _session(self) -> bool:
        """One connection's life; True if it got connected at all."""
        state: dict[str, Any] = {"inflight": {}}
        client = self._client(state)
        client.connect(*self._where(), keepalive=self.settings.keepalive_s, clean_start=True)
        deadline = time.monotonic() + self.settings.connect_timeout_s
        while "connack" not in state and "disconnected" not in state:
            if time.monotonic() > deadline or self._stop.is_set():
                raise TimeoutError("no CONNACK from the broker")
            client.loop(timeout=0.1)
        reason: ReasonCode | None = state.get("connack")
        if reason is None or reason.is_failure:
            raise ConnectionError(f"broker refused the connection: {reason}")
        self.connections += 1
        self.connected.set()
        self.last_error = None
        log.info("connected to MQTT broker %s:%d", *self._where())
        if self.on_command is not None:
            result, _mid = client.subscribe(self._command_topic, qos=1)
            if result != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError(f"subscribe failed: {mqtt.error_string(result)}")
        cursor = 0
        try:
            while "disconnected" not in state and "refused" not in state:
                if self._stop.is_set():
                    break
                room = self.settings.window - len(state["inflight"])
                sent = 0
                if room > 0:
                    for entry in self.outbox.pending(after_id=cursor, limit=room):
                        payload = self.signer.sign(stamp(entry.body), SCHEMA_OF_KIND[entry.kind])
                        info = client.publish(entry.topic, payload, qos=1, retain=entry.retain)
                        if info.rc != mqtt.MQTT_ERR_SUCCESS:
                            raise ConnectionError(f"publish failed: {mqtt.error_string(info.rc)}")
                        state["inflight"][info.mid] = entry.id
                        cursor = entry.id
                        sent += 1
                        self.published += 1
                client.loop(timeout=0.0 if sent else 0.01)
                if not sent and not state["inflight"]:
                    self._wake.wait(0.05)
                    self._wake.clear()
            if "refused" in state:
                raise ConnectionError(state["refused"])
            if "disconnected" in state:
                log.warning("disconnected from the broker: %s", state["disconnected"])
        finally:
            self.connected.clear()
            if "disconnected" not in state:
                client.disconnect()
                client.loop(timeout=0.2)
        return True
