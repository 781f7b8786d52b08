"""The MQTT topic layout, in one place (documented in ``docs/events.md``).

Every device publishes under ``<prefix>/<device_id>/``: ``alert``, ``status``
and ``audit``; it reads ``<prefix>/<device_id>/command``. The broker's ACL
(see :mod:`edgewatch.transport.mosquitto`) lets a device write only below its
own id, which is the common name of its client certificate.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Final, Literal

from pydantic import AfterValidator

from edgewatch.errors import ConfigError

DEFAULT_PREFIX: Final = "edgewatch"
EventKind = Literal["alert", "status", "audit"]
EVENT_KINDS: Final[tuple[EventKind, ...]] = ("alert", "status", "audit")
COMMAND_TOPIC: Final = "command"

_IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PREFIX = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def check_identity(value: str, what: str = "device id") -> str:
    """A device or subscriber id: also a certificate common name and one topic level."""
    if not _IDENTITY.fullmatch(value):
        raise ConfigError(
            f"{what} {value!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it becomes an MQTT topic level)"
        )
    return value


def check_prefix(value: str) -> str:
    """A topic prefix: one or more levels, no wildcards, no leading or trailing '/'."""
    if not _PREFIX.fullmatch(value):
        raise ConfigError(
            f"topic prefix {value!r} is not valid: use levels of letters, digits, '.', '_' "
            "or '-' separated by '/', e.g. 'edgewatch' or 'city/edgewatch'"
        )
    return value


def event_topic(prefix: str, device_id: str, kind: EventKind) -> str:
    """``<prefix>/<device_id>/<kind>``."""
    return f"{prefix}/{device_id}/{kind}"


def command_topic(prefix: str, device_id: str) -> str:
    """Where the issuer sends a device its commands (e.g. end of deployment)."""
    return f"{prefix}/{device_id}/{COMMAND_TOPIC}"


def subscription_filter(prefix: str, kind: EventKind, share_group: str | None = None) -> str:
    """Every device's ``kind`` events, optionally as an MQTT v5 shared subscription."""
    topic = f"{prefix}/+/{kind}"
    return f"$share/{check_identity(share_group, 'share group')}/{topic}" if share_group else topic


def device_of(topic: str, prefix: str) -> tuple[str, str] | None:
    """``(device_id, kind)`` of an event topic under ``prefix``, or None if it is not one."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) != 2 or parts[1] not in EVENT_KINDS or not _IDENTITY.fullmatch(parts[0]):
        return None
    return parts[0], parts[1]


def _validated(check: Callable[[str], str]) -> Callable[[str], str]:
    """Adapt a checker for pydantic, which reports ``ValueError`` with the field's path."""

    def validate(value: str) -> str:
        try:
            return check(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    return validate


IdentityField = Annotated[str, AfterValidator(_validated(lambda v: check_identity(v, "id")))]
"""A device, deployment or watch-list id in a pydantic model."""
PrefixField = Annotated[str, AfterValidator(_validated(check_prefix))]
"""A topic prefix in a pydantic model."""
