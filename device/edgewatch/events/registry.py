"""The control room's registry of units and their event-signing keys.

A TOML file (documented in ``docs/events.md``)::

    [devices.cam-0001]
    signing_key = "ozB2...base64url of the raw 32-byte Ed25519 public key"
    # revoked = true      # events from a revoked unit are rejected

An event is trusted only if the unit named in its topic is listed, not
revoked, and the JWS was made with exactly that unit's key: a valid
signature by another unit's key is still rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgewatch.errors import ConfigError
from edgewatch.fileio import PUBLIC, read_toml, write_atomic
from edgewatch.security.keys import b64url, b64url_decode, key_id, raw_public_bytes
from edgewatch.transport.topics import check_identity


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    device_id: str
    signing_key: Ed25519PublicKey
    kid: str
    revoked: bool = False


class DeviceRegistry:
    """Units by id, loaded from (and saved to) the registry TOML."""

    def __init__(self, devices: dict[str, RegisteredDevice] | None = None) -> None:
        self.devices: dict[str, RegisteredDevice] = dict(devices or {})

    @classmethod
    def load(cls, path: Path) -> DeviceRegistry:
        raw = read_toml(path, "device registry")
        devices: dict[str, RegisteredDevice] = {}
        table = raw.get("devices", {})
        if not isinstance(table, dict) or set(raw) - {"devices"}:
            raise ConfigError(f"device registry {path}: expected only [devices.<id>] tables")
        for device_id, entry in table.items():
            where = f"device registry {path}: devices.{device_id}"
            check_identity(device_id)
            if not isinstance(entry, dict) or set(entry) - {"signing_key", "revoked"}:
                raise ConfigError(f"{where}: expected signing_key and optionally revoked")
            encoded = entry.get("signing_key")
            if not isinstance(encoded, str):
                raise ConfigError(f"{where}: signing_key is missing")
            raw_key = b64url_decode(encoded, f"{where}.signing_key")
            try:
                key = Ed25519PublicKey.from_public_bytes(raw_key)
            except ValueError:
                raise ConfigError(f"{where}: signing_key is not an Ed25519 public key") from None
            revoked = entry.get("revoked", False)
            if not isinstance(revoked, bool):
                raise ConfigError(f"{where}: revoked must be true or false")
            devices[device_id] = RegisteredDevice(device_id, key, key_id(key), revoked)
        return cls(devices)

    def add(self, device_id: str, signing_key: Ed25519PublicKey) -> None:
        check_identity(device_id)
        self.devices[device_id] = RegisteredDevice(device_id, signing_key, key_id(signing_key))

    def revoke(self, device_id: str) -> None:
        device = self.devices.get(device_id)
        if device is None:
            raise ConfigError(f"device {device_id} is not in the registry")
        self.devices[device_id] = RegisteredDevice(
            device.device_id, device.signing_key, device.kid, revoked=True
        )

    def save(self, path: Path) -> None:
        lines = ["# edgewatch device registry (format 1): units and their event-signing keys", ""]
        for device in sorted(self.devices.values(), key=lambda d: d.device_id):
            lines.append(f'[devices."{device.device_id}"]')
            lines.append(f'signing_key = "{b64url(raw_public_bytes(device.signing_key))}"')
            if device.revoked:
                lines.append("revoked = true")
            lines.append("")
        write_atomic(path, "\n".join(lines).encode(), PUBLIC)

    def get(self, device_id: str) -> RegisteredDevice | None:
        return self.devices.get(device_id)
