"""A stand-in for Raspberry Pi's ``picamera2`` module, for machines with no Pi camera.

It is the only fake in the test suite: the camera hardware cannot exist here.
It follows the real API's shape and failure modes (see raspberrypi/picamera2,
``picamera2/picamera2.py``): configuration dicts from
``create_*_configuration``, ``configure``, ``start`` (configures "preview" when
nothing was configured, like the real one), ``capture_array``,
``capture_request`` returning a request that must be released, ``stop``,
``close`` and use as a context manager. ``RGB888`` frames are B, G, R in
memory, and every captured array is a fresh copy the caller owns.

Where the real camera would block forever (capturing before ``start``), the
fake raises ``RuntimeError`` instead so a test cannot hang.

Tests choose what the sensor "sees" by setting :attr:`Picamera2.scene`, a
callable from frame number to a BGR uint8 image of any size (it is resized).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

__all__ = ["CompletedRequest", "Picamera2"]

_VALID_STREAM_KEYS = ("format", "size", "stride", "framesize", "preserve_ar")
_CHANNELS = {"RGB888": 3, "BGR888": 3, "XRGB8888": 4, "XBGR8888": 4}
_NUM_CAMERAS = 1
_SENSOR_RESOLUTION = (4608, 2592)


def _default_scene(frame_number: int) -> np.ndarray:
    """A grey gradient that changes a little every frame."""
    ramp = np.linspace(0, 255, 256, dtype=np.uint8)
    image = np.tile(ramp, (144, 1))
    image = np.roll(image, frame_number, axis=1)
    return np.dstack([image, image, image])


class CompletedRequest:
    """One captured frame and its metadata; must be released exactly once."""

    def __init__(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        self._arrays = arrays
        self._metadata = metadata
        self._released = False

    def make_array(self, name: str) -> np.ndarray:
        self._check()
        if name not in self._arrays:
            raise KeyError(name)
        return self._arrays[name].copy()

    def get_metadata(self) -> dict[str, Any]:
        self._check()
        return dict(self._metadata)

    def release(self) -> None:
        if self._released:
            raise RuntimeError("request already released")
        self._released = True

    def _check(self) -> None:
        if self._released:
            raise RuntimeError("request used after release()")


class Picamera2:
    """The fake camera; class attributes let tests script the sensor."""

    scene: Callable[[int], np.ndarray] = staticmethod(_default_scene)
    instances: list[Picamera2] = []  # noqa: RUF012 - tests inspect what was opened

    def __init__(self, camera_num: int = 0, tuning: Any = None) -> None:
        if not 0 <= camera_num < _NUM_CAMERAS:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.camera_idx = camera_num
        self.sensor_resolution = _SENSOR_RESOLUTION
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.is_open = True
        self.frames = 0
        self._t0 = time.monotonic_ns()
        Picamera2.instances.append(self)

    # -- configuration -------------------------------------------------------------
    def _make_configuration(
        self,
        use_case: str,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 4,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
    ) -> dict[str, Any]:
        self._check_open()
        stream = {"format": "XBGR8888", "size": (640, 480)}
        stream.update(main or {})
        return {
            "use_case": use_case,
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": stream,
            "lores": lores,
            "raw": raw,
            "controls": dict(controls or {}),
            "display": display,
            "encode": encode,
        }

    def create_preview_configuration(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self._make_configuration("preview", *args, **kwargs)

    def create_video_configuration(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("buffer_count", 6)
        return self._make_configuration("video", *args, **kwargs)

    def create_still_configuration(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("buffer_count", 1)
        return self._make_configuration("still", *args, **kwargs)

    def configure(self, camera_config: dict[str, Any] | str = "preview") -> None:
        self._check_open()
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if isinstance(camera_config, str):
            camera_config = self._make_configuration(camera_config)
        main = camera_config.get("main")
        if not isinstance(main, dict):
            raise RuntimeError("main stream should be a dictionary")
        unknown = set(main) - set(_VALID_STREAM_KEYS)
        if unknown:
            raise ValueError(
                f"Bad key(s) {sorted(unknown)} in stream configuration; "
                f"valid keys are {list(_VALID_STREAM_KEYS)}"
            )
        if main["format"] not in _CHANNELS:
            raise ValueError(f"Unsupported format {main['format']!r} for this fake")
        width, height = main["size"]
        if width % 2 or height % 2 or width <= 0 or height <= 0:
            raise ValueError(f"Invalid size {main['size']!r}")
        if not 1 <= camera_config.get("buffer_count", 4) <= 32:
            raise ValueError("buffer_count must be between 1 and 32")
        self.camera_config = camera_config

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    # -- running -------------------------------------------------------------------
    def start(self, config: dict[str, Any] | str | None = None, show_preview: bool = False) -> None:
        self._check_open()
        if self.camera_config is None and config is None:
            config = "preview"
        if config is not None:
            self.configure(config)
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        if self.is_open:
            self.stop()
            self.is_open = False
            self.camera_config = None

    def __enter__(self) -> Picamera2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- capture -------------------------------------------------------------------
    def capture_request(self, wait: Any = None, signal_function: Any = None) -> CompletedRequest:
        self._check_running()
        assert self.camera_config is not None
        main = self.camera_config["main"]
        width, height = main["size"]
        scene = type(self).scene(self.frames)
        image = cv2.resize(scene, (width, height), interpolation=cv2.INTER_AREA)
        if main["format"] == "BGR888":  # libcamera's BGR888 is R, G, B in memory
            image = image[:, :, ::-1]
        if _CHANNELS[main["format"]] == 4:
            image = np.dstack([image, np.full((height, width), 255, np.uint8)])
        duration_us = int(1e6 / float(self.camera_config["controls"].get("FrameRate", 30.0)))
        metadata = {
            "SensorTimestamp": self._t0 + self.frames * duration_us * 1000,
            "FrameDuration": duration_us,
            "ExposureTime": duration_us // 2,
            "AnalogueGain": 1.0,
        }
        self.frames += 1
        return CompletedRequest({"main": np.ascontiguousarray(image)}, metadata)

    def capture_array(self, name: str = "main", wait: Any = None) -> np.ndarray:
        request = self.capture_request()
        try:
            return request.make_array(name)
        finally:
            request.release()

    def capture_metadata(self, wait: Any = None) -> dict[str, Any]:
        request = self.capture_request()
        try:
            return request.get_metadata()
        finally:
            request.release()

    def _check_open(self) -> None:
        if not self.is_open:
            raise RuntimeError("Camera is closed")

    def _check_running(self) -> None:
        self._check_open()
        if not self.started:
            raise RuntimeError(
                "Camera is not started (the real picamera2 would wait forever for a frame)"
            )
