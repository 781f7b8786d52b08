"""A field unit's whole configuration: one TOML file, ``/etc/edgewatch/edgewatch.toml``.

It holds the appliance's tables (``[camera]``, ``[detector]``, ... as
:class:`~edgewatch.config.AppConfig` validates them), the unit's identity and
transport (``[device]``, ``[mqtt]``, ``[events]``, as
:class:`~edgewatch.events.config.PublishConfig` validates them) and
``[watchlist]``: the unit's watch-list key and the issuer keys it trusts.
Each table is validated by the one model that owns it, so the unit, the
simulator and the issuing tools cannot disagree on what a key means.
Example with every option explained: deploy/edgewatch.example.toml.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edgewatch.config import AppConfig, parse_config
from edgewatch.errors import ConfigError
from edgewatch.events.config import PUBLISH_SECTIONS, PublishConfig, parse_publish_config
from edgewatch.fileio import read_toml, resolve_path
from edgewatch.unit.layout import commands_file, watchlist_file
from edgewatch.validation import validated


class WatchlistSection(BaseModel):
    """Which watch-lists the unit accepts: sealed to its key, signed by a pinned issuer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Path = Field(description="The unit's X25519 watch-list key (watchlist.key, 0600).")
    issuer_keys: list[Path] = Field(
        min_length=1,
        description="Public keys of the issuers whose watch-lists and commands the unit obeys.",
    )


@dataclass(frozen=True, slots=True)
class UnitConfig:
    """The validated tables of a unit's configuration file."""

    path: Path
    app: AppConfig
    publish: PublishConfig
    watchlist: WatchlistSection

    @property
    def device_id(self) -> str:
        return self.publish.device.id

    @property
    def state_dir(self) -> Path:
        return self.publish.device.state_dir

    @property
    def watchlist_file(self) -> Path:
        return watchlist_file(self.state_dir)

    @property
    def commands_file(self) -> Path:
        return commands_file(self.state_dir)


def parse_unit_config(
    raw: dict[str, Any], origin: str, base: Path, root: Path | None = None
) -> UnitConfig:
    """Validate every table; paths are resolved with :func:`resolve_path`."""
    publish = parse_publish_config(raw, origin, base, root)
    if "device" not in raw or "mqtt" not in raw:
        raise ConfigError(f"{origin}: a unit needs [device] and [mqtt] tables")
    table = raw.get("watchlist")
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: a unit needs a [watchlist] table (key, issuer_keys)")
    table = dict(table)
    if isinstance(table.get("key"), str):
        table["key"] = resolve_path(table["key"], base, root)
    if isinstance(table.get("issuer_keys"), list):
        table["issuer_keys"] = [
            resolve_path(k, base, root) if isinstance(k, str) else k for k in table["issuer_keys"]
        ]
    watchlist = validated(
        WatchlistSection, table, f"{origin}: invalid configuration: watchlist", ConfigError
    )
    app_tables = {k: v for k, v in raw.items() if k not in (*PUBLISH_SECTIONS, "watchlist")}
    if isinstance(app_tables.get("model_manifests"), list):
        app_tables["model_manifests"] = [
            resolve_path(m, base, root) if isinstance(m, str) else m
            for m in app_tables["model_manifests"]
        ]
    app = parse_config(app_tables, origin)
    return UnitConfig(Path(origin), app, publish, watchlist)


def load_unit_config(path: Path, root: Path | None = None) -> UnitConfig:
    """Read and validate a unit's configuration file (below ``root`` if given)."""
    return parse_unit_config(read_toml(path, "configuration"), str(path), path.parent, root)
