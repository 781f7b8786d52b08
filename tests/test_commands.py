"""Signed commands: a unit obeys only a fresh command for itself from an issuer it pins."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgewatch.errors import ConfigError
from edgewatch.events.payloads import encode
from edgewatch.security.jws import Signer
from edgewatch.security.keys import key_id
from edgewatch.unit.commands import (
    COMMAND,
    CommandLog,
    CommandRefusedError,
    check_command,
    is_watchlist,
    sign_command,
)
from edgewatch.unit.notify import ServiceNotifier
from edgewatch.watchlist.device import AcceptedVersions
from edgewatch.watchlist.format import MAGIC
from tests.cli_support import edgewatch

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ISSUER = Ed25519PrivateKey.generate()
PINNED = {key_id(ISSUER.public_key()): ISSUER.public_key()}


def end(key: Ed25519PrivateKey = ISSUER, unit: str = "cam-1", **kwargs: object) -> bytes:
    return sign_command(key, "end_deployment", unit, "op-1", "over", now=NOW, **kwargs)  # type: ignore[arg-type]


def refusal(message: bytes, now: datetime = NOW) -> str:
    with pytest.raises(CommandRefusedError) as raised:
        check_command(message, PINNED, "cam-1", now)
    return raised.value.reason


def test_a_valid_command_is_accepted() -> None:
    signed = check_command(end(), PINNED, "cam-1", NOW + timedelta(hours=1))
    assert signed.command.command == "end_deployment"
    assert signed.command.deployment_id == "op-1"
    assert signed.issuer_kid == key_id(ISSUER.public_key())


def test_refusals_name_their_reason() -> None:
    assert refusal(end(Ed25519PrivateKey.generate())) == "unknown_issuer"
    assert refusal(end(unit="cam-2")) == "wrong_unit"
    assert refusal(end(), NOW + timedelta(days=8)) == "expired"
    assert refusal(end(), NOW - timedelta(hours=1)) == "not_yet_valid"
    assert refusal(b"not json") == "malformed"
    tampered = json.loads(end())
    tampered["signature"] = tampered["signature"][::-1]
    assert refusal(json.dumps(tampered).encode()) == "bad_signature"


def test_a_signed_payload_that_is_not_a_command_is_malformed() -> None:
    payload = {"schema": COMMAND, "command": "self_destruct", "device_id": "cam-1"}
    forged = Signer(ISSUER).sign(encode(payload), COMMAND)
    assert refusal(forged) == "malformed"
    event_typ = Signer(ISSUER).sign(encode(payload), "edgewatch.alert/1")
    assert refusal(event_typ) == "malformed"


def test_validity_is_bounded() -> None:
    with pytest.raises(ConfigError, match="up to 30 days"):
        end(valid_for=timedelta(days=31))


def test_watchlists_and_commands_are_told_apart() -> None:
    assert is_watchlist(MAGIC + b"rest")
    assert not is_watchlist(end())


def test_the_command_log_remembers_until_expiry(tmp_path: Path) -> None:
    log = CommandLog(tmp_path / "commands.json")
    command = check_command(end(), PINNED, "cam-1", NOW).command
    assert not log.seen(command)
    log.record(command, NOW)
    assert CommandLog(tmp_path / "commands.json").seen(command)
    later = check_command(end(), PINNED, "cam-1", NOW).command
    log.record(later, NOW + timedelta(days=8))  # the first has expired by then
    assert not CommandLog(tmp_path / "commands.json").seen(command)
    (tmp_path / "commands.json").write_text("{")
    with pytest.raises(ConfigError, match="corrupt"):
        CommandLog(tmp_path / "commands.json")


def test_an_ended_deployment_stays_ended(tmp_path: Path) -> None:
    versions = AcceptedVersions(tmp_path / "versions.json")
    versions.record("op-1", 3)
    versions.record_end("op-1", 3)
    again = AcceptedVersions(tmp_path / "versions.json")
    assert again.ended("op-1") == 3 and again.newest("op-1") == 3


def test_the_notifier_is_silent_outside_systemd() -> None:
    notifier = ServiceNotifier({})
    assert not notifier.enabled and notifier.watchdog_s is None
    notifier.ready("x")
    notifier.pet()
    environ = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}
    other = ServiceNotifier(environ)
    assert other.enabled and other.watchdog_s is None  # the watchdog is another process's


def test_a_file_system_error_is_one_clear_line() -> None:
    """An OSError (disk full, read-only, permission) names the file: no traceback.
    /sys refuses new entries even to root, a real refusal with no mock."""
    run = edgewatch("keys", "issuer", "--out", "/sys/edgewatch-test")
    assert run.returncode == 1
    # "Operation not permitted" here, "Read-only file system" where /sys is mounted read-only
    assert run.stderr.startswith("edgewatch: error: /sys/edgewatch-test: ")
    assert len(run.stderr.splitlines()) == 1
