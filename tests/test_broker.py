"""The broker side of the transport, against the real mosquitto binary and real TLS.

Besides checking our configuration, several tests pin down how Mosquitto 2.0
actually behaves (SUBSCRIBE not checked by the ACL file, share groups,
revocation on reload, persistence across restarts), because the deployment
notes in ``deploy/mosquitto/`` rely on it.
"""

from __future__ import annotations

import re
import socket
import ssl
import stat
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from edgewatch.errors import ConfigError, EdgewatchError
from edgewatch.transport import pki
from edgewatch.transport.mosquitto import (
    ClientCredentials,
    LocalBroker,
    acl_rules,
    config_options,
    find_mosquitto,
    render_acl,
    render_config,
    tls_client_context,
)
from tests.broker import BrokerFactory, Probe

MakeProbe = Callable[..., Probe]
DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"
NOT_AUTHORIZED = 135
NO_SUBSCRIBERS = 16


def connected(make: MakeProbe, broker: LocalBroker, name: str, **kwargs: object) -> Probe:
    """A probe for identity ``name`` with a fresh certificate, connected."""
    probe = make(broker, name, broker.issue_client(name), **kwargs)
    assert probe.connect(), f"{name} could not connect:\n{broker.log_tail()}"
    return probe


def payloads(messages: list[mqtt.MQTTMessage]) -> list[bytes]:
    return [bytes(message.payload) for message in messages]


# ---------------------------------------------------------------- mutual TLS


def test_device_alert_reaches_reader(broker: LocalBroker, probes: MakeProbe) -> None:
    reader = connected(probes, broker, "control-room")
    assert reader.subscribe("edgewatch/+/alert").value == 1  # granted QoS 1
    device = connected(probes, broker, "cam-a")

    assert device.publish("edgewatch/cam-a/alert", b"match").value == 0

    (message,) = reader.receive(1)
    assert (message.topic, message.payload, message.qos) == ("edgewatch/cam-a/alert", b"match", 1)


def test_client_without_certificate_is_refused(broker: LocalBroker, probes: MakeProbe) -> None:
    probe = probes(broker, "anonymous", None)
    # Trusts the broker, presents no certificate of its own.
    probe.client.tls_set_context(ssl.create_default_context(cafile=str(broker.ca_cert_path)))
    assert not probe.connect()
    assert "peer did not return a certificate" in broker.log_tail()


def test_plain_mqtt_is_refused(broker: LocalBroker, probes: MakeProbe) -> None:
    assert not probes(broker, "plaintext", None).connect()


def test_certificate_from_another_ca_is_refused(
    broker: LocalBroker, probes: MakeProbe, tmp_path: Path
) -> None:
    rogue_ca = pki.create_ca("rogue CA")
    rogue = pki.issue(rogue_ca, "cam-a", client=True)
    creds = ClientCredentials(
        ca_cert=broker.ca_cert_path, cert=tmp_path / "rogue.crt", key=tmp_path / "rogue.key"
    )
    pki.write_certificate(creds.cert, rogue.cert)
    pki.write_private_key(creds.key, rogue.key)

    assert not probes(broker, "cam-a", creds).connect()


def test_client_refuses_a_broker_it_does_not_trust(
    broker: LocalBroker, probes: MakeProbe, tmp_path: Path
) -> None:
    other_ca = pki.create_ca("other CA")
    pki.write_certificate(tmp_path / "other-ca.crt", other_ca.cert)
    creds = broker.issue_client("cam-a")
    mistrusting = ClientCredentials(
        ca_cert=tmp_path / "other-ca.crt", cert=creds.cert, key=creds.key
    )

    assert not probes(broker, "cam-a", mistrusting).connect()


# ------------------------------------------------------------------------ ACL


def test_device_cannot_publish_as_another_device(broker: LocalBroker, probes: MakeProbe) -> None:
    reader = connected(probes, broker, "control-room")
    reader.subscribe("edgewatch/+/alert")
    device = connected(probes, broker, "cam-a")

    # MQTT v5 tells the publisher: PUBACK reason code 135, "Not authorized".
    assert device.publish("edgewatch/cam-b/alert", b"spoofed").value == NOT_AUTHORIZED
    # A legitimate message published after it arrives, with nothing before it.
    assert device.publish("edgewatch/cam-a/alert", b"genuine").value == 0
    assert payloads(reader.receive(1)) == [b"genuine"]
    reader.sync()
    assert reader.pending() == []


def test_device_cannot_write_outside_its_event_topics(
    broker: LocalBroker, probes: MakeProbe
) -> None:
    device = connected(probes, broker, "cam-a")
    for topic in ("edgewatch/cam-a/command", "edgewatch/cam-a/other", "elsewhere", "edgewatch"):
        assert device.publish(topic, b"x").value == NOT_AUTHORIZED, topic
    for kind in ("alert", "status", "audit"):
        # Accepted; with nobody subscribed the code is 16, "No matching subscribers".
        assert device.publish(f"edgewatch/cam-a/{kind}", b"x").value == NO_SUBSCRIBERS, kind


def test_device_cannot_read_other_devices(broker: LocalBroker, probes: MakeProbe) -> None:
    reader = connected(probes, broker, "control-room")
    reader.subscribe("edgewatch/#")
    snoop = connected(probes, broker, "cam-b")
    # Mosquitto 2.0's ACL file does not check SUBSCRIBE: every filter is granted ...
    for topic in ("edgewatch/+/alert", "edgewatch/cam-a/#", "$share/g/edgewatch/cam-a/alert"):
        assert snoop.subscribe(topic).value == 1, topic
    device = connected(probes, broker, "cam-a")

    for kind in ("alert", "status", "audit"):
        assert device.publish(f"edgewatch/cam-a/{kind}", kind).value == 0
    assert len(reader.receive(3)) == 3

    # ... but nothing is delivered on it.
    snoop.sync()
    assert snoop.pending() == []


def test_devices_receive_only_their_own_commands(
    broker_factory: BrokerFactory, probes: MakeProbe
) -> None:
    broker = broker_factory(readers=("control-room",), commanders=("issuer",))
    cam_a = connected(probes, broker, "cam-a")
    cam_b = connected(probes, broker, "cam-b")
    cam_a.subscribe("edgewatch/+/command")
    cam_b.subscribe("edgewatch/cam-b/command")
    issuer = connected(probes, broker, "issuer")
    reader = connected(probes, broker, "control-room")

    assert issuer.publish("edgewatch/cam-b/command", b"stop").value == 0
    assert issuer.publish("edgewatch/cam-a/command", b"status").value == 0
    assert reader.publish("edgewatch/cam-a/command", b"forged").value == NOT_AUTHORIZED

    assert payloads(cam_b.receive(1)) == [b"stop"]
    assert payloads(cam_a.receive(1)) == [b"status"]
    cam_a.sync()
    assert cam_a.pending() == []


def test_reader_cannot_publish(broker: LocalBroker, probes: MakeProbe) -> None:
    reader = connected(probes, broker, "control-room")
    # Pattern rules apply to readers too; the reader's deny rule closes that door.
    for kind in ("alert", "status", "audit"):
        topic = f"edgewatch/control-room/{kind}"
        assert reader.publish(topic, b"x").value == NOT_AUTHORIZED, topic
    assert reader.publish("edgewatch/cam-a/alert", b"x").value == NOT_AUTHORIZED


def test_client_id_is_the_certificate_identity(broker: LocalBroker, probes: MakeProbe) -> None:
    reader = connected(probes, broker, "control-room", clean_start=False, session_expiry=600)
    reader.subscribe("edgewatch/+/alert")
    # cam-b claims the reader's client id: without use_username_as_clientid it would
    # disconnect the reader and take over its session (and lose its queued alerts).
    intruder = probes(
        broker, "control-room", broker.issue_client("cam-b"), clean_start=False, session_expiry=600
    )
    assert intruder.connect()
    assert not intruder.session_present

    device = connected(probes, broker, "cam-a")
    device.publish("edgewatch/cam-a/alert", b"still here")
    assert payloads(reader.receive(1)) == [b"still here"]
    assert reader.disconnects == 0
    intruder.sync()
    assert intruder.pending() == []


# -------------------------------------------------------- shared subscriptions


def test_shared_subscription_splits_messages_between_readers(
    broker_factory: BrokerFactory, probes: MakeProbe
) -> None:
    # Each reader needs its own identity: the CN is also the client id.
    broker = broker_factory(readers=("control-room", "control-room-2"))
    readers = [connected(probes, broker, name) for name in ("control-room", "control-room-2")]
    for reader in readers:
        assert reader.subscribe("$share/g/edgewatch/+/alert").value == 1
    device = connected(probes, broker, "cam-a")

    sent = [f"alert {i}".encode() for i in range(10)]
    for payload in sent:
        # Mosquitto hands the message to a subscriber before it sends the PUBACK ...
        assert device.publish("edgewatch/cam-a/alert", payload).value == 0
    for reader in readers:
        reader.sync()  # ... so after this round trip each reader holds its share.
    got = [payloads(reader.pending()) for reader in readers]

    assert all(got), f"one reader got nothing: {got}"
    assert sorted(got[0] + got[1]) == sorted(sent)


def test_share_group_member_without_read_access_absorbs_messages(
    broker: LocalBroker, probes: MakeProbe
) -> None:
    """Why share group names must stay out of device configuration (Mosquitto 2.0)."""
    reader = connected(probes, broker, "control-room")
    reader.subscribe("$share/g/edgewatch/+/alert")
    intruder = connected(probes, broker, "cam-b")
    intruder.subscribe("$share/g/edgewatch/+/alert")  # granted: SUBSCRIBE is not checked
    device = connected(probes, broker, "cam-a")

    for i in range(6):
        assert device.publish("edgewatch/cam-a/alert", f"{i}").value == 0
    reader.sync()
    intruder.sync()

    delivered = reader.pending()
    assert intruder.pending() == []
    assert 0 < len(delivered) < 6, "round robin gave the intruder none, or the reader all"


# ------------------------------------------------------- outages, revocation


def test_persistent_session_survives_broker_restart(broker: LocalBroker, probes: MakeProbe) -> None:
    reader_creds = broker.issue_client("control-room")
    reader = probes(broker, "control-room", reader_creds, clean_start=False, session_expiry=3600)
    assert reader.connect()
    reader.subscribe("edgewatch/+/alert")
    reader.close()  # a clean DISCONNECT keeps the session for its expiry interval
    device_creds = broker.issue_client("cam-a")
    device = probes(broker, "cam-a", device_creds)
    assert device.connect()
    for i in range(3):
        assert device.publish("edgewatch/cam-a/alert", f"before {i}").value == 0
    device.close()

    broker.stop()  # SIGTERM: mosquitto writes its persistence file
    broker.start()  # same port, same data directory

    device = probes(broker, "cam-a", device_creds)
    assert device.connect()
    for i in range(2):
        # 0, not 16 "No matching subscribers": the offline reader's subscription is back.
        assert device.publish("edgewatch/cam-a/alert", f"after {i}").value == 0

    back = probes(broker, "control-room", reader_creds, clean_start=False, session_expiry=3600)
    assert back.connect()
    assert back.session_present
    expected = [b"before 0", b"before 1", b"before 2", b"after 0", b"after 1"]
    assert payloads(back.receive(5)) == expected


def test_revoked_certificate_is_refused(broker: LocalBroker, probes: MakeProbe) -> None:
    device_creds = broker.issue_client("cam-a")
    device = probes(broker, "cam-a", device_creds)
    assert device.connect()

    broker.revoke("cam-a")  # rewrites the CRL and restarts the broker

    assert device.wait_disconnected()  # the restart dropped the existing connection
    assert not probes(broker, "cam-a", device_creds).connect()
    assert "certificate verify failed" in broker.log_tail()  # mosquitto logs no reason
    # Other identities are unaffected.
    other = connected(probes, broker, "cam-b")
    assert not other.publish("edgewatch/cam-b/alert", b"ok").is_failure


def test_reload_refuses_revoked_certificate_only_on_new_connections(
    broker: LocalBroker, probes: MakeProbe
) -> None:
    device_creds = broker.issue_client("cam-a")
    device = probes(broker, "cam-a", device_creds)
    assert device.connect()

    broker.revoke("cam-a", restart=False)  # SIGHUP: the CRL is re-read

    assert not probes(broker, "cam-a", device_creds).connect()
    # The connection made before the reload is still up.
    assert not device.publish("edgewatch/cam-a/status", b"still connected").is_failure
    assert device.disconnects == 0


def test_broker_start_failure_reports_the_log(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = LocalBroker(tmp_path / "busy", port=port)
        with pytest.raises(EdgewatchError, match="Address already in use"):
            broker.start()
    assert not broker.running


def test_missing_mosquitto_binary_is_explained(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EdgewatchError, match="install the Debian package 'mosquitto'"):
        find_mosquitto(extra_dirs=())


# ----------------------------------------------------------------------- PKI


def test_ca_has_ca_extensions() -> None:
    ca = pki.create_ca("edgewatch test CA")
    constraints = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    ca.cert.verify_directly_issued_by(ca.cert)


def test_client_and_server_certificates() -> None:
    ca = pki.create_ca("edgewatch test CA")
    client = pki.issue(ca, "cam-a", client=True).cert
    server = pki.issue(
        ca, "broker", client=False, hostnames=["broker.local"], ip_addresses=["10.0.0.2"]
    ).cert
    client.verify_directly_issued_by(ca.cert)
    server.verify_directly_issued_by(ca.cert)

    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.local"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.2"]
    aki = client.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert client.serial_number != server.serial_number


def test_csr_with_bad_signature_is_refused() -> None:
    ca = pki.create_ca("edgewatch test CA")
    der = bytearray(
        pki.create_csr(pki.create_key(), "cam-a").public_bytes(serialization.Encoding.DER)
    )
    der[-5] ^= 0xFF  # inside the signature's last integer: still parses, no longer verifies
    tampered = x509.load_der_x509_csr(bytes(der))
    assert not tampered.is_signature_valid

    with pytest.raises(ConfigError, match="invalid signature"):
        pki.sign_csr(ca, tampered, client=True)


@pytest.mark.parametrize("name", ["cam a", "cam/a", "+", "#", "cam+a", "-cam", "$SYS", "é"])
def test_client_common_name_must_be_an_identity(name: str) -> None:
    ca = pki.create_ca("edgewatch test CA")
    with pytest.raises(ConfigError, match="client certificate common name"):
        pki.sign_csr(ca, pki.create_csr(pki.create_key(), name), client=True)
    # The same name is fine for a server (its identity is in the subjectAltName).
    pki.sign_csr(ca, pki.create_csr(pki.create_key(), name), client=False, hostnames=["a"])


def test_csr_needs_exactly_one_common_name() -> None:
    ca = pki.create_ca("edgewatch test CA")
    with pytest.raises(ConfigError, match="1-64 characters"):
        pki.create_csr(pki.create_key(), "")
    no_cn = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(pki.create_key(), hashes.SHA256())
    )
    with pytest.raises(ConfigError, match="exactly one common name"):
        pki.sign_csr(ca, no_cn, client=True)


def test_server_certificate_needs_a_name() -> None:
    ca = pki.create_ca("edgewatch test CA")
    with pytest.raises(ConfigError, match="host name or IP address"):
        pki.issue(ca, "broker", client=False)
    with pytest.raises(ConfigError, match="not an IP address"):
        pki.issue(ca, "broker", client=False, ip_addresses=["broker.local"])


def test_private_key_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    key = pki.create_key()
    pki.write_private_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["device.key"]  # no temporary file left
    assert pki.load_private_key(path).private_numbers() == key.private_numbers()

    pki.write_private_key(path, pki.create_key())  # replacing keeps the mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_pem_loading_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=re.escape(f"{missing} does not exist")):
        pki.load_certificate(missing)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a PEM file\n")
    with pytest.raises(ConfigError, match=re.escape(f"{garbage} is not a PEM certificate")):
        pki.load_certificate(garbage)
    with pytest.raises(ConfigError, match=re.escape(f"{garbage} is not a PEM private key")):
        pki.load_private_key(garbage)
    cert_path = tmp_path / "cert.pem"
    pki.write_certificate(cert_path, pki.create_ca("x").cert)
    with pytest.raises(ConfigError, match="not a PEM private key"):
        pki.load_private_key(cert_path)
    with pytest.raises(ConfigError, match="does not exist"):
        pki.write_certificate(tmp_path / "no-dir" / "cert.pem", pki.create_ca("x").cert)


def test_crl_lists_revoked_serials(tmp_path: Path) -> None:
    ca = pki.create_ca("edgewatch test CA")
    revoked = pki.issue(ca, "cam-a", client=True).cert
    kept = pki.issue(ca, "cam-b", client=True).cert
    pki.write_crl(tmp_path / "crl.pem", pki.build_crl(ca, [revoked.serial_number]))

    crl = x509.load_pem_x509_crl((tmp_path / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.key.public_key())
    assert crl.get_revoked_certificate_by_serial_number(revoked.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(kept.serial_number) is None


def test_credentials_errors_name_the_file(tmp_path: Path) -> None:
    ca = pki.create_ca("edgewatch test CA")
    pki.write_certificate(tmp_path / "ca.crt", ca.cert)
    issued = pki.issue(ca, "cam-a", client=True)
    pki.write_certificate(tmp_path / "cam-a.crt", issued.cert)
    pki.write_private_key(tmp_path / "other.key", pki.create_key())

    creds = ClientCredentials(tmp_path / "ca.crt", tmp_path / "cam-a.crt", tmp_path / "cam-a.key")
    with pytest.raises(ConfigError, match=r"cam-a\.key does not exist"):
        tls_client_context(creds)
    mismatched = ClientCredentials(creds.ca_cert, creds.cert, tmp_path / "other.key")
    with pytest.raises(ConfigError, match="does not belong to the certificate"):
        tls_client_context(mismatched)


# ------------------------------------------------- rendered vs deployed files


def test_deployed_acl_matches_renderer() -> None:
    deployed = (DEPLOY / "edgewatch.acl").read_text()
    assert acl_rules(deployed) == acl_rules(render_acl("edgewatch", readers=["control-room"]))


def test_deployed_config_matches_renderer() -> None:
    etc = Path("/etc/mosquitto/edgewatch")
    rendered = render_config(
        cafile=etc / "ca.crt",
        certfile=etc / "server.crt",
        keyfile=etc / "server.key",
        acl_file=etc / "edgewatch.acl",
        persistence_location=Path("/var/lib/mosquitto"),
        crlfile=etc / "crl.pem",
        log_file=Path("/var/log/mosquitto/mosquitto.log"),
        run_as_user="mosquitto",
    )
    assert config_options((DEPLOY / "edgewatch.conf").read_text()) == config_options(rendered)


def test_acl_rejects_bad_names() -> None:
    with pytest.raises(ConfigError, match="reader identity"):
        render_acl("edgewatch", readers=["control room"])
    with pytest.raises(ConfigError, match="topic prefix"):
        render_acl("edgewatch/#", readers=["control-room"])
    with pytest.raises(ConfigError, match="listed twice"):
        render_acl("edgewatch", readers=["a", "a"])
