"""The Raspberry Pi camera through picamera2.

picamera2 (and libcamera under it) comes from Raspberry Pi OS's apt packages,
not PyPI, so it is imported only when this backend is opened: the rest of the
appliance runs on any machine. The venv on a unit is created with
``--system-site-packages`` so that it sees the system's picamera2.

The main stream is configured as ``RGB888``, which libcamera lays out in
memory as B, G, R: exactly the BGR order the rest of the pipeline uses.
"""

from __future__ import annotations

import importlib
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgewatch.camera.base import Camera, Frame
from edgewatch.errors import CameraError

NANOSECONDS = 1e-9


class Picamera2CameraConfig(BaseModel):
    """Settings of the Raspberry Pi camera backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["picamera2"] = "picamera2"
    camera_num: int = Field(default=0, ge=0, description="Which attached camera to open.")
    width: int = Field(default=1280, ge=64, le=4608, description="Main stream width in pixels.")
    height: int = Field(default=720, ge=64, le=2592, description="Main stream height in pixels.")
    fps: float = Field(default=15.0, gt=0, le=120, description="Requested sensor frame rate.")
    buffer_count: int = Field(
        default=4, ge=2, le=16, description="libcamera buffers; more smooths jitter, costs memory."
    )


class Picamera2Camera(Camera):
    """Frames from the Pi camera's main stream, with the sensor's timestamps."""

    name = "picamera2"

    def __init__(self, config: Picamera2CameraConfig) -> None:
        self._config = config
        self._camera: Any = None
        self._index = 0
        self._first_sensor_ns: int | None = None

    @property
    def nominal_fps(self) -> float | None:
        return self._config.fps

    def open(self) -> None:
        try:
            module = importlib.import_module("picamera2")
        except ImportError:
            raise CameraError(
                "picamera2 is not installed: on Raspberry Pi OS run 'sudo apt install "
                "python3-picamera2' and create the venv with --system-site-packages"
            ) from None
        cfg = self._config
        try:
            camera = module.Picamera2(cfg.camera_num)
        except (RuntimeError, IndexError) as exc:
            raise CameraError(f"camera {cfg.camera_num}: cannot open ({exc})") from None
        try:
            video_config = camera.create_video_configuration(
                main={"size": (cfg.width, cfg.height), "format": "RGB888"},
                controls={"FrameRate": cfg.fps},
                buffer_count=cfg.buffer_count,
            )
            camera.configure(video_config)
            camera.start()
        except (RuntimeError, ValueError) as exc:
            camera.close()
            raise CameraError(f"camera {cfg.camera_num}: cannot start ({exc})") from None
        self._camera = camera
        self._index = 0
        self._first_sensor_ns = None

    def read(self) -> Frame | None:
        if self._camera is None:
            raise CameraError("picamera2 camera read before open()")
        try:
            request = self._camera.capture_request()
        except RuntimeError as exc:
            raise CameraError(f"camera {self._config.camera_num}: capture failed ({exc})") from None
        try:
            image = request.make_array("main")
            metadata = request.get_metadata()
        finally:
            request.release()
        frame = Frame(image, self._index, self._stream_time(metadata), time.time())
        self._index += 1
        return frame

    def _stream_time(self, metadata: dict[str, Any]) -> float:
        """Seconds since the first frame, from the sensor's own timestamps when present."""
        sensor_ns = metadata.get("SensorTimestamp")
        if not isinstance(sensor_ns, int):
            return self._index / self._config.fps
        if self._first_sensor_ns is None:
            self._first_sensor_ns = sensor_ns
        return (sensor_ns - self._first_sensor_ns) * NANOSECONDS

    def close(self) -> None:
        if self._camera is not None:
            try:
                self._camera.stop()
            finally:
                self._camera.close()
                self._camera = None
