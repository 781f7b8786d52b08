"""Keep this process's memory out of core dumps and away from other processes.

The appliance's memory holds camera frames, face crops and embeddings for
the few milliseconds each decision takes. Two ways it could still leave the
process: a core dump written to disk when the process crashes, and another
process of the same user attaching a debugger or reading ``/proc/<pid>/mem``.
Both are closed here, in the process itself, whatever the system's settings
(the systemd unit and ``firmware_scripts/harden-os.sh`` close them again
system-wide). See docs/privacy.md.
"""

from __future__ import annotations

import logging
import resource
import sys
from dataclasses import dataclass

from edgewatch.security.memory import c_library

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


@dataclass(frozen=True, slots=True)
class ProcessProtection:
    """What :func:`protect_process` achieved (reported by status checks, never fatal)."""

    core_dumps_off: bool
    """RLIMIT_CORE is 0: the kernel writes no core file for this process."""
    not_dumpable: bool
    """Linux ``PR_SET_DUMPABLE`` 0: no core dump via a pipe handler either, and no
    same-user ptrace or ``/proc/<pid>/mem`` access."""


def _prctl(option: int, argument: int = 0) -> int | None:
    if not sys.platform.startswith("linux"):
        return None
    result: int = c_library().prctl(option, argument, 0, 0, 0)
    return None if result < 0 else result


def protect_process() -> ProcessProtection:
    """Turn core dumps off and make the process undumpable; idempotent.

    Called first by every command that handles face data (the appliance,
    watch-list issuing), before any image is read.
    """
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError) as exc:
        log.warning("could not turn core dumps off: %s", exc)
    _prctl(PR_SET_DUMPABLE, 0)
    protection = process_protection()
    if not (protection.core_dumps_off and protection.not_dumpable):
        log.warning("process memory protection incomplete: %s", protection)
    return protection


def process_protection() -> ProcessProtection:
    """The process's current state, as :func:`protect_process` leaves it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    return ProcessProtection(
        core_dumps_off=soft == 0 and hard == 0, not_dumpable=_prctl(PR_GET_DUMPABLE) == 0
    )
