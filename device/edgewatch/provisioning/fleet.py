"""The back office's fleet: CA, broker files, device registry, recipient list, bundles.

One directory holds everything the back office keeps about its units
(docs/provisioning.md)::

    fleet.toml            name, broker address, topic prefix
    ca/ca.key  ca.crt     the fleet CA (ECDSA P-256; ca.key 0600, keep it offline)
    ca/revoked.json       every revoked certificate serial, with the device and reason
    broker/               what the broker host installs in /etc/mosquitto/edgewatch:
                          ca.crt server.crt server.key crl.pem edgewatch.conf edgewatch.acl
    clients/<name>/       client certificates of the control room's reader and the issuer
    issuers/*.pub         the watch-list issuers' keys every unit is told to trust
    crop.pub              the control room's crop key (optional)
    registry.toml         the subscriber's device registry (docs/events.md §8)
    recipients/<id>.pub   the issuer's recipient list: `watchlist build --recipients DIR`
    devices/<id>/         request.json, device.json, client.crt, bundle.json

Enrolling a unit signs its CSR, registers its signing key with the
subscriber and its watch-list key with the issuer, and writes the bundle the
unit installs. Revoking it undoes all three: its certificate goes on the CRL
(the broker refuses it), the registry marks it revoked (the subscriber
rejects its events) and its key leaves the recipient list (no new watch-list
is sealed to it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import BaseModel, ConfigDict, Field

from edgewatch.errors import ConfigError
from edgewatch.events.payloads import timestamp
from edgewatch.events.registry import DeviceRegistry
from edgewatch.fileio import PUBLIC, read_bytes, read_toml, write_atomic
from edgewatch.provisioning.formats import (
    BUNDLE,
    Broker,
    Bundle,
    read_request,
    signing_key_of,
    watchlist_key_of,
)
from edgewatch.security.keys import key_id, load_recipient_key, load_verify_key, public_pem
from edgewatch.transport import pki
from edgewatch.transport.mosquitto import render_acl, render_config
from edgewatch.transport.topics import IdentityField, check_identity
from edgewatch.validation import validated

BROKER_ETC = Path("/etc/mosquitto/edgewatch")
"""Where the broker host installs the files of ``broker/`` (deploy/mosquitto/edgewatch.conf)."""


class FleetSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: IdentityField
    broker: Broker
    readers: list[IdentityField] = Field(default_factory=lambda: ["control-room"])
    commanders: list[IdentityField] = Field(default_factory=lambda: ["issuer"])


@dataclass(frozen=True, slots=True)
class Enrolled:
    device_id: str
    bundle: Path
    serial: int


def _now() -> str:
    return timestamp(datetime.now(UTC))


class Fleet:
    """A fleet directory (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        settings = directory / "fleet.toml"
        if not settings.exists():
            raise ConfigError(
                f"{directory}: not a fleet directory (no fleet.toml); create one with "
                "'edgewatch fleet init'"
            )
        self.settings = validated(
            FleetSettings, read_toml(settings, "fleet settings"), f"{settings}", ConfigError
        )

    # ------------------------------------------------------------------ paths

    @property
    def ca_dir(self) -> Path:
        return self.dir / "ca"

    @property
    def broker_dir(self) -> Path:
        return self.dir / "broker"

    @property
    def registry(self) -> Path:
        return self.dir / "registry.toml"

    @property
    def recipients(self) -> Path:
        return self.dir / "recipients"

    def device_dir(self, device_id: str) -> Path:
        return self.dir / "devices" / check_identity(device_id)

    def client_dir(self, name: str) -> Path:
        return self.dir / "clients" / check_identity(name, "client name")

    @property
    def crl(self) -> Path:
        return self.broker_dir / "crl.pem"

    def ca(self) -> pki.CertifiedKey:
        return pki.CertifiedKey(
            key=pki.load_private_key(self.ca_dir / "ca.key"),
            cert=pki.load_certificate(self.ca_dir / "ca.crt"),
        )

    # --------------------------------------------------------------- creation

    @classmethod
    def create(
        cls,
        directory: Path,
        settings: FleetSettings,
        issuer_keys: list[Path],
        crop_key: Path | None,
        broker_names: list[str],
        broker_addresses: list[str],
    ) -> Fleet:
        """A new fleet: CA, broker files, reader and commander certificates, empty lists."""
        if (directory / "fleet.toml").exists():
            raise ConfigError(f"{directory}: already a fleet directory; refusing to overwrite it")
        if not issuer_keys:
            raise ConfigError("a fleet needs at least one issuer key (--issuer-key PUB)")
        issuers = [load_verify_key(path, "issuer key") for path in issuer_keys]
        crop = None if crop_key is None else load_recipient_key(crop_key, "control room crop key")
        for sub in ("ca", "broker", "clients", "issuers", "recipients", "devices"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        (directory / "ca").chmod(0o700)
        for key in issuers:
            write_atomic(directory / "issuers" / f"{key_id(key)}.pub", public_pem(key), PUBLIC)
        if crop is not None:
            write_atomic(directory / "crop.pub", public_pem(crop), PUBLIC)
        ca = pki.create_ca(f"edgewatch fleet {settings.name} CA")
        pki.write_private_key(directory / "ca" / "ca.key", ca.key)
        pki.write_certificate(directory / "ca" / "ca.crt", ca.cert)
        write_atomic(directory / "ca" / "revoked.json", b'{"revoked": []}\n', PUBLIC)
        broker = settings.broker
        # json.dumps quotes and escapes strings as TOML basic strings want them.
        fleet_toml = (
            f"name = {json.dumps(settings.name)}\n"
            f"readers = {json.dumps(settings.readers)}\n"
            f"commanders = {json.dumps(settings.commanders)}\n\n"
            f"[broker]\nhost = {json.dumps(broker.host)}\nport = {broker.port}\n"
            f"prefix = {json.dumps(broker.prefix)}\n"
        )
        write_atomic(directory / "fleet.toml", fleet_toml.encode(), PUBLIC)
        fleet = cls(directory)
        server = pki.issue(
            ca,
            broker.host,
            client=False,
            hostnames=broker_names or [broker.host],
            ip_addresses=broker_addresses,
        )
        pki.write_certificate(fleet.broker_dir / "ca.crt", ca.cert)
        pki.write_certificate(fleet.broker_dir / "server.crt", server.cert)
        pki.write_private_key(fleet.broker_dir / "server.key", server.key)
        fleet.write_crl()
        fleet._write_broker_config()
        for name in dict.fromkeys([*settings.readers, *settings.commanders]):
            fleet.issue_client(name)
        DeviceRegistry().save(fleet.registry)
        return fleet

    def _write_broker_config(self) -> None:
        s = self.settings
        acl = render_acl(s.broker.prefix, s.readers, s.commanders)
        config = render_config(
            cafile=BROKER_ETC / "ca.crt",
            certfile=BROKER_ETC / "server.crt",
            keyfile=BROKER_ETC / "server.key",
            acl_file=BROKER_ETC / "edgewatch.acl",
            persistence_location=Path("/var/lib/mosquitto"),
            port=s.broker.port,
            crlfile=BROKER_ETC / "crl.pem",
            log_file=Path("/var/log/mosquitto/mosquitto.log"),
            run_as_user="mosquitto",
        )
        write_atomic(self.broker_dir / "edgewatch.acl", acl.encode(), PUBLIC)
        write_atomic(self.broker_dir / "edgewatch.conf", config.encode(), PUBLIC)

    def issue_client(self, name: str) -> Path:
        """A client certificate for a control-room reader or a command sender."""
        directory = self.client_dir(name)
        if name in self.device_ids():
            raise ConfigError(f"{name!r} is a unit's id; a client must have a name of its own")
        directory.mkdir(parents=True, exist_ok=True)
        issued = pki.issue(self.ca(), name, client=True)
        pki.write_certificate(directory / "ca.crt", self.ca().cert)
        pki.write_certificate(directory / "client.crt", issued.cert)
        pki.write_private_key(directory / "client.key", issued.key)
        self._add_revocable(name, issued.cert.serial_number)
        return directory

    # ------------------------------------------------------------- revocation

    def _revoked(self) -> list[dict[str, Any]]:
        raw = json.loads(read_bytes(self.ca_dir / "revoked.json", "revocation list"))
        revoked: list[dict[str, Any]] = raw["revoked"]
        return revoked

    def _add_revocable(self, owner: str, serial: int) -> None:
        """Remember which serials belong to whom (ca/issued.json), so they can be revoked."""
        path = self.ca_dir / "issued.json"
        issued = json.loads(path.read_text()) if path.exists() else {}
        issued.setdefault(owner, []).append(str(serial))
        write_atomic(path, (json.dumps(issued, indent=1) + "\n").encode(), PUBLIC)

    def _serials_of(self, owner: str) -> list[int]:
        path = self.ca_dir / "issued.json"
        issued = json.loads(path.read_text()) if path.exists() else {}
        return [int(s) for s in issued.get(owner, [])]

    def _revoke_serials(self, owner: str, serials: list[int], reason: str) -> None:
        revoked = self._revoked()
        known = {int(r["serial"]) for r in revoked}
        revoked += [
            {"serial": str(s), "owner": owner, "reason": reason, "at": _now()}
            for s in serials
            if s not in known
        ]
        data = json.dumps({"revoked": revoked}, indent=1) + "\n"
        write_atomic(self.ca_dir / "revoked.json", data.encode(), PUBLIC)
        self.write_crl()

    def write_crl(self, valid_days: int = 30) -> Path:
        """A fresh CRL of every revoked serial (re-issue monthly: an expired CRL locks
        every client out of Mosquitto)."""
        serials = [int(r["serial"]) for r in self._revoked()]
        pki.write_crl(self.crl, pki.build_crl(self.ca(), serials, valid_days))
        return self.crl

    # -------------------------------------------------------------- enrolment

    def device_ids(self) -> list[str]:
        devices = self.dir / "devices"
        return sorted(p.name for p in devices.iterdir() if (p / "device.json").exists())

    def device_record(self, device_id: str) -> dict[str, Any]:
        path = self.device_dir(device_id) / "device.json"
        if not path.exists():
            raise ConfigError(f"unit {device_id!r} is not enrolled in fleet {self.settings.name}")
        record: dict[str, Any] = json.loads(path.read_text())
        return record

    def enrol(self, request_path: Path, replace: bool = False) -> Enrolled:
        """Sign the unit's CSR, register its keys, write its bundle."""
        request, csr = read_request(read_bytes(request_path, "request"), str(request_path))
        device_id = request.device_id
        if device_id in (*self.settings.readers, *self.settings.commanders):
            raise ConfigError(f"{device_id!r} is the name of a control-room client, not a unit")
        directory = self.device_dir(device_id)
        if (directory / "device.json").exists():
            record = self.device_record(device_id)
            if not replace:
                state = "revoked" if record.get("revoked_at") else "enrolled"
                raise ConfigError(
                    f"unit {device_id!r} is already {state}; give --replace to enrol a "
                    "re-flashed unit (its old certificate is revoked)"
                )
            self._revoke_serials(device_id, self._serials_of(device_id), "replaced")
        directory.mkdir(parents=True, exist_ok=True)
        signing, watchlist = signing_key_of(request), watchlist_key_of(request)
        ca = self.ca()
        cert = pki.sign_csr(ca, csr, client=True)
        self._add_revocable(device_id, cert.serial_number)
        write_atomic(directory / "request.json", read_bytes(request_path, "request"), PUBLIC)
        pki.write_certificate(directory / "client.crt", cert)
        registry = DeviceRegistry.load(self.registry)
        registry.add(device_id, signing)
        registry.save(self.registry)
        write_atomic(self.recipients / f"{device_id}.pub", public_pem(watchlist), PUBLIC)
        crop = self.dir / "crop.pub"
        bundle = Bundle.model_validate(
            {
                "schema": BUNDLE,
                "device_id": device_id,
                "fleet": self.settings.name,
                "broker": self.settings.broker.model_dump(),
                "ca_cert": ca.cert.public_bytes(Encoding.PEM).decode(),
                "client_cert": cert.public_bytes(Encoding.PEM).decode(),
                "issuer_keys": [
                    p.read_text() for p in sorted((self.dir / "issuers").glob("*.pub"))
                ],
                "crop_key": crop.read_text() if crop.exists() else None,
                "signing_kid": key_id(signing),
                "watchlist_kid": key_id(watchlist),
                "issued_at": _now(),
            }
        )
        write_atomic(directory / "bundle.json", bundle.to_json(), PUBLIC)
        record = {
            "device_id": device_id,
            "signing_kid": key_id(signing),
            "watchlist_kid": key_id(watchlist),
            "serial": str(cert.serial_number),
            "enrolled_at": _now(),
            "revoked_at": None,
        }
        write_atomic(
            directory / "device.json", (json.dumps(record, indent=1) + "\n").encode(), PUBLIC
        )
        return Enrolled(device_id, directory / "bundle.json", cert.serial_number)

    def revoke(self, device_id: str, reason: str) -> list[str]:
        """Refuse the unit everywhere: broker (CRL), subscriber (registry), issuer (recipients)."""
        record = self.device_record(device_id)
        if record.get("revoked_at"):
            raise ConfigError(f"unit {device_id!r} was already revoked at {record['revoked_at']}")
        serials = self._serials_of(device_id)
        self._revoke_serials(device_id, serials, reason)
        registry = DeviceRegistry.load(self.registry)
        registry.revoke(device_id)
        registry.save(self.registry)
        (self.recipients / f"{device_id}.pub").unlink(missing_ok=True)
        record["revoked_at"] = _now()
        record["revocation_reason"] = reason
        path = self.device_dir(device_id) / "device.json"
        write_atomic(path, (json.dumps(record, indent=1) + "\n").encode(), PUBLIC)
        return [
            f"{len(serials)} certificate(s) on the CRL {self.crl}",
            f"marked revoked in the device registry {self.registry}",
            f"removed from the recipient list {self.recipients}",
        ]
