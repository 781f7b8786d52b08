"""The command line as a user runs it: the hamilton clip end to end, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgewatch.cli.main import main

HAMILTON = "short_hamilton_clip.mp4"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def matches(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def edgewatch(*args: str) -> Run:
    """Run the real command in a subprocess, as a user would."""
    done = subprocess.run(
        [sys.executable, "-m", "edgewatch", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def hamilton_run(faces_dir: Path, videos_dir: Path) -> Run:
    examples = faces_dir / "examples"
    return edgewatch(
        "simulate",
        "--video",
        str(videos_dir / HAMILTON),
        "--enrol",
        f"Lin-Manuel Miranda={examples / 'lin-manuel-miranda.png'}",
        "--enrol",
        f"Barack Obama={examples / 'obama.jpg'}",
        "--enrol",
        f"Alex Lacamoire={examples / 'alex-lacamoire.png'}",
        "--enrol",
        f"Joe Biden={examples / 'biden.jpg'}",
        "--json",
        "--no-progress",
    )


def test_hamilton_clip_matches_miranda_on_stage(hamilton_run: Run) -> None:
    assert hamilton_run.returncode == 0, hamilton_run.stderr
    miranda = [m for m in hamilton_run.matches if m["subject"] == "Lin-Manuel Miranda"]
    assert len(miranda) >= 10


def test_hamilton_clip_matches_obama_in_the_audience_near_the_end(hamilton_run: Run) -> None:
    obama = [m for m in hamilton_run.matches if m["subject"] == "Barack Obama"]
    assert obama, "Barack Obama (about 65 px wide, in the audience) must be matched"
    assert all(float(str(m["stream_time"])) > 6.0 for m in obama)


def test_hamilton_clip_never_reports_lacamoire_or_biden(hamilton_run: Run) -> None:
    subjects = {m["subject"] for m in hamilton_run.matches}
    assert "Alex Lacamoire" not in subjects
    assert "Joe Biden" not in subjects


def test_hamilton_clip_json_lines_and_summary(hamilton_run: Run) -> None:
    for match in hamilton_run.matches:
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
        }
        assert float(str(match["score"])) >= float(str(match["threshold"]))
    assert "summary: 275 frames" in hamilton_run.stderr


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
    assert f"{blank}: no face found" in run.stderr


def test_unknown_model_lists_the_known_ones(videos_dir: Path) -> None:
    run = edgewatch("simulate", "--video", str(videos_dir / HAMILTON), "--embedder", "nope")
    assert run.returncode == 5
    assert "unknown model 'nope'" in run.stderr and "dlib-resnet-v1" in run.stderr


def test_threshold_out_of_range(videos_dir: Path) -> None:
    run = edgewatch("simulate", "--video", str(videos_dir / HAMILTON), "--threshold", "3")
    assert run.returncode == 2
    assert "matching.threshold" in run.stderr
