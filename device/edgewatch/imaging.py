"""Reading still images from disk into the pipeline's frame format (BGR uint8)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgewatch.errors import InputError
from edgewatch.vision.types import ImageArray

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def load_image(path: Path) -> ImageArray:
    """Decode an image file to BGR uint8 (H, W, 3); alpha is dropped, grey expanded.

    Raises InputError naming the file and the problem: missing, empty, or not
    decodable (corrupt or unsupported format).
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise InputError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not an image file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if data.size == 0:
        raise InputError(f"{path}: empty file")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(
            f"{path}: not an image that can be decoded (corrupt or unsupported format)"
        )
    return np.ascontiguousarray(image, dtype=np.uint8)
