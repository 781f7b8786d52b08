"""Per-stage timing of the pipeline (for the summary line and the benchmarks)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

STAGES = ("decode", "detect", "landmarks", "align", "embed", "match")


@dataclass(slots=True)
class StageClock:
    """Seconds spent per stage, one sample per frame."""

    samples: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.samples[stage].append(time.perf_counter() - started)

    def medians_ms(self) -> dict[str, float]:
        return {
            stage: float(np.median(values)) * 1000.0 if values else 0.0
            for stage, values in self.samples.items()
        }

    def totals_s(self) -> dict[str, float]:
        return {stage: float(sum(values)) for stage, values in self.samples.items()}
