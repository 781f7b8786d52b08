"""The gallery and the match/unknown decision."""

from __future__ import annotations

import numpy as np
import pytest

from edgewatch.errors import ConfigError
from edgewatch.matching.gallery import Gallery, Subject
from edgewatch.matching.matcher import Matcher, MatchPolicy


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, np.float32)
    return vector / np.linalg.norm(vector)


def gallery_of(**subjects: list[np.ndarray]) -> Gallery:
    return Gallery(
        "test-model",
        [Subject(name) for name in subjects],
        [np.stack(templates) for templates in subjects.values()],
    )


def test_clear_match_is_reported_with_subject_and_score() -> None:
    gallery = gallery_of(alice=[unit(1, 0, 0)], bob=[unit(0, 1, 0)])
    matcher = Matcher(gallery, MatchPolicy(threshold=0.8, margin=0.1))
    matches = matcher.decide(np.stack([unit(1, 0.1, 0)]))
    assert len(matches) == 1
    assert matches[0].subject.reference == "alice"
    assert matches[0].face_index == 0
    assert matches[0].score == pytest.approx(float(unit(1, 0.1, 0) @ unit(1, 0, 0)))


def test_below_threshold_is_unknown() -> None:
    gallery = gallery_of(alice=[unit(1, 0, 0)])
    matcher = Matcher(gallery, MatchPolicy(threshold=0.9))
    assert matcher.decide(np.stack([unit(1, 1, 0)])) == []  # cosine 0.707


def test_ambiguous_between_two_subjects_is_unknown() -> None:
    gallery = gallery_of(alice=[unit(1, 0, 0)], bob=[unit(0.9, 0.1, 0)])
    probe = np.stack([unit(1, 0.05, 0)])
    assert Matcher(gallery, MatchPolicy(threshold=0.5, margin=0.0)).decide(probe)
    assert Matcher(gallery, MatchPolicy(threshold=0.5, margin=0.05)).decide(probe) == []


def test_margin_is_against_other_subjects_not_own_templates() -> None:
    # Two near-identical templates of one subject must not cancel each other out.
    gallery = gallery_of(alice=[unit(1, 0, 0), unit(1, 0.01, 0)], bob=[unit(0, 0, 1)])
    matches = Matcher(gallery, MatchPolicy(threshold=0.9, margin=0.2)).decide(
        np.stack([unit(1, 0, 0)])
    )
    assert [m.subject.reference for m in matches] == ["alice"]
    assert matches[0].runner_up == pytest.approx(0.0, abs=1e-6)


def test_subject_score_is_best_of_its_templates() -> None:
    gallery = gallery_of(alice=[unit(0, 1, 0), unit(1, 0, 0)], bob=[unit(0, 0, 1)])
    scores = gallery.subject_scores(np.stack([unit(1, 0, 0), unit(0, 0, 1)]))
    assert scores.shape == (2, 2)
    assert scores[0, 0] == pytest.approx(1.0) and scores[1, 1] == pytest.approx(1.0)


def test_many_faces_in_one_call() -> None:
    rng = np.random.default_rng(7)
    templates = rng.normal(size=(50, 128)).astype(np.float32)
    gallery = Gallery("m", [Subject(f"s{i}") for i in range(50)], [t[None] for t in templates])
    probes = templates[[3, 17, 42]] + rng.normal(scale=0.05, size=(3, 128)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    strangers = rng.normal(size=(5, 128)).astype(np.float32)
    strangers /= np.linalg.norm(strangers, axis=1, keepdims=True)
    matches = Matcher(gallery, MatchPolicy(threshold=0.7, margin=0.1)).decide(
        np.concatenate([probes, strangers])
    )
    assert [(m.face_index, m.subject.reference) for m in matches] == [
        (0, "s3"),
        (1, "s17"),
        (2, "s42"),
    ]


def test_empty_gallery_and_no_faces() -> None:
    empty = Gallery("m", [], [])
    assert Matcher(empty, MatchPolicy(threshold=0.5)).decide(np.stack([unit(1, 0)])) == []
    gallery = gallery_of(alice=[unit(1, 0)])
    assert Matcher(gallery, MatchPolicy(threshold=0.5)).decide(np.zeros((0, 2), np.float32)) == []


def test_gallery_rejects_bad_templates() -> None:
    with pytest.raises(ConfigError, match="unique"):
        Gallery("m", [Subject("a"), Subject("a")], [np.ones((1, 2)), np.ones((1, 2))])
    with pytest.raises(ConfigError, match="zero"):
        Gallery("m", [Subject("a")], [np.zeros((1, 2))])
    with pytest.raises(ConfigError, match="one dim"):
        Gallery("m", [Subject("a"), Subject("b")], [np.ones((1, 2)), np.ones((1, 3))])
    gallery = gallery_of(alice=[unit(1, 0)])
    with pytest.raises(ConfigError, match="dimension"):
        gallery.subject_scores(np.ones((1, 3), np.float32))


def test_gallery_wipe_overwrites_templates_in_place() -> None:
    gallery = gallery_of(alice=[unit(1, 0, 0)], bob=[unit(0, 1, 0)])
    matrix = gallery._matrix
    gallery.wipe()
    assert not matrix.any()
    assert len(gallery) == 0


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="less than or equal to 1"):
        MatchPolicy(threshold=1.5)
    with pytest.raises(ValueError, match="extra"):
        MatchPolicy.model_validate({"threshold": 0.5, "treshold": 0.6})
