"""The progress line: readable on a terminal and in logs, silent when disabled."""

from __future__ import annotations

import io

from edgewatch.progress import ProgressLine


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_stream_gets_whole_lines() -> None:
    stream = io.StringIO()
    progress = ProgressLine("frames", total=10, stream=stream)
    progress.update(3, "faces 2", force=True)
    progress.finish()
    assert stream.getvalue().startswith("frames: 3/10 (")
    assert stream.getvalue().endswith("faces 2\n")


def test_terminal_line_is_rewritten_in_place_then_ended() -> None:
    stream = FakeTerminal()
    progress = ProgressLine("frames", stream=stream)
    progress.update(1, force=True)
    progress.update(2, force=True)
    progress.finish()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")


def test_updates_are_throttled_and_can_be_disabled() -> None:
    stream = io.StringIO()
    progress = ProgressLine("frames", stream=stream)
    progress.update(1, force=True)
    progress.update(2)  # within the interval: not shown
    assert stream.getvalue().count("\n") == 1
    silent = io.StringIO()
    off = ProgressLine("frames", stream=silent, enabled=False)
    off.update(5, force=True)
    off.finish()
    assert silent.getvalue() == ""
