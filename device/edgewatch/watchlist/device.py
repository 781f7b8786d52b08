"""Loading a watch-list on the device, and ending it.

A watch-list is accepted only if every check passes, in this order (the
first failure is the reason reported): the file is well formed; its issuer
key is one the device's configuration pins; the issuer's signature covers
every byte; the device is a recipient; now is within not-before..expiry; it
was issued for the device's embedder model (id and file hash); its version
is not older than one already accepted for the same deployment; the sealed
content key and the body decrypt.

The body is decrypted into a buffer this process owns (no file, no temp
file); the templates are copied into the gallery's locked memory and the
decrypted buffer is overwritten at once. A refusal raises
:class:`WatchlistRefusedError` with a reason code; the caller logs it, reports it
in a status event and keeps running without a watch-list.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edgewatch.accuracy.budget import check_watchlist
from edgewatch.errors import ConfigError, EdgewatchError, ModelError
from edgewatch.fileio import PRIVATE, read_bytes, write_atomic
from edgewatch.matching.gallery import Gallery, Subject
from edgewatch.security.keys import key_id
from edgewatch.vision.models import ModelManifest
from edgewatch.watchlist.format import (
    Container,
    Header,
    ModelRef,
    WatchlistFormatError,
    open_body,
    parse,
)

log = logging.getLogger(__name__)

RefusalReason = Literal[
    "malformed",
    "unknown_issuer",
    "bad_signature",
    "not_recipient",
    "not_yet_valid",
    "expired",
    "model_mismatch",
    "accuracy_budget",
    "rollback",
    "undecryptable",
]


class WatchlistRefusedError(EdgewatchError):
    """The device will not use this watch-list; ``reason`` is a stable code."""

    exit_code = 3

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(f"watch-list refused ({reason}): {message}")
        self.reason: RefusalReason = reason


class AcceptedVersions:
    """The newest watch-list version accepted per deployment, kept across restarts.

    Without it, an attacker holding an old, still-valid file (say, one that
    listed a person since removed) could replay it after a reboot.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._versions: dict[str, int] = {}
        self._ended: dict[str, int] = {}
        if path is not None and path.exists():
            try:
                raw = json.loads(read_bytes(path, "watch-list state"))
                self._versions = {str(k): int(v) for k, v in raw["accepted"].items()}
                self._ended = {str(k): int(v) for k, v in raw.get("ended", {}).items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ConfigError(
                    f"watch-list state {path}: corrupt; restore it from backup (deleting it "
                    "would let an older watch-list be accepted again)"
                ) from None

    def newest(self, deployment_id: str) -> int | None:
        return self._versions.get(deployment_id)

    def ended(self, deployment_id: str) -> int | None:
        """The newest version of ``deployment_id`` that an end-of-deployment retired."""
        return self._ended.get(deployment_id)

    def record(self, deployment_id: str, version: int) -> None:
        if self._versions.get(deployment_id, 0) >= version:
            return
        self._versions[deployment_id] = version
        self._save()

    def record_end(self, deployment_id: str, version: int) -> None:
        """An ended deployment's lists up to ``version`` are never accepted again."""
        if self._ended.get(deployment_id, 0) >= version:
            return
        self._ended[deployment_id] = version
        self._save()

    def _save(self) -> None:
        if self.path is not None:
            state = {"accepted": self._versions, "ended": self._ended}
            data = json.dumps(state, indent=1, sort_keys=True) + "\n"
            write_atomic(self.path, data.encode(), PRIVATE)


@dataclass(frozen=True, slots=True)
class DeviceTrust:
    """What a device needs to decide whether to accept a watch-list."""

    issuers: Mapping[str, Ed25519PublicKey]
    """Pinned issuer keys by key id."""
    device_key: X25519PrivateKey
    model: ModelRef
    """The device's embedder: id and the sha256 of its model file."""
    accepted: AcceptedVersions
    manifest: ModelManifest
    """The device's model manifest: the embedder's calibration sets the accuracy budget."""


@dataclass(slots=True)
class LoadedWatchlist:
    """A watch-list in use: its (public) header and the gallery built from it."""

    header: Header
    gallery: Gallery

    @property
    def expires(self) -> datetime:
        return self.header.deployment.expires

    def describe(self) -> str:
        h = self.header
        return (
            f"watch-list {h.watchlist_id} v{h.version} for deployment {h.deployment.id}: "
            f"{h.entry_count} entries, model {h.model.id}, valid "
            f"{_iso(h.deployment.not_before)} to {_iso(h.deployment.expires)}"
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def check_header(container: Container, trust: DeviceTrust, now: datetime) -> Header:
    """Every check that needs no decryption; returns the header they vouched for."""
    header = container.header
    issuer = trust.issuers.get(header.issuer_kid)
    if issuer is None:
        raise WatchlistRefusedError(
            "unknown_issuer",
            f"signed by issuer key {header.issuer_kid}, which this device does not trust "
            "(pin it in the configuration's watchlist.issuer_keys)",
        )
    try:
        container.verify(issuer)
    except InvalidSignature:
        raise WatchlistRefusedError(
            "bad_signature", "the issuer's signature does not match the file (altered or damaged)"
        ) from None
    own = key_id(trust.device_key.public_key())
    if header.recipient(own) is None:
        raise WatchlistRefusedError(
            "not_recipient", f"this device (watch-list key {own}) is not among its recipients"
        )
    deployment = header.deployment
    if now < deployment.not_before:
        raise WatchlistRefusedError(
            "not_yet_valid", f"valid from {_iso(deployment.not_before)}, now is {_iso(now)}"
        )
    if now >= deployment.expires:
        raise WatchlistRefusedError(
            "expired", f"expired at {_iso(deployment.expires)}, now is {_iso(now)}"
        )
    if header.model != trust.model:
        raise WatchlistRefusedError(
            "model_mismatch",
            f"issued for model {header.model.id} ({header.model.sha256[:12]}...), this device "
            f"runs {trust.model.id} ({trust.model.sha256[:12]}...); templates of different "
            "models cannot be compared",
        )
    try:
        check_watchlist(
            trust.manifest,
            header.model.id,
            header.template_count,
            header.policy.threshold,
            header.policy.max_fpir,
        )
    except (ConfigError, ModelError) as exc:
        raise WatchlistRefusedError("accuracy_budget", str(exc)) from None
    ended = trust.accepted.ended(deployment.id)
    if ended is not None and header.version <= ended:
        raise WatchlistRefusedError(
            "rollback",
            f"deployment {deployment.id} was ended at version {ended}; version "
            f"{header.version} cannot be used again (issue a newer version to resume)",
        )
    newest = trust.accepted.newest(deployment.id)
    if newest is not None and header.version < newest:
        raise WatchlistRefusedError(
            "rollback",
            f"version {header.version} is older than version {newest} already accepted for "
            f"deployment {deployment.id}",
        )
    return header


def load_watchlist(data: bytes, trust: DeviceTrust, now: datetime | None = None) -> LoadedWatchlist:
    """Check, decrypt and load a watch-list, or raise :class:`WatchlistRefusedError`."""
    moment = now or datetime.now(UTC)
    try:
        container = parse(data)
    except WatchlistFormatError as exc:
        raise WatchlistRefusedError("malformed", str(exc)) from None
    header = check_header(container, trust, moment)
    try:
        plaintext = open_body(container, trust.device_key)
    except (InvalidTag, ValueError):
        raise WatchlistRefusedError(
            "undecryptable", "the sealed key or the body does not decrypt with this device's key"
        ) from None
    except WatchlistFormatError as exc:
        raise WatchlistRefusedError("malformed", str(exc)) from None
    try:
        subjects = [Subject(e.ref, e.category) for e in plaintext.entries]
        bounds = np.cumsum([0] + [e.templates for e in plaintext.entries])
        templates = [plaintext.templates[a:b] for a, b in itertools.pairwise(bounds)]
        try:
            gallery = Gallery(header.model.id, subjects, templates)
        except ConfigError as exc:
            raise WatchlistRefusedError("malformed", str(exc)) from None
    finally:
        plaintext.wipe()
    trust.accepted.record(header.deployment.id, header.version)
    loaded = LoadedWatchlist(header, gallery)
    log.info("accepted %s", loaded.describe())
    return loaded


def read_watchlist(path: Path, trust: DeviceTrust, now: datetime | None = None) -> LoadedWatchlist:
    """:func:`load_watchlist` on a file (a missing file is a refusal too, not a crash)."""
    try:
        data = read_bytes(path, "watch-list")
    except ConfigError as exc:
        raise WatchlistRefusedError("malformed", str(exc)) from None
    return load_watchlist(data, trust, now)
