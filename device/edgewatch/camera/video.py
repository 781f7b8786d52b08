"""Replays a recorded video file (mp4, mkv, avi, ...) as if it were a camera.

PyAV decodes the file, so frame timestamps come from the container (not from
an assumed constant rate), and decoding errors carry FFmpeg's reason.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import av
import av.error
from pydantic import BaseModel, ConfigDict, Field

from edgewatch.camera.base import Camera, Frame, Pacer
from edgewatch.errors import CameraError, InputError


class VideoCameraConfig(BaseModel):
    """Settings of the recorded-video backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["video"] = "video"
    path: Path = Field(description="The video file to replay.")
    realtime: bool = Field(
        default=False,
        description="Deliver frames at their recorded times (true) or as fast as possible.",
    )
    speed: float = Field(default=1.0, gt=0, description="Playback speed factor when realtime.")
    loop: bool = Field(default=False, description="Start again at the end, forever.")


class VideoCamera(Camera):
    """Frames of a video file, BGR, with container timestamps."""

    name = "video"

    def __init__(self, config: VideoCameraConfig) -> None:
        self._config = config
        self._container: Any = None
        self._frames: Any = None
        self._pacer = Pacer(config.realtime, config.speed)
        self._index = 0
        self._loop_offset = 0.0
        self._first_pts: float | None = None
        self._last_time = 0.0
        self._frame_period = 0.0
        self._fps: float | None = None
        self._count: int | None = None

    @property
    def nominal_fps(self) -> float | None:
        return self._fps

    @property
    def frame_count(self) -> int | None:
        return None if self._config.loop else self._count

    def open(self) -> None:
        path = self._config.path
        if not path.exists():
            raise InputError(f"{path}: video file not found")
        if not path.is_file():
            raise InputError(f"{path}: not a file")
        try:
            container = av.open(str(path), mode="r")
        except av.error.FFmpegError as exc:
            raise InputError(f"{path}: cannot open as video ({_reason(exc)})") from None
        if not container.streams.video:
            container.close()
            raise InputError(f"{path}: contains no video stream")
        if _is_still_image(container.format.name):
            container.close()
            raise InputError(f"{path}: is a still image, not a video (use the images camera)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        self._fps = float(rate) if rate else None
        self._frame_period = 1.0 / self._fps if self._fps else 0.0
        self._count = int(stream.frames) or None
        self._container = container
        self._frames = container.decode(stream)

    def read(self) -> Frame | None:
        if self._container is None:
            raise CameraError(f"{self._config.path}: video camera read before open()")
        decoded = self._next_decoded()
        if decoded is None:
            return None
        image, pts_seconds = decoded
        if self._first_pts is None:
            self._first_pts = pts_seconds
        stream_time = self._loop_offset + pts_seconds - self._first_pts
        self._last_time = stream_time
        self._pacer.wait_until(stream_time)
        frame = Frame(image, self._index, stream_time, time.time())
        self._index += 1
        return frame

    def _next_decoded(self) -> tuple[Any, float] | None:
        for attempt in range(2):
            try:
                video_frame = next(self._frames)
            except StopIteration:
                if not self._config.loop or attempt == 1 or self._index == 0:
                    return None
                self._rewind()
                continue
            except av.error.FFmpegError as exc:
                raise InputError(
                    f"{self._config.path}: corrupt video data after frame {self._index} "
                    f"({_reason(exc)})"
                ) from None
            seconds = (
                float(video_frame.time)
                if video_frame.time is not None
                else (self._index * self._frame_period)
            )
            return video_frame.to_ndarray(format="bgr24"), seconds
        return None

    def _rewind(self) -> None:
        """Seek back to the start; timestamps keep increasing across loops."""
        self._loop_offset = self._last_time + self._frame_period
        self._container.seek(0)
        self._frames = self._container.decode(self._container.streams.video[0])

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._frames = None


def _is_still_image(format_name: str) -> bool:
    """FFmpeg's demuxers for single images (image2, png_pipe, jpeg_pipe, ...)."""
    return format_name == "image2" or format_name.endswith("_pipe")


def _reason(exc: av.error.FFmpegError) -> str:
    """FFmpeg's own wording, without the file name PyAV appends (we lead with it)."""
    return str(getattr(exc, "strerror", None) or exc)
