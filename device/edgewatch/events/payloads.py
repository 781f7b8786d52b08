"""The events a unit sends, version 1 (specified in ``docs/events.md`` and
``docs/schemas/*.json``).

A payload is compact JSON with sorted keys, signed as a JWS
(:mod:`edgewatch.security.jws`) whose ``typ`` is the payload's ``schema``.
Alerts and audit events carry the unit's sequence number, allocated by the
outbox when the event is queued; ``sent_at`` is stamped, and the signature
made, each time the event is handed to the broker (so an event that waited
out an outage is not mistaken for a stale replay).

Nothing here ever holds an embedding, and a face crop appears only in an
alert, only sealed to the control room's key (HPKE, RFC 9180).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from edgewatch.pipeline import TrackSummary
from edgewatch.security.keys import b64url, b64url_decode, key_id
from edgewatch.watchlist.format import HPKE_SUITE

ALERT: Final = "edgewatch.alert/1"
STATUS: Final = "edgewatch.status/2"
"""Version 2 (0.3.0) widened the watch-list refusal codes with ``accuracy_budget``."""
STATUS_V1: Final = "edgewatch.status/1"
AUDIT: Final = "edgewatch.audit/2"
"""Version 2 (0.4.0) widened the actions with ``command_refused``."""
AUDIT_V1: Final = "edgewatch.audit/1"
SCHEMAS: Final = (ALERT, STATUS, AUDIT)
SCHEMA_OF_KIND: Final = {"alert": ALERT, "status": STATUS, "audit": AUDIT}
"""The payload schema (and JWS ``typ``) this release sends on each topic kind."""
ACCEPTED_OF_KIND: Final = {
    "alert": (ALERT,),
    "status": (STATUS, STATUS_V1),
    "audit": (AUDIT, AUDIT_V1),
}
"""The schemas a receiver accepts per kind: this release's and older units' still in use."""
CROP_SUITE: Final = "HPKE-base(DHKEM-X25519-HKDF-SHA256,HKDF-SHA256,AES-256-GCM)"
AUDIT_ACTIONS: Final = (
    "started",
    "stopped",
    "watchlist_accepted",
    "watchlist_refused",
    "watchlist_expired",
    "watchlist_ended",
    "alerts_refused",
    "command_refused",
)


def timestamp(moment: float | datetime | None = None) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-22T16:30:00.123Z``."""
    if moment is None:
        value = datetime.now(UTC)
    elif isinstance(moment, datetime):
        value = moment.astimezone(UTC)
    else:
        value = datetime.fromtimestamp(moment, UTC)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def encode(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def new_event_id() -> str:
    return str(uuid.uuid4())


def crop_info(event_id: str) -> bytes:
    """HPKE ``info``: binds a sealed crop to the one alert it belongs to."""
    return f"edgewatch crop v1|{event_id}".encode()


def seal_crop(jpeg: bytes, event_id: str, control_room: X25519PublicKey) -> dict[str, str]:
    return {
        "suite": CROP_SUITE,
        "kid": key_id(control_room),
        "media_type": "image/jpeg",
        "sealed": b64url(HPKE_SUITE.encrypt(jpeg, control_room, crop_info(event_id))),
    }


def open_crop(crop: dict[str, Any], event_id: str, control_room: X25519PrivateKey) -> bytes:
    """The JPEG bytes; raises ``InvalidTag`` if it was not sealed for this key and event."""
    sealed = b64url_decode(str(crop["sealed"]), "sealed crop")
    return HPKE_SUITE.decrypt(sealed, control_room, crop_info(event_id))


def alert_body(
    *,
    device_id: str,
    sequence: int,
    event_id: str,
    captured_at: float,
    watchlist: dict[str, Any],
    subject_ref: str,
    category: str,
    score: float,
    threshold: float,
    margin: float,
    model_id: str,
    track: TrackSummary | None,
    box: tuple[int, int, int, int],
    crop: dict[str, str] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema": ALERT,
        "event_id": event_id,
        "device_id": device_id,
        "deployment_id": watchlist.get("deployment_id"),
        "sequence": sequence,
        "captured_at": timestamp(captured_at),
        "watchlist": {"id": watchlist.get("watchlist_id"), "version": watchlist.get("version")},
        "subject": {"ref": subject_ref, "category": category},
        "score": round(float(score), 4),
        "threshold": float(threshold),
        "margin": float(margin),
        "model_id": model_id,
        "track_id": None if track is None else track.track_id,
        "box": list(box),
    }
    if track is not None:
        body["track"] = {
            "first_seen": timestamp(track.first_seen),
            "frames": track.frames,
            "matching_frames": track.matching_frames,
            "best_score": round(float(track.best_score), 4),
        }
    if crop is not None:
        body["crop"] = crop
    return body


def audit_body(
    *,
    device_id: str,
    sequence: int,
    deployment_id: str | None,
    action: str,
    detail: str,
    counters: dict[str, int],
    deployment_counters: dict[str, int] | None = None,
) -> dict[str, Any]:
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    return {
        "schema": AUDIT,
        "event_id": new_event_id(),
        "device_id": device_id,
        "deployment_id": deployment_id,
        "sequence": sequence,
        "occurred_at": timestamp(),
        "action": action,
        "detail": detail,
        "counters": counters,
        "deployment_counters": deployment_counters,
    }


def status_body(
    *,
    device_id: str,
    state: str,
    software_version: str,
    started_at: str,
    watchlist: dict[str, Any],
    counters: dict[str, int],
    fps: float,
    outbox: dict[str, int],
) -> dict[str, Any]:
    return {
        "schema": STATUS,
        "event_id": new_event_id(),
        "device_id": device_id,
        "state": state,
        "software_version": software_version,
        "started_at": started_at,
        "watchlist": watchlist,
        "counters": counters,
        "frames_per_second": round(float(fps), 2),
        "outbox": outbox,
    }


def stamp(body: bytes, sent_at: str | None = None) -> bytes:
    """The queued body with ``sent_at`` set to now: the bytes that get signed."""
    payload = json.loads(body)
    payload["sent_at"] = sent_at or timestamp()
    return encode(payload)
