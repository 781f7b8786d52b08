"""The unit's identity and event transport settings (``[device]``, ``[mqtt]``, ``[events]``).

Relative paths are resolved against the directory of the file that names
them, so a unit's configuration can sit next to its keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edgewatch.errors import ConfigError
from edgewatch.fileio import read_toml, resolve_path
from edgewatch.transport.mosquitto import ClientCredentials
from edgewatch.transport.topics import DEFAULT_PREFIX, IdentityField, PrefixField
from edgewatch.validation import validated


class DeviceSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: IdentityField = Field(
        description="The unit's id: its certificate's common name and its topic level."
    )
    signing_key: Path = Field(description="Ed25519 event-signing key (signing.key).")
    state_dir: Path = Field(description="Writable: the outbox and watch-list versions.")


class MqttSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1)
    port: int = Field(default=8883, ge=1, le=65535)
    prefix: PrefixField = DEFAULT_PREFIX
    ca_cert: Path
    cert: Path
    key: Path
    keepalive_s: int = Field(default=30, ge=5, le=3600)

    @property
    def credentials(self) -> ClientCredentials:
        return ClientCredentials(self.ca_cert, self.cert, self.key)


class EventsSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status_interval_s: float = Field(default=30.0, gt=0, le=3600)
    crop_key: Path | None = Field(
        default=None, description="Control room's crop.pub: seal each match's face crop to it."
    )
    outbox_capacity: int = Field(default=100_000, ge=10)


class PublishConfig(BaseModel):
    """Everything a unit needs to send signed events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: DeviceSection
    mqtt: MqttSection
    events: EventsSection = Field(default_factory=EventsSection)


_PATH_FIELDS = {
    "device": ("signing_key", "state_dir"),
    "mqtt": ("ca_cert", "cert", "key"),
    "events": ("crop_key",),
}


PUBLISH_SECTIONS = tuple(_PATH_FIELDS)
"""The tables of a configuration file that this module reads."""


def parse_publish_config(
    raw: dict[str, Any], origin: str, base: Path, root: Path | None = None
) -> PublishConfig:
    """Validate the ``[device]``, ``[mqtt]`` and ``[events]`` tables of ``raw``
    (other tables are ignored); paths are resolved by :func:`resolve_path`."""
    sections = {k: v for k, v in raw.items() if k in _PATH_FIELDS}
    for section, names in _PATH_FIELDS.items():
        table = sections.get(section)
        if isinstance(table, dict):
            table = dict(table)
            for name in names:
                if isinstance(table.get(name), str):
                    table[name] = resolve_path(table[name], base, root)
            sections[section] = table
    return validated(PublishConfig, sections, f"{origin}: invalid configuration", ConfigError)


def load_publish_config(path: Path) -> PublishConfig:
    return parse_publish_config(read_toml(path, "configuration"), str(path), path.parent)
