"""``edgewatch eval`` and ``edgewatch calibrate`` on a small LFW subset, as a user runs them."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from edgewatch.accuracy.calibration import Calibration
from tests.cli_support import edgewatch

MODEL = "dlib-resnet-v1-litert-fp32"


def number(person: Path, index: int) -> int:
    """LFW's photo number of a person's ``index``-th photo (``Name_0013.jpg`` -> 13)."""
    return int(sorted(person.iterdir())[index].stem.rsplit("_", 1)[1])


@pytest.fixture(scope="module")
def subset(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """40 LFW people with two or more photos and 40 with one, and a pairs file over them."""
    root = tmp_path_factory.mktemp("lfw-subset")
    faces = root / "faces"
    people = sorted(p for p in (faces_dir / "lfw-devtest").iterdir() if p.is_dir())
    several = [p for p in people if len(list(p.iterdir())) >= 2][:40]
    single = [p for p in people if len(list(p.iterdir())) == 1][:40]
    for person in several + single:
        (faces / person.name).mkdir(parents=True)
        for photo in sorted(person.iterdir())[:3]:
            (faces / person.name / photo.name).symlink_to(photo)
    lines = [f"{p.name} {number(p, 0)} {number(p, 1)}" for p in several]
    lines += [
        f"{a.name} {number(a, 0)} {b.name} {number(b, 0)}"
        for a, b in zip(several, single, strict=True)
    ]
    pairs = root / "pairs.txt"
    pairs.write_text(f"{len(several)}\n" + "\n".join(lines) + "\n")
    return faces, pairs


def test_eval_reports_every_figure_as_table_json_and_det(
    subset: tuple[Path, Path], tmp_path: Path
) -> None:
    faces, pairs = subset
    run = edgewatch(
        "eval", "--faces", str(faces), "--pairs", str(pairs), "--models", MODEL,
        "--det", str(tmp_path / "det.png"), "--json", str(tmp_path / "eval.json"), "--quiet",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"| {MODEL} |" in run.stdout and "TPIR@FPIR 1e-2" in run.stdout
    assert (tmp_path / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((tmp_path / "eval.json").read_text())["results"][0]
    assert result["model"] == MODEL and result["pairs"] == 80
    assert result["verification_accuracy"] > 0.9
    assert [p["far"] for p in result["tar_at_far"]] == [1e-2, 1e-3, 1e-4]
    identification = result["identification"]
    assert identification["gallery_size"] == 20 and identification["non_mated_searches"] > 400
    assert [p["fpir"] for p in identification["tpir_at_fpir"]] == [1e-2, 1e-3]
    assert not identification["tpir_at_fpir"][1]["resolved"], "too few searches for 1e-3"
    assert len(identification["det"]["fpir"]) == len(identification["det"]["fnir"]) > 10


def test_calibrate_prints_a_manifest_table_that_validates(
    subset: tuple[Path, Path], tmp_path: Path
) -> None:
    faces, pairs = subset
    out = tmp_path / "calibration.toml"
    run = edgewatch(
        "calibrate", "--faces", str(faces), "--pairs", str(pairs), "--embedder", MODEL,
        "--list-size", "10000", "--fpir", "1.7e-4", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "FPIR 0.00017 with 10,000 templates: threshold" in run.stdout
    assert "extrapolated from the tail fit" in run.stdout
    table = tomllib.loads(out.read_text())["models"][MODEL]["calibration"]
    calibration = Calibration.model_validate(table)
    assert 0.8 < calibration.floor < 1.0
    assert f"[models.{MODEL}.calibration]" in run.stdout


def test_bad_input_is_named(subset: tuple[Path, Path], tmp_path: Path) -> None:
    faces, pairs = subset
    missing = edgewatch("eval", "--faces", str(faces), "--pairs", str(tmp_path / "nope.txt"))
    assert missing.returncode == 3 and "pairs file not found" in missing.stderr
    broken = tmp_path / "broken.txt"
    broken.write_text("1\nSomeone 1\n")
    bad = edgewatch("eval", "--faces", str(faces), "--pairs", str(broken))
    assert bad.returncode == 3 and "broken.txt:2: expected" in bad.stderr
    not_embedder = edgewatch(
        "eval", "--faces", str(faces), "--pairs", str(pairs),
        "--models", MODEL, "facemesh-v1",
    )  # fmt: skip
    assert not_embedder.returncode == 5 and "is a landmarker, not an embedder" in (
        not_embedder.stderr
    )
    bad_rate = edgewatch("calibrate", "--faces", str(faces), "--pairs", str(pairs), "--fpir", "2")
    assert bad_rate.returncode == 2 and "--fpir must be between 0 and 1" in bad_rate.stderr
