"""Still images (a folder or a glob pattern) delivered as frames at a fixed rate.

Useful for running the appliance over a photo set, and for tests: each image
becomes one frame, in sorted path order.
"""

from __future__ import annotations

import glob
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edgewatch.camera.base import Camera, Frame, Pacer
from edgewatch.errors import CameraError, InputError
from edgewatch.imaging import IMAGE_SUFFIXES, load_image


class ImagesCameraConfig(BaseModel):
    """Settings of the still-images backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["images"] = "images"
    source: str = Field(
        description="A folder (its image files, sorted) or a glob pattern such as 'shots/*.jpg'."
    )
    fps: float = Field(default=1.0, gt=0, description="Frames per second to assign and pace at.")
    realtime: bool = Field(default=False, description="Sleep between frames to honour fps.")
    loop: bool = Field(default=False, description="Start again after the last image, forever.")


class ImagesCamera(Camera):
    """One frame per image file."""

    name = "images"

    def __init__(self, config: ImagesCameraConfig) -> None:
        self._config = config
        self._paths: list[Path] | None = None
        self._pacer = Pacer(config.realtime)
        self._index = 0

    @property
    def nominal_fps(self) -> float | None:
        return self._config.fps

    @property
    def frame_count(self) -> int | None:
        if self._paths is None or self._config.loop:
            return None
        return len(self._paths)

    def open(self) -> None:
        self._paths = resolve_image_paths(self._config.source)
        self._index = 0

    def read(self) -> Frame | None:
        if self._paths is None:
            raise CameraError(f"{self._config.source}: images camera read before open()")
        position = self._index
        if position >= len(self._paths):
            if not self._config.loop:
                return None
            position %= len(self._paths)
        image = load_image(self._paths[position])
        stream_time = self._index / self._config.fps
        self._pacer.wait_until(stream_time)
        frame = Frame(image, self._index, stream_time, time.time())
        self._index += 1
        return frame

    def close(self) -> None:
        self._paths = None


def resolve_image_paths(source: str) -> list[Path]:
    """The sorted image files of a folder or a glob; an empty result is an error."""
    folder = Path(source)
    if folder.is_dir():
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise InputError(f"{source}: folder holds no image files ({_suffix_list()})")
        return paths
    if not glob.has_magic(source):
        if folder.exists():
            return [folder]
        raise InputError(f"{source}: no such file or folder")
    paths = sorted(Path(p) for p in glob.glob(source) if Path(p).is_file())  # noqa: PTH207
    if not paths:
        raise InputError(f"{source}: pattern matches no files")
    return paths


def _suffix_list() -> str:
    return ", ".join(sorted(IMAGE_SUFFIXES))
