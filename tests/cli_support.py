"""Running the real command line in tests, and the hamilton run several modules compare with."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.hamilton_cast import REFERENCE_PHOTOS, enrol_options

HAMILTON = "short_hamilton_clip.mp4"
DEPLOYMENT = Path(__file__).resolve().parents[1] / "deploy" / "watchlist-deployment.example.toml"


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


RESEARCH_MANIFEST = Path(__file__).resolve().parents[1] / "bench" / "research_models.toml"


def hamilton(faces_dir: Path, videos_dir: Path, *extra: str) -> Run:
    """The appliance on the hamilton clip with the cast enrolled from all their photos."""
    return edgewatch(
        "simulate",
        "--video",
        str(videos_dir / HAMILTON),
        *enrol_options(faces_dir / "examples"),
        "--json",
        "--no-progress",
        *extra,
    )


def subjects_of(run: Run) -> dict[str, list[dict[str, object]]]:
    assert run.returncode == 0, run.stderr
    found: dict[str, list[dict[str, object]]] = {}
    for match in run.matches:
        found.setdefault(str(match["subject"]), []).append(match)
    return found


def entries_csv(folder: Path, examples: Path) -> Path:
    rows = ["subject_ref,category,image,source,added_by"]
    for name, files in REFERENCE_PHOTOS.items():
        rows += [f"{name},wanted,{examples / file},test,tester" for file in files]
    path = folder / "entries.csv"
    path.write_text("\n".join(rows) + "\n")
    return path
