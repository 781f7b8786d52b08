"""Commands from the watch-list issuer to a unit, and how a unit decides to obey one.

A unit reads one MQTT topic, ``<prefix>/<device_id>/command`` (the broker's
ACL lets only the unit read it and only command senders write it). Two kinds
of message travel there, both published retained with QoS 1 so that the
latest reaches a unit that was offline when it was sent (docs/commands.md):

- **a watch-list file**, byte for byte as ``edgewatch watchlist build``
  wrote it: it is already encrypted to its recipients and signed by its
  issuer, and the unit checks it exactly as it checks a list installed by file;
- **a signed command**: a JWS (the same flattened JSON and EdDSA as events)
  with ``typ`` ``edgewatch.command/1``, signed by an issuer key the unit pins.
  Its payload names the unit, a unique ``command_id`` and a validity window,
  so a command for one unit cannot be replayed to another, nor replayed
  later, nor twice (the unit remembers the ids it carried out until they
  expire).

Any check that fails raises :class:`CommandRefusedError` with a stable
reason; the unit reports it in a signed ``command_refused`` audit event and
keeps running. Nothing here is ever ignored silently.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgewatch.errors import ConfigError, EdgewatchError
from edgewatch.events.payloads import encode, parse_timestamp, timestamp
from edgewatch.fileio import PRIVATE, read_bytes, write_atomic
from edgewatch.security.jws import Signer, VerificationError, verify
from edgewatch.transport.topics import IdentityField
from edgewatch.validation import describe
from edgewatch.watchlist.format import MAGIC

COMMAND: Final = "edgewatch.command/1"
CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far in the future a command's ``issued_at`` may be (clocks differ a little)."""
MAX_VALIDITY: Final = timedelta(days=30)
"""The longest a command may stay valid: a retained command older than this is refused."""

TIMESTAMP: Final = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
"""RFC 3339 UTC with milliseconds, as every edgewatch timestamp."""

UUID: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

CommandName = Literal["end_deployment"]
RefusalReason = Literal[
    "malformed", "unknown_issuer", "bad_signature", "wrong_unit", "not_yet_valid", "expired"
]


class CommandRefusedError(EdgewatchError):
    """The unit will not carry out this message; ``reason`` is a stable code."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(f"command refused ({reason}): {message}")
        self.reason: RefusalReason = reason


class Command(BaseModel):
    """The signed payload of a command (docs/commands.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_: Literal["edgewatch.command/1"] = Field(alias="schema")
    command_id: str = Field(pattern=UUID)
    command: CommandName
    device_id: IdentityField
    deployment_id: IdentityField
    issued_at: str = Field(pattern=TIMESTAMP)
    expires_at: str = Field(pattern=TIMESTAMP)
    reason: str = Field(max_length=500, description="Why, for the audit trail.")

    def window(self) -> tuple[datetime, datetime]:
        return parse_timestamp(self.issued_at), parse_timestamp(self.expires_at)


@dataclass(frozen=True, slots=True)
class SignedCommand:
    """A command that passed every check, and the issuer key that signed it."""

    command: Command
    issuer_kid: str


def is_watchlist(message: bytes) -> bool:
    """A watch-list file sent as issued (as opposed to a signed command)."""
    return message.startswith(MAGIC)


def sign_command(
    key: Ed25519PrivateKey,
    command: CommandName,
    device_id: str,
    deployment_id: str,
    reason: str,
    valid_for: timedelta = timedelta(days=7),
    now: datetime | None = None,
) -> bytes:
    """The issuer's side: a command for one unit, signed, ready to publish retained."""
    if not timedelta(0) < valid_for <= MAX_VALIDITY:
        raise ConfigError(f"a command may be valid for up to {MAX_VALIDITY.days} days")
    moment = now or datetime.now(UTC)
    payload = Command.model_validate(
        {
            "schema": COMMAND,
            "command_id": str(uuid.uuid4()),
            "command": command,
            "device_id": device_id,
            "deployment_id": deployment_id,
            "issued_at": timestamp(moment),
            "expires_at": timestamp(moment + valid_for),
            "reason": reason,
        }
    )
    return Signer(key).sign(encode(payload.model_dump(by_alias=True)), COMMAND)


def check_command(
    message: bytes,
    issuers: Mapping[str, Ed25519PublicKey],
    device_id: str,
    now: datetime | None = None,
) -> SignedCommand:
    """Verify a command for this unit, or raise :class:`CommandRefusedError`."""
    try:
        verified = verify(message, issuers.get, COMMAND)
    except VerificationError as exc:
        reason: RefusalReason = {
            "unknown_signer": "unknown_issuer",
            "bad_signature": "bad_signature",
        }.get(exc.reason, "malformed")  # type: ignore[assignment]
        raise CommandRefusedError(reason, str(exc)) from None
    try:
        command = Command.model_validate(json.loads(verified.payload))
        issued, expires = command.window()
    except ValidationError as exc:
        raise CommandRefusedError("malformed", describe(exc)) from None
    except (ValueError, ConfigError) as exc:
        raise CommandRefusedError("malformed", f"not a command payload: {exc}") from None
    if command.device_id != device_id:
        raise CommandRefusedError(
            "wrong_unit", f"addressed to unit {command.device_id}, this is {device_id}"
        )
    moment = now or datetime.now(UTC)
    if issued > moment + CLOCK_SKEW:
        raise CommandRefusedError(
            "not_yet_valid", f"issued at {command.issued_at}, in the future (check the clock)"
        )
    if moment >= expires or expires - issued > MAX_VALIDITY:
        raise CommandRefusedError(
            "expired", f"valid until {command.expires_at}, now is {timestamp(moment)}"
        )
    return SignedCommand(command, verified.kid)


class CommandLog:
    """The ids of commands carried out, kept until they expire (a replay is a no-op)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._done: dict[str, str] = {}
        if path.exists():
            try:
                raw: Any = json.loads(read_bytes(path, "command log"))
                self._done = {str(k): str(v) for k, v in raw["done"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ConfigError(
                    f"command log {path}: corrupt; restore it from backup (deleting it would "
                    "let a retained command run again)"
                ) from None

    def seen(self, command: Command) -> bool:
        return command.command_id in self._done

    def record(self, command: Command, now: datetime | None = None) -> None:
        moment = now or datetime.now(UTC)
        self._done = {k: v for k, v in self._done.items() if parse_timestamp(v) > moment} | {
            command.command_id: command.expires_at
        }
        data = json.dumps({"done": self._done}, indent=1, sort_keys=True) + "\n"
        write_atomic(self.path, data.encode(), PRIVATE)
