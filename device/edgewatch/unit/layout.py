"""Where a field unit keeps its files: one table, used by provisioning, `run` and `doctor`.

The split follows the systemd unit (deploy/systemd/edgewatch.service):
``/etc/edgewatch`` is configuration, read-only to the service (root:edgewatch,
0750/0640); ``/var/lib/edgewatch`` is the service's state directory (owned
by the ``edgewatch`` user, 0700), the only place it may write, and the only
place private keys live. Every path can be taken below another root (a
mounted SD card, or the simulated unit the tests build in a temporary
directory).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

SERVICE_USER: Final = "edgewatch"
ETC: Final = Path("/etc/edgewatch")
STATE: Final = Path("/var/lib/edgewatch")


@dataclass(frozen=True, slots=True)
class UnitLayout:
    """The unit's paths below ``root`` (``/`` on the unit itself)."""

    root: Path = Path("/")

    def under(self, path: Path) -> Path:
        """``path`` (absolute, as the unit sees it) below this layout's root."""
        return self.root / path.relative_to("/")

    # -- configuration (root:edgewatch, read-only to the service)
    @property
    def config(self) -> Path:
        return self.under(ETC / "edgewatch.toml")

    @property
    def tls_dir(self) -> Path:
        return self.under(ETC / "tls")

    @property
    def issuers_dir(self) -> Path:
        return self.under(ETC / "issuers")

    @property
    def crop_key(self) -> Path:
        return self.under(ETC / "control-room-crop.pub")

    # -- state (edgewatch, 0700): keys, outbox, watch-list, provisioning
    @property
    def state_root(self) -> Path:
        return self.under(STATE)

    @property
    def keys_dir(self) -> Path:
        return self.under(STATE / "keys")

    @property
    def state_dir(self) -> Path:
        return self.under(STATE / "state")

    @property
    def provisioning_dir(self) -> Path:
        return self.under(STATE / "provisioning")

    @property
    def request(self) -> Path:
        """The provisioning request the unit writes at first boot."""
        return self.provisioning_dir / "request.json"

    @property
    def installed(self) -> Path:
        """A copy of the bundle the unit installed (its presence means provisioned)."""
        return self.provisioning_dir / "bundle.json"

    @property
    def signing_key(self) -> Path:
        return self.keys_dir / "signing.key"

    @property
    def watchlist_key(self) -> Path:
        return self.keys_dir / "watchlist.key"

    @property
    def tls_key(self) -> Path:
        return self.keys_dir / "tls.key"


def watchlist_file(state_dir: Path) -> Path:
    """The unit's current watch-list, encrypted as issued (by file or over MQTT)."""
    return state_dir / "watchlist.ewl"


def commands_file(state_dir: Path) -> Path:
    """The commands the unit has carried out (replay protection)."""
    return state_dir / "commands.json"
