"""The camera interface every backend implements.

A backend hands out :class:`Frame` objects whose pixel array belongs to the
caller: the pipeline overwrites it in place once the frame's decisions are
made, so a backend must never keep a reference to an array it has returned
(picamera2's ``make_array`` and PyAV's ``to_ndarray`` both return copies).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

from edgewatch.vision.types import ImageArray


@dataclass(slots=True, repr=False)
class Frame:
    """One captured image and when it was taken."""

    image: ImageArray
    """BGR uint8 (H, W, 3), owned by the receiver."""
    index: int
    """Position in the stream, from 0."""
    stream_time: float
    """Seconds since the start of the stream (container timestamp for video)."""
    capture_time: float
    """Unix time of capture (for live cameras) or of delivery (for replays)."""

    def __repr__(self) -> str:
        return f"Frame(index={self.index}, stream_time={self.stream_time:.3f})"


class Camera(ABC):
    """A source of frames. Use as a context manager, or call open() and close()."""

    name: str = "camera"

    @abstractmethod
    def open(self) -> None:
        """Acquire the device or file; raises CameraError or InputError with a clear reason."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or None when a finite source is exhausted."""

    @abstractmethod
    def close(self) -> None:
        """Release everything; safe to call twice."""

    @property
    def nominal_fps(self) -> float | None:
        """The source's frame rate when known (for progress and pacing)."""
        return None

    @property
    def frame_count(self) -> int | None:
        """How many frames a finite source holds, when known (for progress)."""
        return None

    def __enter__(self) -> Camera:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame


class Pacer:
    """Sleeps so that frames are delivered at their recorded times.

    Replays either run as fast as possible (benchmarks, tests) or at the
    recorded rate (a faithful simulation of what a live camera would deliver).
    """

    def __init__(self, realtime: bool, speed: float = 1.0) -> None:
        self._realtime = realtime
        self._speed = speed
        self._origin: float | None = None

    def wait_until(self, stream_time: float) -> None:
        if not self._realtime:
            return
        now = time.monotonic()
        if self._origin is None:
            self._origin = now - stream_time / self._speed
            return
        delay = self._origin + stream_time / self._speed - now
        if delay > 0:
            time.sleep(delay)
