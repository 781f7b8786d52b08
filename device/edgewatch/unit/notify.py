"""systemd's service notification protocol (sd_notify), and its watchdog.

The unit runs as ``Type=notify`` with ``WatchdogSec=``: it says READY=1 only
once models are loaded and the camera delivers frames, and pets the watchdog
from the camera loop, so a camera that stops delivering (a hung driver, a
loose ribbon cable) gets the service restarted instead of a unit that looks
alive and sees nothing. The protocol is one datagram per message on the
socket named by ``$NOTIFY_SOCKET``; written here in a few lines rather than
adding a dependency. Outside systemd (``NOTIFY_SOCKET`` unset) every call is
a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class ServiceNotifier:
    """Sends READY, STATUS, WATCHDOG and STOPPING to systemd, if it is listening."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading '@', which stands for a NUL byte.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        watchdog_usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        mine = not watchdog_pid or watchdog_pid == str(os.getpid())
        self.watchdog_s = int(watchdog_usec) / 1e6 if watchdog_usec.isdigit() and mine else None
        self._last_pet = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, message: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(message.encode())
        except OSError as exc:
            log.warning("could not notify systemd (%s): %s", message.split("=")[0], exc)

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def pet(self) -> None:
        """Pet the watchdog, at most four times per watchdog period (cheap on every frame)."""
        if self.watchdog_s is None:
            return
        now = time.monotonic()
        if now - self._last_pet >= self.watchdog_s / 4:
            self._last_pet = now
            self.send("WATCHDOG=1")
