"""A progress line on stderr for long runs (one rewritten line on a terminal,
an occasional plain line otherwise, so logs and CI output stay readable)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressLine:
    """Shows how far a run has got; never shows anything about a face."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        stream: TextIO | None = None,
        enabled: bool = True,
    ) -> None:
        self._label = label
        self._total = total
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = enabled
        self._tty = self._stream.isatty()
        self._interval = 0.25 if self._tty else 5.0
        self._started = time.monotonic()
        self._last_shown = 0.0
        self._shown_any = False

    def update(self, done: int, detail: str = "", force: bool = False) -> None:
        """Report ``done`` items so far; throttled unless ``force``."""
        if not self._enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_shown < self._interval:
            return
        self._last_shown = now
        elapsed = now - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        of_total = f"/{self._total}" if self._total else ""
        text = f"{self._label}: {done}{of_total} ({rate:.1f}/s){' ' + detail if detail else ''}"
        if self._tty:
            self._stream.write("\r\x1b[2K" + text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()
        self._shown_any = True

    def finish(self) -> None:
        """End the line so that what follows starts on a fresh one."""
        if self._enabled and self._tty and self._shown_any:
            self._stream.write("\n")
            self._stream.flush()
