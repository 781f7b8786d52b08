"""Shared fixtures: the ../shared data set, the model manifests.

Tests that need ``../shared`` fail (never skip) when it is missing: a green
run must mean the real models ran on the real faces.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.hamilton_cast import REFERENCE_PHOTOS
from edgewatch.config import DEFAULT_EMBEDDER
from edgewatch.vision.detect import FaceDetector, create_detector
from edgewatch.vision.embed import Embedder, create_embedder
from edgewatch.vision.landmarks import Landmarker, create_landmarker
from edgewatch.vision.models import ModelManifest
from tests.cli_support import DEPLOYMENT, Run, edgewatch, entries_csv, hamilton

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("EDGEWATCH_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
RESEARCH_MANIFEST = PROJECT_ROOT / "bench" / "research_models.toml"

pytest_plugins = ["tests.broker"]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder with faces, videos and peer models."""
    if not (SHARED_DIR / "data").is_dir():
        pytest.fail(
            f"{SHARED_DIR}/data not found: these tests need the shared face and video data "
            "(set EDGEWATCH_SHARED_DIR to its location)"
        )
    return SHARED_DIR


@pytest.fixture(scope="session")
def faces_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "faces"


@pytest.fixture(scope="session")
def videos_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "video"


@pytest.fixture(scope="session")
def manifest() -> ModelManifest:
    """The shipped manifest."""
    return ModelManifest.default()


@pytest.fixture(scope="session")
def research_manifest(shared_dir: Path) -> ModelManifest:
    """Shipped models plus the research-only ones from ../shared (tests and benchmarks only)."""
    combined = ModelManifest.default()
    combined.extend(RESEARCH_MANIFEST)
    return combined


@pytest.fixture(scope="session")
def detector(manifest: ModelManifest) -> FaceDetector:
    """The product's default detector (BlazeFace full-range, tiled)."""
    return create_detector(manifest, "blazeface-full-range")


@pytest.fixture(scope="session")
def landmarker(manifest: ModelManifest) -> Landmarker:
    """The product's landmark refiner and presence gate (FaceMesh)."""
    return create_landmarker(manifest, "facemesh-v1")


@pytest.fixture(scope="session")
def dlib_embedder(manifest: ModelManifest) -> Embedder:
    """dlib's own ResNet through dlib: the reference the LiteRT conversion must reproduce."""
    return create_embedder(manifest, "dlib-resnet-v1")


@pytest.fixture(scope="session")
def default_embedder(manifest: ModelManifest) -> Embedder:
    """The product's default, licence-clean embedder (dlib's ResNet on LiteRT)."""
    return create_embedder(manifest, DEFAULT_EMBEDDER)


@pytest.fixture(scope="session")
def default_run(faces_dir: Path, videos_dir: Path) -> Run:
    """The hamilton clip with the shipped, licence-clean configuration (dlib embedder),
    enrolled with --enrol; run once and compared with by several modules."""
    return hamilton(faces_dir, videos_dir)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An issuer and two units' keys, made by the real command."""
    root = tmp_path_factory.mktemp("keys")
    for role, folder in (("issuer", "issuer"), ("device", "unit"), ("device", "other")):
        run = edgewatch("keys", role, "--out", str(root / folder))
        assert run.returncode == 0, run.stderr
    return root


@pytest.fixture(scope="session")
def watchlist(keys: Path, faces_dir: Path) -> Path:
    """The hamilton cast (every photo in examples/) issued to the ``unit`` keys."""
    out = keys / "cast.ewl"
    run = edgewatch(
        "watchlist", "build", "--deployment", str(DEPLOYMENT),
        "--entries", str(entries_csv(keys, faces_dir / "examples")),
        "--issuer-key", str(keys / "issuer" / "issuer.key"),
        "--recipient", str(keys / "unit" / "watchlist.pub"),
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count(" ok") == sum(len(f) for f in REFERENCE_PHOTOS.values())
    return out
