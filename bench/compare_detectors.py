"""BlazeFace (as the appliance runs it) against OpenCV's YuNet, clip by clip.

Why this exists: BlazeFace sees a frame shrunk to 128 or 192 pixels, so the
detector tiles the frame to find small faces (edgewatch.vision.detect). Whether
that pays for its cost is a measurement: this script counts, for every clip in
``../shared/data/video``, the faces that BlazeFace finds with the default
options and with tiling off, and those that YuNet finds (a peer detector that
runs at the frame's full resolution, used here as the reference), how far the
two agree, and the median time per frame of each.

Agreement is counted per frame at IoU >= 0.3 (BlazeFace boxes are square and
YuNet's are taller, so a true match of the same face often stays below 0.5):
"BF in YuNet" is the share of BlazeFace detections that overlap some YuNet
box, "YuNet in BF" the share of YuNet boxes that some BlazeFace detection
overlaps. Neither detector is ground truth; a low share on either side says
where to look, not who is right.

Usage: .venv/bin/python bench/compare_detectors.py [--model blazeface-full-range]
       [--option KEY=VALUE ...] [--output docs/detection.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edgewatch.errors import EdgewatchError
from edgewatch.vision.detect import create_detector
from edgewatch.vision.models import ModelManifest
from edgewatch.vision.runtime import runtime_name
from edgewatch.vision.types import ImageArray

PROJECT_ROOT = Path(__file__).resolve().parents[1]
YUNET_RELATIVE = Path("models") / "peers" / "yunet" / "face_detection_yunet_2023mar.onnx"
DEFAULT_MODEL = "blazeface-full-range"
MATCH_IOU = 0.3

Box = tuple[float, float, float, float]
BoxFinder = Callable[[ImageArray], list[Box]]


@dataclass
class Tally:
    """What one detector did on one clip."""

    faces: int = 0
    frames_with_face: int = 0
    matched: int = 0
    """Detections that overlap a box of the other detector (IoU >= MATCH_IOU)."""
    seconds: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return 1000.0 * statistics.median(self.seconds) if self.seconds else float("nan")

    def share_matched(self) -> str:
        return f"{100.0 * self.matched / self.faces:.0f}%" if self.faces else "-"


@dataclass
class ClipResult:
    name: str
    width: int
    height: int
    frames: int
    tallies: dict[str, Tally]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Count faces found by BlazeFace (default options and without tiling) "
        "and by YuNet in every clip of SHARED/data/video, their agreement (IoU >= 0.3) "
        "and the median ms per frame; write a markdown table and print it.",
    )
    parser.add_argument(
        "--shared",
        type=Path,
        default=PROJECT_ROOT.parent / "shared",
        help="the shared data folder with data/video and the YuNet model (default: ../shared)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=PROJECT_ROOT / "docs" / "detection.md",
        help="markdown file to write (default: docs/detection.md)",
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"BlazeFace model id (default: {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="detector option for the 'default' row (VALUE is JSON, e.g. min_face_px=30); "
        "repeatable",
    )
    parser.add_argument(
        "--yunet-score",
        type=float,
        default=0.6,
        help="YuNet score threshold (default: 0.6)",
    )
    parser.add_argument("--clip", action="append", default=[], help="only clips with this name")
    return parser.parse_args(argv)


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict, VALUE read as JSON (a bare word stays a string)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--option wants KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def frames_of(path: Path) -> Iterator[ImageArray]:
    """BGR frames of a video file, in order."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise EdgewatchError(f"{path}: cannot open video")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield np.asarray(frame, dtype=np.uint8)
    finally:
        capture.release()


def blazeface_finder(manifest: ModelManifest, model: str, options: dict[str, Any]) -> BoxFinder:
    detector = create_detector(manifest, model, **options)

    def find(frame: ImageArray) -> list[Box]:
        return [d.box for d in detector.detect(frame)]

    return find


def yunet_finder(model: Path, score: float) -> BoxFinder:
    """cv2.FaceDetectorYN with its input size set to each frame's size."""
    if not model.is_file():
        raise EdgewatchError(f"{model}: YuNet model not found")
    yunet = cv2.FaceDetectorYN.create(str(model), "", (320, 320), score)

    def find(frame: ImageArray) -> list[Box]:
        yunet.setInputSize((frame.shape[1], frame.shape[0]))
        _, faces = yunet.detect(frame)
        if faces is None:
            return []
        return [(float(f[0]), float(f[1]), float(f[0] + f[2]), float(f[1] + f[3])) for f in faces]

    return find


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> npt.NDArray[np.float64]:
    """Pairwise IoU, shape (len(a), len(b))."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    first = np.asarray(a, np.float64)[:, None, :]
    second = np.asarray(b, np.float64)[None, :, :]
    width = np.clip(
        np.minimum(first[..., 2], second[..., 2]) - np.maximum(first[..., 0], second[..., 0]),
        0,
        None,
    )
    height = np.clip(
        np.minimum(first[..., 3], second[..., 3]) - np.maximum(first[..., 1], second[..., 1]),
        0,
        None,
    )
    inter = width * height
    area_a = (first[..., 2] - first[..., 0]) * (first[..., 3] - first[..., 1])
    area_b = (second[..., 2] - second[..., 0]) * (second[..., 3] - second[..., 1])
    union = area_a + area_b - inter
    result: npt.NDArray[np.float64] = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
    return result


def timed(finder: BoxFinder, frame: ImageArray, tally: Tally) -> list[Box]:
    start = time.perf_counter()
    boxes = finder(frame)
    tally.seconds.append(time.perf_counter() - start)
    tally.faces += len(boxes)
    tally.frames_with_face += bool(boxes)
    return boxes


def run_clip(path: Path, finders: dict[str, BoxFinder], reference: str) -> ClipResult:
    """Every finder on every frame; agreement of each BlazeFace row with ``reference``."""
    tallies = {name: Tally() for name in finders}
    matched_reference = {name: 0 for name in finders if name != reference}
    frames = 0
    shape = (0, 0)
    for frame in frames_of(path):
        frames += 1
        shape = frame.shape[:2]
        found = {name: timed(finder, frame, tallies[name]) for name, finder in finders.items()}
        for name in matched_reference:
            iou = iou_matrix(found[name], found[reference])
            tallies[name].matched += int((iou >= MATCH_IOU).any(axis=1).sum())
            matched_reference[name] += int((iou >= MATCH_IOU).any(axis=0).sum())
    # the reference's "matched" is reported per BlazeFace row, see format_table
    tallies[reference].matched = 0
    for name, count in matched_reference.items():
        tallies[f"{reference} in {name}"] = Tally(faces=tallies[reference].faces, matched=count)
    return ClipResult(path.name, shape[1], shape[0], frames, tallies)


def machine_description() -> str:
    """CPU model and core count from lscpu (what the ms/frame numbers mean)."""
    model, cores = platform.processor() or "unknown", "?"
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            model = value.strip()
        elif key.strip() == "CPU(s)":
            cores = value.strip()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{model}, {cores} CPUs ({platform.machine()}, {platform.system()}); "
        f"load average at the end of the run {load} (other work on the machine slows the times)"
    )


def format_table(results: Sequence[ClipResult], rows: Sequence[tuple[str, str]]) -> str:
    """One markdown table: a line per clip and detector."""
    lines = [
        "| clip | frames | detector | faces | faces/frame | frames with a face "
        "| agreement (IoU >= 0.3) | median ms/frame |",
        "|---|---:|---|---:|---:|---:|---|---:|",
    ]
    for clip in results:
        for key, label in rows:
            tally = clip.tallies[key]
            agreement = _agreement(clip, key)
            lines.append(
                f"| {clip.name} ({clip.width}x{clip.height}) | {clip.frames} | {label} "
                f"| {tally.faces} | {tally.faces / max(clip.frames, 1):.2f} "
                f"| {tally.frames_with_face} | {agreement} | {tally.median_ms:.1f} |"
            )
    return "\n".join(lines)


def _agreement(clip: ClipResult, key: str) -> str:
    if key == "yunet":
        parts = [
            f"{clip.tallies[name].share_matched()} in {name.split(' in ', 1)[1]}"
            for name in clip.tallies
            if name.startswith("yunet in ")
        ]
        return "; ".join(parts)
    return f"{clip.tallies[key].share_matched()} in YuNet"


def totals(results: Sequence[ClipResult], keys: Sequence[str]) -> str:
    """Faces over all clips per detector, one line."""
    parts = [f"{key}: {sum(r.tallies[key].faces for r in results)}" for key in keys]
    return "Total faces over all clips: " + ", ".join(parts) + "."


def report(
    results: Sequence[ClipResult], rows: Sequence[tuple[str, str]], command: str, notes: str
) -> str:
    keys = [key for key, _ in rows]
    return "\n".join(
        [
            "# Face detection: BlazeFace against YuNet",
            "",
            "Generated by `bench/compare_detectors.py`; do not edit by hand, rerun it.",
            "",
            f"- Machine: {machine_description()}",
            f"- Runtime: {runtime_name()} (BlazeFace), OpenCV {cv2.__version__} (YuNet)",
            f"- Command: `{command}`",
            *([notes] if notes else []),
            "",
            format_table(results, rows),
            "",
            totals(results, keys),
            "",
            "Agreement: for a BlazeFace row, the share of its detections that overlap a YuNet "
            "box in the same frame; for YuNet, the share of YuNet boxes that overlap a detection "
            "of each BlazeFace row. Times are per frame from BGR array to boxes (scaling, "
            "normalisation, inference, NMS), without reading the video.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = parse_options(args.option)
    videos = sorted((args.shared / "data" / "video").glob("*.mp4"))
    if args.clip:
        videos = [v for v in videos if v.name in args.clip or v.stem in args.clip]
    if not videos:
        print(f"no clips found under {args.shared}/data/video", file=sys.stderr)
        return 1
    try:
        manifest = ModelManifest.default()
        finders = {
            "default": blazeface_finder(manifest, args.model, options),
            "no-tiling": blazeface_finder(manifest, args.model, {**options, "tiling": False}),
            "yunet": yunet_finder(args.shared / YUNET_RELATIVE, args.yunet_score),
        }
        results = [run_clip(path, finders, "yunet") for path in videos]
    except EdgewatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows = [
        ("default", f"BlazeFace {args.model}, default options"),
        ("no-tiling", f"BlazeFace {args.model}, tiling off"),
        ("yunet", f"YuNet 2023mar, score >= {args.yunet_score}"),
    ]
    notes = f"- BlazeFace options beyond the defaults: `{json.dumps(options)}`" if options else ""
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join([".venv/bin/python", "bench/compare_detectors.py", *given])
    text = report(results, rows, command, notes)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
