"""The LiteRT conversions of dlib's ResNet give dlib's embeddings on real faces.

The ``dlib-resnet-v1-litert-*`` models (models/convert/dlib_resnet_to_tflite.py)
are meant to replace dlib on the device, so each is loaded the way the device
loads it (manifest, hash check, ``arcface-tflite`` backend) and compared with
dlib itself on chips made by the product's own detector, landmark refinement and
alignment from real LFW faces of the parity half of the people (the int8
calibration never saw them).

Floors, from bench/dlib_litert_parity.py on 298 parity faces:
- fp32 and fp16 reproduce dlib to float rounding (1 - cosine <= 3e-7 there), so
  0.9999 leaves a wide margin and still fails on any real mistake (a wrong
  colour order, padding or normalisation costs far more than 1e-4).
- int8 measured min 0.9962, 1st percentile 0.9990, median 0.9995 there; the
  floors (each face >= 0.995, median >= 0.999) sit just under those and fail
  on a broken quantisation (a bad calibration or scale drops cosines well
  below 0.99). The faces are fixed, so the figures are deterministic per build.
No timing is asserted: bench/dlib_litert_parity.py measures speed.
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Final

import cv2
import numpy as np
import pytest

from bench.export_dlib_chips import lfw_split
from edgewatch.vision.align import align_face
from edgewatch.vision.detect import FaceDetector
from edgewatch.vision.embed import Embedder, create_embedder
from edgewatch.vision.landmarks import Landmarker
from edgewatch.vision.models import ModelManifest
from edgewatch.vision.types import FloatArray, ImageArray

PROJECT_ROOT: Final = Path(__file__).resolve().parents[1]
FACES: Final = 16
VARIANTS: Final = ("fp32", "fp16", "int8")
MIN_COSINE: Final = {"fp32": 0.9999, "fp16": 0.9999, "int8": 0.995}
MIN_MEDIAN_COSINE: Final = {"fp32": 0.9999, "fp16": 0.9999, "int8": 0.999}


def model_id(variant: str) -> str:
    return f"dlib-resnet-v1-litert-{variant}"


@pytest.fixture(scope="module")
def chips(
    faces_dir: Path, detector: FaceDetector, landmarker: Landmarker, dlib_embedder: Embedder
) -> ImageArray:
    """Chips of the largest face of FACES parity-half LFW images, as the device cuts them."""
    paths = lfw_split("parity", FACES, root=faces_dir / "lfw-devtest")
    spec = dlib_embedder.spec
    buffer = spec.chip_buffer(len(paths))
    count = 0
    for path in paths:
        frame = np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR))
        face = max(detector.detect(frame), key=lambda d: d.width * d.height, default=None)
        if face is None:
            continue
        found = landmarker.landmarks(frame, face)
        if found.presence < landmarker.min_presence:
            continue
        align_face(frame, found.refine(face), spec.template_array(), buffer[count])
        count += 1
    assert count >= FACES - 2, "the detector should find nearly every LFW face"
    return buffer[:count]


@pytest.fixture(scope="module")
def dlib_embeddings(chips: ImageArray, dlib_embedder: Embedder) -> FloatArray:
    return dlib_embedder.embed(chips)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_matches_dlib(
    variant: str, manifest: ModelManifest, chips: ImageArray, dlib_embeddings: FloatArray
) -> None:
    embedder = create_embedder(manifest, model_id(variant))
    embeddings = embedder.embed(chips)
    cosines = (embeddings.astype(np.float64) * dlib_embeddings).sum(axis=1)
    assert cosines.min() >= MIN_COSINE[variant], f"min cosine {cosines.min():.6f}"
    assert np.median(cosines) >= MIN_MEDIAN_COSINE[variant], f"median {np.median(cosines):.6f}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_uses_dlibs_chips(
    variant: str, manifest: ModelManifest, dlib_embedder: Embedder
) -> None:
    """Same network, same chips: a template or size drift would silently cost accuracy."""
    spec = create_embedder(manifest, model_id(variant)).spec
    assert spec.chip_size == dlib_embedder.spec.chip_size == 150
    assert spec.template == dlib_embedder.spec.template
    assert spec.dim == 128


def test_variants_ship_with_their_licence(manifest: ModelManifest) -> None:
    """Each file and its CC0 licence text are installed with the package."""
    config = configparser.ConfigParser()
    config.read(PROJECT_ROOT / "setup.cfg", encoding="utf-8")
    shipped = config["options.data_files"]["share/edgewatch/models"].split()
    for variant in VARIANTS:
        entry = manifest.entry(model_id(variant))
        assert entry.file is not None and entry.licence_file is not None
        assert f"models/{entry.file}" in shipped
        assert f"models/{entry.licence_file}" in shipped
        assert "CC0" in (PROJECT_ROOT / "models" / entry.licence_file).read_text(encoding="utf-8")
