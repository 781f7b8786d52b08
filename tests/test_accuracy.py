"""Accuracy arithmetic: thresholds, identification rates, tail fit, floors and budgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgewatch.accuracy.calibration import (
    PRODUCT_MAX_FPIR,
    Calibration,
    calibrate,
    check_budget,
    check_threshold,
    fit_normal_tail,
)
from edgewatch.accuracy.dataset import list_images, read_pairs
from edgewatch.accuracy.metrics import (
    best_threshold,
    open_set_searches,
    roc_auc,
    tenfold_accuracy,
    threshold_at_rate,
)
from edgewatch.errors import ConfigError, InputError

RNG = np.random.default_rng(7)


def test_threshold_at_rate_accepts_at_most_that_share() -> None:
    impostor = RNG.normal(0.0, 1.0, 100_000)
    for rate in (1e-1, 1e-2, 1e-3):
        threshold = threshold_at_rate(impostor, rate)
        assert np.mean(impostor >= threshold) <= rate
        assert np.mean(impostor >= threshold - 1e-3) > rate * 0.9


def test_best_threshold_matches_brute_force() -> None:
    scores = RNG.normal(0.0, 1.0, 400)
    same = RNG.random(400) < 0.5
    scores[same] += 1.5
    threshold, accuracy = best_threshold(scores, same)
    brute = max(np.mean((scores >= t) == same) for t in np.sort(scores))
    assert accuracy == pytest.approx(brute)
    assert np.mean((scores >= threshold) == same) == pytest.approx(accuracy)
    assert 0.7 < tenfold_accuracy(scores, same) <= 1.0
    assert roc_auc(scores[same], scores[~same]) > 0.8


def test_open_set_identification_on_separable_people() -> None:
    """Ten people, three photos each, well apart: every mated search finds its person."""
    people = 10
    centres = np.eye(32, dtype=np.float32)[:people]
    names = np.repeat([f"p{i}" for i in range(people)], 3)
    embeddings = np.repeat(centres, 3, axis=0) + RNG.normal(0, 0.05, (30, 32)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    found = np.ones(30, bool)
    found[4] = False  # one photo without a face: a missed mated (or quiet non-mated) search
    searches, gallery = open_set_searches(names, embeddings, found, splits=4)
    assert gallery == 5
    assert len(searches.non_mated_scores) == 4 * 15
    point = searches.point(0.1)
    assert point.hit_rate > 0.9
    fpir, fnir = searches.det_curve()
    assert np.all(np.diff(fpir) <= 1e-12) and np.all(np.diff(fnir) >= -1e-12)


def test_normal_tail_fit_recovers_a_normal_distribution() -> None:
    scores = RNG.normal(0.2, 0.1, 500_000)
    mean, std = fit_normal_tail(scores)
    assert mean == pytest.approx(0.2, abs=0.01)
    assert std == pytest.approx(0.1, rel=0.05)


def sample_calibration() -> Calibration:
    impostor = RNG.normal(0.5, 0.1, 200_000)
    same = RNG.normal(0.95, 0.03, 500)
    return calibrate(impostor, "synthetic normal scores", same)


def test_calibration_arithmetic_is_consistent() -> None:
    calibration = sample_calibration()
    assert calibration.fpir(1, calibration.floor) == pytest.approx(PRODUCT_MAX_FPIR, rel=0.01)
    threshold = calibration.threshold_for(10_000, 1.7e-4)
    assert calibration.fpir(10_000, threshold) == pytest.approx(1.7e-4, rel=1e-3)
    fits = calibration.max_templates(threshold, 1.7e-4)
    assert calibration.fpir(fits, threshold) <= 1.7e-4 < calibration.fpir(fits + 1, threshold)
    assert calibration.extrapolated(calibration.far(threshold))
    assert not calibration.extrapolated(1e-2)
    assert calibration.far_thresholds[0][0] == 1e-2


def test_a_calibration_whose_floor_disagrees_with_its_fit_is_refused() -> None:
    table = sample_calibration().model_dump()
    table["floor"] = table["floor"] - 0.05
    with pytest.raises(ValueError, match="floor"):
        Calibration.model_validate(table)


def test_threshold_below_floor_is_refused_with_the_reason() -> None:
    calibration = sample_calibration()
    check_threshold("m", calibration, calibration.floor)
    with pytest.raises(ConfigError, match="below the calibrated floor"):
        check_threshold("m", calibration, calibration.floor - 0.01)


def test_budget_refuses_a_list_too_large_and_says_what_fits() -> None:
    weak, strong = sample_calibration(), sample_calibration()
    strong = strong.model_copy(update={"tail_std": 0.05, "floor": 0.5 + 0.05 * 3.090232})
    threshold = weak.floor + 0.05
    allowed = weak.max_templates(threshold, PRODUCT_MAX_FPIR)
    assert check_budget("weak", weak, allowed, threshold, PRODUCT_MAX_FPIR) <= PRODUCT_MAX_FPIR
    with pytest.raises(ConfigError) as refused:
        check_budget(
            "weak",
            weak,
            allowed * 100,
            threshold,
            PRODUCT_MAX_FPIR,
            {"strong": (strong, 0.8)},
        )
    message = str(refused.value)
    assert f"at most {allowed:,} templates" in message
    assert "need threshold" in message and "models that fit: strong" in message
    with pytest.raises(ConfigError, match="at most the product's limit"):
        check_budget("weak", weak, 1, threshold, 1e-2)


def test_pairs_file_errors_name_the_line(tmp_path: Path) -> None:
    person = tmp_path / "faces" / "Ann_Lee"
    person.mkdir(parents=True)
    (person / "Ann_Lee_0001.jpg").write_bytes(b"x")
    (person / "Ann_Lee_0002.jpg").write_bytes(b"x")
    other = tmp_path / "faces" / "Bo_Chen"
    other.mkdir()
    (other / "Bo_Chen_0001.jpg").write_bytes(b"x")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\nAnn_Lee 1 2\nAnn_Lee 1 Bo_Chen 1\n")
    assert [p.same for p in read_pairs(pairs, tmp_path / "faces")] == [True, False]
    assert len(list_images(tmp_path / "faces")) == 3
    pairs.write_text("1\nAnn_Lee 1 2\nAnn_Lee 1 Bo_Chen 7\n")
    with pytest.raises(InputError, match=r"pairs.txt:3: .*Bo_Chen_0007.jpg not found"):
        read_pairs(pairs, tmp_path / "faces")
    pairs.write_text("1\nAnn_Lee one 2\n")
    with pytest.raises(InputError, match=r"pairs.txt:2: expected"):
        read_pairs(pairs, tmp_path / "faces")
    with pytest.raises(InputError, match="not found"):
        read_pairs(tmp_path / "missing.txt", tmp_path / "faces")
    with pytest.raises(InputError, match="no images"):
        list_images(tmp_path)
