"""Synthetic match reports for the event benchmarks and delivery tests (no camera, no model)."""

from __future__ import annotations

import time

from edgewatch.pipeline import MatchReport


def match_report(index: int) -> MatchReport:
    """A synthetic match, made now (so ``capture_time`` is its creation time)."""
    return MatchReport(
        subject=f"case-{index % 7}",
        category="wanted",
        score=0.95,
        threshold=0.926,
        margin=0.012,
        frame_index=index,
        stream_time=index / 30,
        capture_time=time.time(),
        box=(10, 10, 60, 60),
        model_id="dlib-resnet-v1",
    )
