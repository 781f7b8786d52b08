"""Test-only probes around the real models: they record the face data the
pipeline produced, so that tests can check it was overwritten and never left
the process. Nothing here replaces a model; each probe calls the real one."""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

from edgewatch.vision.detect import FaceDetector
from edgewatch.vision.embed import Embedder, EmbedderSpec
from edgewatch.vision.types import Detection, FloatArray, ImageArray


class RecordingEmbedder:
    """Remembers every chip batch and embedding array it handled (the arrays
    themselves, not copies: a test checks that the pipeline overwrote them)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.chip_batches: list[ImageArray] = []
        self.outputs: list[FloatArray] = []
        self.fail: Exception | None = None

    @property
    def spec(self) -> EmbedderSpec:
        return self.inner.spec

    def embed(self, chips: ImageArray) -> FloatArray:
        self.chip_batches.append(chips)
        if self.fail is not None:
            raise self.fail
        result = self.inner.embed(chips)
        self.outputs.append(result)
        return result

    def scratch_buffers(self) -> list[npt.NDArray[Any]]:
        return self.inner.scratch_buffers()


class RecordingDetector:
    """Remembers every detection it returned (their keypoint arrays must be overwritten)."""

    def __init__(self, inner: FaceDetector) -> None:
        self.inner = inner
        self.detections: list[Detection] = []

    def detect(self, frame: ImageArray) -> list[Detection]:
        found = self.inner.detect(frame)
        self.detections += found
        return found

    def scratch_buffers(self) -> list[npt.NDArray[Any]]:
        return self.inner.scratch_buffers()
