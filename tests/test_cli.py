"""The command line as a user runs it: the hamilton clip end to end, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.cli.main import main
from tests.cli_support import HAMILTON, RESEARCH_MANIFEST, Run, edgewatch, hamilton, subjects_of


@pytest.fixture(scope="module")
def arcface_run(faces_dir: Path, videos_dir: Path) -> Run:
    """The ArcFace backend with the research-only MobileFaceNet (the reference's embedder)."""
    return hamilton(
        faces_dir,
        videos_dir,
        "--embedder",
        "mobilefacenet-insightface",
        "--model-manifest",
        str(RESEARCH_MANIFEST),
    )


def is_obama_in_the_audience(match: dict[str, object]) -> bool:
    """Obama sits in the audience from the cut at frame 211, face centre x ~ 335."""
    x0, _, x1, _ = (int(v) for v in match["box"])  # type: ignore[attr-defined]
    return int(str(match["frame_index"])) >= 211 and 290 < (x0 + x1) / 2 < 380


SHOT_STARTS = (0, 20, 82, 211)
"""The clip's cuts (see tests/test_alerts.py): stage, profile, close-up, audience."""


def shot(match: dict[str, object]) -> int:
    frame = int(str(match["frame_index"]))
    return max(n for n, start in enumerate(SHOT_STARTS) if start <= frame)


@pytest.mark.parametrize("run_name", ["default_run", "arcface_run"])
def test_hamilton_alerts_miranda_once_per_shot_and_never_lacamoire_or_biden(
    run_name: str, request: pytest.FixtureRequest
) -> None:
    found = subjects_of(request.getfixturevalue(run_name))
    miranda = [shot(m) for m in found.get("Lin-Manuel Miranda", [])]
    assert {0, 2} <= set(miranda), "on stage and in the close-up"
    assert len(miranda) == len(set(miranda)), "one alert per appearance"
    assert max(miranda) < 3, "Miranda is not in the audience"
    assert "Alex Lacamoire" not in found
    assert "Joe Biden" not in found


def test_hamilton_alerts_obama_in_the_audience_once(arcface_run: Run) -> None:
    obama = subjects_of(arcface_run).get("Barack Obama", [])
    assert len(obama) == 1, "Barack Obama (about 65 px wide, in the audience): one appearance"
    assert all(is_obama_in_the_audience(m) for m in obama)


def test_hamilton_default_embedder_never_misreports_obama(default_run: Run) -> None:
    """dlib's model cannot separate Obama's small turned face from the others at its
    calibrated threshold (see README); it must at least never put his name on anyone else."""
    obama = subjects_of(default_run).get("Barack Obama", [])
    assert all(is_obama_in_the_audience(m) for m in obama)


def test_hamilton_json_lines_and_summary(default_run: Run) -> None:
    for match in default_run.matches:
        assert match["type"] == "match"
        assert set(match) == {
            "type",
            "subject",
            "category",
            "score",
            "threshold",
            "frame_index",
            "stream_time",
            "capture_time",
            "box",
            "model_id",
            "track",
        }
        assert float(str(match["score"])) >= float(str(match["threshold"]))
        track = match["track"]
        assert isinstance(track, dict) and track["matching_frames"] >= 2
    assert "summary: 275 frames" in default_run.stderr


def test_help_explains_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "simulate" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = capsys.readouterr().out
    for option in ("--video", "--enrol", "--json", "--realtime", "--images"):
        assert option in text


def test_missing_video_is_one_clear_line(tmp_path: Path, faces_dir: Path) -> None:
    missing = tmp_path / "nope.mp4"
    run = edgewatch("simulate", "--video", str(missing), "--no-progress")
    assert run.returncode == 3
    last_line = run.stderr.strip().splitlines()[-1]
    assert last_line == f"edgewatch: error: {missing}: video file not found"
    assert "Traceback" not in run.stderr


def test_corrupt_video_is_one_clear_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x17" * 500)
    run = edgewatch("simulate", "--video", str(broken), "--no-progress")
    assert run.returncode == 3
    assert f"{broken}: cannot open as video" in run.stderr
    assert "Traceback" not in run.stderr


def test_bad_enrol_option(tmp_path: Path, videos_dir: Path) -> None:
    run = edgewatch("simulate", "--video", str(videos_dir / HAMILTON), "--enrol", "no-equals")
    assert run.returncode == 2
    assert "expected NAME=IMAGE" in run.stderr


def test_enrol_photo_without_a_face(tmp_path: Path, videos_dir: Path) -> None:
    import cv2
    import numpy as np

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    run = edgewatch("simulate", "--video", str(videos_dir / HAMILTON), "--enrol", f"Nobody={blank}")
    assert run.returncode == 3
    assert f"{blank}: no usable face for 'Nobody': no face found" in run.stderr


def test_unknown_model_lists_the_known_ones(videos_dir: Path) -> None:
    run = edgewatch("simulate", "--video", str(videos_dir / HAMILTON), "--embedder", "nope")
    assert run.returncode == 5
    assert "unknown model 'nope'" in run.stderr and "dlib-resnet-v1" in run.stderr


def test_threshold_out_of_range(videos_dir: Path) -> None:
    run = edgewatch("simulate", "--video", str(videos_dir / HAMILTON), "--threshold", "3")
    assert run.returncode == 2
    assert "matching.threshold" in run.stderr


def test_images_source_matches_the_enrolled_person(faces_dir: Path) -> None:
    examples = faces_dir / "examples"
    run = edgewatch(
        "simulate",
        "--images",
        str(examples / "obama-*.jpg"),
        "--enrol",
        f"Barack Obama={examples / 'obama.jpg'}",
        "--enrol",
        f"Joe Biden={examples / 'biden.jpg'}",
        "--json",
        "--no-progress",
    )
    assert run.returncode == 0, run.stderr
    assert [m["subject"] for m in run.matches] == ["Barack Obama"] * 4  # 240p..1080p
    assert "summary: 4 frames" in run.stderr


def test_no_one_enrolled_discards_everything(faces_dir: Path) -> None:
    run = edgewatch(
        "simulate", "--images", str(faces_dir / "examples" / "biden.jpg"), "--no-progress"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert "no one enrolled" in run.stderr
    assert "1 frames, 0 faces seen" in run.stderr  # nobody to match: faces are not looked for
