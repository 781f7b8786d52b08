"""Embedders: the registry, output contract, and real verification on LFW pairs.

The LFW checks run the product's path (BlazeFace keypoints, our alignment) on a
balanced subset of pairsDevTest, so a broken template, colour order or
normalisation shows up as same-person scores no longer above
different-person scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import dlib
import face_recognition_models
import numpy as np
import pytest

from edgewatch.errors import ConfigError, ModelError
from edgewatch.vision.align import align_face
from edgewatch.vision.detect import create_detector
from edgewatch.vision.embed import (
    ARCFACE_TEMPLATE_112,
    DlibEmbedder,
    Embedder,
    create_embedder,
)
from edgewatch.vision.models import ModelManifest, sha256_file
from edgewatch.vision.types import Detection, FloatArray, ImageArray

DETECTOR_ID = "blazeface-full-range"
PAIRS_PER_CLASS = 40
EMBEDDER_IDS = ("dlib-resnet-v1", "mobilefacenet-insightface", "mobilefacenet-sirius")
DIMS = {"dlib-resnet-v1": 128, "mobilefacenet-insightface": 128, "mobilefacenet-sirius": 192}


@dataclass(frozen=True)
class LfwSubset:
    """Balanced pairsDevTest pairs with each image's frame and largest detected face.

    Frames stay out of the repr, so a failing assertion does not print pixels.
    """

    pairs: list[tuple[Path, Path, bool]]
    frames: dict[Path, ImageArray] = field(repr=False)
    faces: dict[Path, Detection] = field(repr=False)


def read_pairs(faces_dir: Path, per_class: int) -> list[tuple[Path, Path, bool]]:
    root = faces_dir / "lfw-devtest"
    same: list[tuple[Path, Path, bool]] = []
    different: list[tuple[Path, Path, bool]] = []
    lines = (faces_dir / "lfw-meta" / "pairsDevTest.txt").read_text().splitlines()[1:]
    for fields in (line.split() for line in lines):
        if len(fields) == 3:
            name, a, b = fields
            same.append(
                (
                    root / name / f"{name}_{int(a):04d}.jpg",
                    root / name / f"{name}_{int(b):04d}.jpg",
                    True,
                )
            )
        else:
            na, a, nb, b = fields
            different.append(
                (root / na / f"{na}_{int(a):04d}.jpg", root / nb / f"{nb}_{int(b):04d}.jpg", False)
            )
    return same[:per_class] + different[:per_class]


@pytest.fixture(scope="module")
def lfw(faces_dir: Path, manifest: ModelManifest) -> LfwSubset:
    detector = create_detector(manifest, DETECTOR_ID)
    pairs = read_pairs(faces_dir, PAIRS_PER_CLASS)
    paths = sorted({p for a, b, _ in pairs for p in (a, b)})
    frames = {p: np.ascontiguousarray(cv2.imread(str(p), cv2.IMREAD_COLOR)) for p in paths}
    faces: dict[Path, Detection] = {}
    for path, frame in frames.items():
        found = detector.detect(frame)
        if found:
            faces[path] = max(found, key=lambda d: d.width * d.height)
    return LfwSubset(pairs, frames, faces)


@pytest.fixture(scope="module")
def embedders(research_manifest: ModelManifest) -> dict[str, Embedder]:
    return {model_id: create_embedder(research_manifest, model_id) for model_id in EMBEDDER_IDS}


def chips_for(embedder: Embedder, lfw: LfwSubset, paths: list[Path]) -> ImageArray:
    chips = embedder.spec.chip_buffer(len(paths))
    for slot, path in enumerate(paths):
        align_face(lfw.frames[path], lfw.faces[path], embedder.spec.template_array(), chips[slot])
    return chips


def pair_scores(embedder: Embedder, lfw: LfwSubset) -> tuple[FloatArray, FloatArray]:
    """Cosines of same and of different pairs; a pair with an undetected face scores -1."""
    paths = sorted(lfw.faces)
    vectors = dict(zip(paths, embedder.embed(chips_for(embedder, lfw, paths)), strict=True))
    same: list[float] = []
    different: list[float] = []
    for a, b, is_same in lfw.pairs:
        score = float(vectors[a] @ vectors[b]) if a in vectors and b in vectors else -1.0
        (same if is_same else different).append(score)
    return np.asarray(same, np.float32), np.asarray(different, np.float32)


def roc_auc(positives: FloatArray, negatives: FloatArray) -> float:
    wins = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((wins + 0.5 * ties) / (len(positives) * len(negatives)))


@pytest.fixture(scope="module")
def sample_chips(lfw: LfwSubset, embedders: dict[str, Embedder]) -> dict[str, ImageArray]:
    """Three aligned real faces per embedder."""
    paths = sorted(lfw.faces)[:3]
    return {m: chips_for(e, lfw, paths) for m, e in embedders.items()}


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("model_id", EMBEDDER_IDS)
def test_spec_describes_the_model(model_id: str, embedders: dict[str, Embedder]) -> None:
    spec = embedders[model_id].spec
    assert spec.model_id == model_id
    assert spec.dim == DIMS[model_id]
    assert spec.chip_size == (150 if model_id == "dlib-resnet-v1" else 112)
    assert spec.template_array().shape == (4, 2)
    assert -1.0 < spec.threshold < 1.0 and 0.0 <= spec.margin < 1.0
    if model_id != "dlib-resnet-v1":
        assert spec.template == ARCFACE_TEMPLATE_112


@pytest.mark.parametrize("model_id", EMBEDDER_IDS)
def test_embeddings_are_unit_float32_rows(
    model_id: str, embedders: dict[str, Embedder], sample_chips: dict[str, ImageArray]
) -> None:
    embeddings = embedders[model_id].embed(sample_chips[model_id])
    assert embeddings.shape == (3, DIMS[model_id])
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("model_id", EMBEDDER_IDS)
def test_embedding_is_deterministic_and_independent_of_batching(
    model_id: str, embedders: dict[str, Embedder], sample_chips: dict[str, ImageArray]
) -> None:
    """Same chip, same vector: alone, in a batch, padded (sirius: 3 = 2 + 1 padded)."""
    embedder, chips = embedders[model_id], sample_chips[model_id]
    batch = embedder.embed(chips)
    again = embedder.embed(chips)
    alone = np.concatenate([embedder.embed(chips[i : i + 1]) for i in range(len(chips))])
    np.testing.assert_array_equal(batch, again)
    np.testing.assert_allclose(batch, alone, atol=1e-5)


@pytest.mark.parametrize("model_id", EMBEDDER_IDS)
def test_empty_batch_gives_empty_result(model_id: str, embedders: dict[str, Embedder]) -> None:
    embedder = embedders[model_id]
    result = embedder.embed(embedder.spec.chip_buffer(0))
    assert result.shape == (0, DIMS[model_id]) and result.dtype == np.float32


@pytest.mark.parametrize("model_id", EMBEDDER_IDS)
def test_wrongly_sized_chips_are_refused(model_id: str, embedders: dict[str, Embedder]) -> None:
    with pytest.raises(ValueError, match="chips"):
        embedders[model_id].embed(np.zeros((1, 100, 100, 3), dtype=np.uint8))


def test_embedding_logs_nothing(
    embedders: dict[str, Embedder],
    sample_chips: dict[str, ImageArray],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        for model_id, embedder in embedders.items():
            embedder.embed(sample_chips[model_id])
    assert caplog.records == []


def test_dlib_errors_never_carry_pixels(
    embedders: dict[str, Embedder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """dlib's own argument errors print the input array; ours must not pass that on."""

    class Exploding:
        def compute_face_descriptor(self, chips: Any) -> Any:
            raise TypeError("incompatible function arguments ... array([[[ 42, 219, 210]")

    embedder = embedders["dlib-resnet-v1"]
    assert isinstance(embedder, DlibEmbedder)
    monkeypatch.setattr(embedder, "_model", Exploding())
    with pytest.raises(ModelError) as caught:
        embedder.embed(embedder.spec.chip_buffer(1))
    assert "219" not in str(caught.value) and caught.value.__cause__ is None


# --------------------------------------------------------------------------- registry


def test_unknown_model_is_a_model_error(manifest: ModelManifest) -> None:
    with pytest.raises(ModelError, match="unknown model"):
        create_embedder(manifest, "no-such-model")


def test_a_detector_is_not_an_embedder(manifest: ModelManifest) -> None:
    with pytest.raises(ModelError, match="not an embedder"):
        create_embedder(manifest, DETECTOR_ID)


def test_bad_option_is_a_config_error(manifest: ModelManifest) -> None:
    with pytest.raises(ConfigError, match="num_jitters"):
        create_embedder(manifest, "dlib-resnet-v1", num_jitters=3)
    with pytest.raises(ConfigError, match="threshold"):
        create_embedder(manifest, "dlib-resnet-v1", threshold=7.0)


def test_option_overrides_manifest_default(research_manifest: ModelManifest) -> None:
    embedder = create_embedder(research_manifest, "mobilefacenet-insightface", threshold=0.5)
    assert embedder.spec.threshold == 0.5


def test_manifest_params_disagreeing_with_the_model_file_are_refused(
    research_manifest: ModelManifest,
) -> None:
    with pytest.raises(ModelError, match="tensors"):
        create_embedder(research_manifest, "mobilefacenet-sirius", batch_size=1)


def write_dlib_manifest(tmp_path: Path, params: str) -> ModelManifest:
    models = Path(face_recognition_models.__file__).parent / "models"
    model = models / "dlib_face_recognition_resnet_model_v1.dat"
    (tmp_path / "manifest.toml").write_text(
        f"""schema_version = 1
[models.probe]
kind = "embedder"
backend = "dlib"
file = "{model}"
sha256 = "{sha256_file(model)}"
licence = "CC0-1.0"
source = "test"
[models.probe.params]
{params}
"""
    )
    return ModelManifest.load(tmp_path / "manifest.toml")


def test_typo_in_manifest_params_is_a_model_error(tmp_path: Path) -> None:
    manifest = write_dlib_manifest(
        tmp_path,
        "template = [[46, 44], [103, 45], [75, 77], [74, 102]]\nthreshold = 0.9\nmargn = 0.1",
    )
    with pytest.raises(ModelError, match="margn"):
        create_embedder(manifest, "probe")


def test_template_outside_the_chip_is_a_model_error(tmp_path: Path) -> None:
    manifest = write_dlib_manifest(
        tmp_path,
        "template = [[46, 44], [103, 45], [75, 77], [74, 302]]\nthreshold = 0.9\nmargin = 0.1",
    )
    with pytest.raises(ModelError, match="inside the chip"):
        create_embedder(manifest, "probe")


# --------------------------------------------------------------------------- LFW


def test_lfw_subset_faces_are_found(lfw: LfwSubset) -> None:
    """Nearly every LFW image yields a face (misses count as failed pairs below)."""
    found, images = len(lfw.faces), len(lfw.frames)
    assert found >= 0.95 * images


def test_dlib_separates_same_from_different_people(
    embedders: dict[str, Embedder], lfw: LfwSubset
) -> None:
    same, different = pair_scores(embedders["dlib-resnet-v1"], lfw)
    assert roc_auc(same, different) >= 0.97


@pytest.mark.parametrize("model_id", ["mobilefacenet-insightface", "mobilefacenet-sirius"])
def test_mobilefacenets_score_same_people_higher(
    model_id: str, embedders: dict[str, Embedder], lfw: LfwSubset
) -> None:
    same, different = pair_scores(embedders[model_id], lfw)
    assert same.mean() > different.mean() + 0.3
    assert roc_auc(same, different) >= 0.95


def test_dlib_chips_match_dlibs_own_alignment(
    embedders: dict[str, Embedder], lfw: LfwSubset
) -> None:
    """Our template + warp must give the embedding dlib's own chip pipeline gives."""
    embedder = embedders["dlib-resnet-v1"]
    models = Path(face_recognition_models.__file__).parent / "models"
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    hog = dlib.get_frontal_face_detector()
    model = dlib.face_recognition_model_v1(
        str(models / "dlib_face_recognition_resnet_model_v1.dat")
    )
    cosines = []
    for path in sorted(lfw.faces)[::25][:5]:
        rgb = np.ascontiguousarray(lfw.frames[path][..., ::-1])
        rects = hog(rgb, 1)
        assert rects, "dlib's detector finds the LFW subject"
        rect = max(rects, key=lambda r: r.area())
        reference = np.asarray(model.compute_face_descriptor(rgb, predictor(rgb, rect)))
        ours = embedder.embed(chips_for(embedder, lfw, [path]))[0]
        cosines.append(float(ours @ reference) / float(np.linalg.norm(reference)))
    assert float(np.median(cosines)) > 0.98
    assert min(cosines) > 0.95
