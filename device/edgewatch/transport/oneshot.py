"""Publish one retained message and wait for the broker's verdict (the issuer's commands).

A command must not be "sent" unless the broker took it: with MQTT v5 a QoS 1
PUBLISH the ACL refuses comes back with PUBACK reason 135 "Not authorized",
which is reported here as an error instead of a silent drop.
"""

from __future__ import annotations

import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edgewatch.errors import EdgewatchError
from edgewatch.transport.mosquitto import ClientCredentials, configure_tls


def publish_retained(
    host: str,
    port: int,
    credentials: ClientCredentials,
    client_id: str,
    topic: str,
    payload: bytes,
    timeout_s: float = 15.0,
) -> None:
    """Connect (mutual TLS), publish ``payload`` retained with QoS 1, wait for the PUBACK."""
    state: dict[str, Any] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    configure_tls(client, credentials)

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        state["connack"] = reason

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, reason: ReasonCode, _p: Any) -> None:
        state["puback"] = reason

    client.on_connect = on_connect
    client.on_publish = on_publish
    try:
        client.connect(host, port, keepalive=30, clean_start=True)
    except OSError as exc:
        raise EdgewatchError(f"cannot reach the broker at {host}:{port}: {exc}") from None
    deadline = time.monotonic() + timeout_s
    try:
        while "connack" not in state:
            if time.monotonic() > deadline:
                raise EdgewatchError(f"no answer from the broker at {host}:{port}")
            client.loop(timeout=0.1)
        if state["connack"].is_failure:
            raise EdgewatchError(f"the broker refused the connection: {state['connack']}")
        client.publish(topic, payload, qos=1, retain=True)
        while "puback" not in state:
            if time.monotonic() > deadline:
                raise EdgewatchError(f"the broker did not acknowledge the message on {topic}")
            client.loop(timeout=0.1)
        if state["puback"].is_failure:
            raise EdgewatchError(
                f"the broker refused the message on {topic}: {state['puback']} (is this "
                "certificate allowed to send commands? see deploy/mosquitto/edgewatch.acl)"
            )
    finally:
        client.disconnect()
        client.loop(timeout=0.2)
