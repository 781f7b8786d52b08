"""The watch-list a running unit holds, and the end of its life.

The unit always knows its watch-list state and can say it without revealing
who is listed: ``none`` (never had one), ``active``, ``refused`` (with the
refusal's reason code), ``expired`` or ``ended`` (explicit end of
deployment). Leaving ``active`` overwrites the templates in place
(:meth:`Gallery.wipe`): the matcher, which holds the same gallery, then sees
an empty list and matches nobody, without a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from edgewatch.matching.gallery import Gallery
from edgewatch.watchlist.device import LoadedWatchlist, WatchlistRefusedError

log = logging.getLogger(__name__)

State = Literal["none", "active", "refused", "expired", "ended"]


@dataclass(slots=True)
class WatchlistChange:
    """What happened, for the log and the unit's audit events."""

    state: State
    detail: str
    deployment_id: str | None = None
    """The deployment concerned (None for a refused list, whose header is not trusted)."""


class ActiveWatchlist:
    """Holds at most one loaded watch-list and retires it on expiry or command."""

    def __init__(self, model_id: str) -> None:
        self.state: State = "none"
        self.loaded: LoadedWatchlist | None = None
        self.reason: str | None = None
        self._empty = Gallery(model_id, [], [])

    @property
    def gallery(self) -> Gallery:
        """The gallery to match against: empty unless a list is active."""
        return self.loaded.gallery if self.loaded is not None else self._empty

    def accept(self, loaded: LoadedWatchlist) -> WatchlistChange:
        if self.loaded is not None:
            self._retire("ended", "replaced by a newer watch-list")
        self.loaded, self.state, self.reason = loaded, "active", None
        return WatchlistChange("active", loaded.describe(), loaded.header.deployment.id)

    def refuse(self, error: WatchlistRefusedError) -> WatchlistChange:
        """Record a refusal; an already active list stays in use."""
        log.error("%s", error)
        if self.state != "active":
            self.state, self.reason = "refused", error.reason
        return WatchlistChange("refused", str(error))

    def check_expiry(self, now: datetime | None = None) -> WatchlistChange | None:
        """Retire the list if its deployment has expired; cheap enough for every frame."""
        if self.loaded is None or (now or datetime.now(UTC)) < self.loaded.expires:
            return None
        return self._retire("expired", f"expired at {self.loaded.expires.isoformat()}")

    def end(self, detail: str = "end of deployment") -> WatchlistChange | None:
        """Explicit end of deployment: templates overwritten, matching stops."""
        if self.loaded is None:
            return None
        return self._retire("ended", detail)

    def _retire(self, state: State, detail: str) -> WatchlistChange:
        assert self.loaded is not None
        description = self.loaded.describe()
        deployment_id = self.loaded.header.deployment.id
        self.loaded.gallery.wipe()
        self.loaded = None
        self.state, self.reason = state, detail
        message = f"{description}: {detail}; templates overwritten, matching stopped"
        log.warning("%s", message)
        return WatchlistChange(state, message, deployment_id)

    def status(self) -> dict[str, Any]:
        """The public watch-list state for status events: no entry is named."""
        status: dict[str, Any] = {"state": self.state}
        if self.reason is not None:
            status["reason"] = self.reason
        if self.loaded is not None:
            h = self.loaded.header
            status.update(
                watchlist_id=h.watchlist_id,
                version=h.version,
                deployment_id=h.deployment.id,
                entries=h.entry_count,
                expires=h.deployment.expires.isoformat().replace("+00:00", "Z"),
            )
        return status
