"""The one place that maps a camera configuration to its backend.

Each backend pairs a config class (discriminated by its ``type`` field) with
the class that runs it; nothing else in the code branches on the backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from edgewatch.camera.base import Camera
from edgewatch.camera.images import ImagesCamera, ImagesCameraConfig
from edgewatch.camera.picam import Picamera2Camera, Picamera2CameraConfig
from edgewatch.camera.video import VideoCamera, VideoCameraConfig

AnyCameraConfig = Picamera2CameraConfig | VideoCameraConfig | ImagesCameraConfig

CameraConfig = Annotated[AnyCameraConfig, Field(discriminator="type")]
"""Any backend's settings; the ``type`` field picks the backend."""

CAMERA_BACKENDS: dict[type[Any], Callable[[Any], Camera]] = {
    Picamera2CameraConfig: Picamera2Camera,
    VideoCameraConfig: VideoCamera,
    ImagesCameraConfig: ImagesCamera,
}


def create_camera(config: AnyCameraConfig) -> Camera:
    """The backend for ``config`` (not yet opened)."""
    return CAMERA_BACKENDS[type(config)](config)
