"""``edgewatch eval`` and ``edgewatch calibrate``: accuracy as a measured number.

Both run the device's own face path (detector, gates, alignment, embedder)
over a labelled face data set; ``eval`` reports verification and open-set
identification figures per embedder, ``calibrate`` turns one embedder's
impostor scores into the calibration table its manifest entry ships with.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from edgewatch.accuracy.calibration import (
    PRODUCT_MAX_FPIR,
    Calibration,
    calibrate,
    calibration_toml,
)
from edgewatch.accuracy.dataset import images_of, list_images, read_pairs
from edgewatch.accuracy.evaluate import (
    ModelEvaluation,
    embed_faces,
    evaluate,
    find_faces,
)
from edgewatch.accuracy.plot import write_det_plot
from edgewatch.appliance import VisionParts, load_vision
from edgewatch.cli.options import add_model_arguments, model_config
from edgewatch.config import DEFAULT_EMBEDDER, parse_vision_config
from edgewatch.errors import ConfigError, InputError
from edgewatch.fileio import PUBLIC, write_atomic
from edgewatch.progress import ProgressLine
from edgewatch.vision.embed import BACKENDS, create_embedder
from edgewatch.vision.registry import backend_for

EVAL_DESCRIPTION = """\
Measure the accuracy of one or more embedders with the device's own face path
on a labelled face data set in LFW's layout (one folder per person) and an
LFW-style pairs file:

  verification  10-fold accuracy on the pairs, and the true accept rate (TAR)
                at false accept rates (FAR) 1e-2, 1e-3, 1e-4, thresholds taken
                from every comparison between photos of different people;
  watch-list    open-set identification: half the people with two or more
                photos enrolled from one photo each (10 random splits), probed
                with their other photos (mated) and with every photo of people
                not enrolled (non-mated): true-positive identification rate
                (TPIR) at false-positive identification rates (FPIR) 1e-2 and
                1e-3, and the detection-error trade-off curve (--det PNG).

An image whose face the device would not find or would refuse counts as a
failure ("end to end"). Figures marked '~' rest on fewer than 10 impostor
events and are not resolved by the data. Detection runs once and is shared
by all the models, so they are compared on identical faces.
"""

EVAL_EXAMPLE = """\
example (the figures in docs/accuracy.md):
  edgewatch eval --faces ../shared/data/faces/lfw-devtest \\
      --pairs ../shared/data/faces/lfw-meta/pairsDevTest.txt \\
      --models dlib-resnet-v1 dlib-resnet-v1-litert-fp32 --det det.png --json eval.json
"""

CALIBRATE_DESCRIPTION = f"""\
Calibrate an embedder's decision threshold from its impostor score
distribution (every comparison between photos of different people in the
data set): a normal tail is fitted to the top 1% of impostor scores, so that
false accept rates beyond what the data can measure are extrapolated rather
than guessed. Prints the threshold giving a target false-positive
identification rate (FPIR) for a watch-list of a given size, and the
[models.<id>.calibration] table to put in the model manifest; its floor (the
threshold where one template gives FPIR {PRODUCT_MAX_FPIR:g}) is the lowest a
unit accepts, and issuing tools and units refuse lists too large for it.
"""

CALIBRATE_EXAMPLE = """\
example (NPL's reference point: FPIR 0.017% with 10,000 entries):
  edgewatch calibrate --faces ../shared/data/faces/lfw-devtest \\
      --pairs ../shared/data/faces/lfw-meta/pairsDevTest.txt \\
      --embedder dlib-resnet-v1-litert-fp32 --list-size 10000 --fpir 1.7e-4
"""


def register(commands: Any) -> None:
    evaluation = commands.add_parser(
        "eval",
        help="measure embedders' verification and watch-list accuracy on labelled faces",
        description=EVAL_DESCRIPTION,
        epilog=EVAL_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _data_arguments(evaluation)
    evaluation.add_argument(
        "--models",
        nargs="+",
        default=[DEFAULT_EMBEDDER],
        metavar="MODEL",
        help=f"embedder model ids to evaluate (default {DEFAULT_EMBEDDER})",
    )
    evaluation.add_argument("--det", type=Path, metavar="PNG", help="write the DET curves here")
    evaluation.add_argument("--json", type=Path, metavar="FILE", help="write all figures here")
    add_model_arguments(evaluation)
    evaluation.set_defaults(handler=run_eval)

    calibration = commands.add_parser(
        "calibrate",
        help="derive an embedder's threshold floor and list-size budget from impostor scores",
        description=CALIBRATE_DESCRIPTION,
        epilog=CALIBRATE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _data_arguments(calibration)
    calibration.add_argument(
        "--list-size",
        type=int,
        default=10_000,
        metavar="N",
        help="templates on the watch-list the threshold is for (default 10000)",
    )
    calibration.add_argument(
        "--fpir",
        type=float,
        default=1.7e-4,
        metavar="RATE",
        help="target false-positive identification rate per face (default 1.7e-4, NPL's)",
    )
    calibration.add_argument("--out", type=Path, metavar="TOML", help="also write the table here")
    add_model_arguments(calibration)
    calibration.set_defaults(handler=run_calibrate)


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--faces",
        type=Path,
        required=True,
        metavar="DIR",
        help="one sub-folder of photos per person",
    )
    data.add_argument(
        "--pairs", type=Path, required=True, metavar="FILE", help="LFW-style pairs file"
    )
    data.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _vision(args: argparse.Namespace, embedder: str) -> VisionParts:
    config = parse_vision_config({**model_config(args), "embedder": {"model": embedder}}, "options")
    return load_vision(config)


class _Data:
    """The data set, its pairs, and the largest usable face of every image."""

    def __init__(self, args: argparse.Namespace, parts: VisionParts) -> None:
        self.pairs = read_pairs(args.pairs, args.faces)
        self.paths = list_images(args.faces)
        missing = set(images_of(self.pairs)) - set(self.paths)
        if missing:
            raise InputError(
                f"{args.pairs}: {len(missing)} listed images are not under {args.faces}"
            )
        self.quiet: bool = args.quiet
        self.faces = find_faces(self.paths, parts.encoder, self.progress("finding faces"))

    def progress(self, label: str, total: int | None = None) -> ProgressLine:
        return ProgressLine(label, total or len(self.paths), enabled=not self.quiet)

    def evaluate(self, parts: VisionParts, model_id: str) -> ModelEvaluation:
        embedder = create_embedder(parts.manifest, model_id)
        found = sum(face is not None for face in self.faces)
        embedded = embed_faces(
            self.paths, self.faces, embedder, self.progress(f"embedding with {model_id}", found)
        )
        return evaluate(model_id, self.pairs, self.paths, embedded)


def run_eval(args: argparse.Namespace) -> int:
    parts = _vision(args, args.models[0])
    for model_id in args.models:  # a wrong id fails now, not after the detection pass
        backend_for(parts.manifest, model_id, "embedder", BACKENDS)
    data = _Data(args, parts)
    results = [data.evaluate(parts, model_id) for model_id in args.models]
    print(_table(results, args))
    if args.det is not None:
        write_det_plot(results, args.det, f"open-set identification on {args.faces.name}")
        print(f"DET curves: {args.det}")
    if args.json is not None:
        document = {
            "faces": str(args.faces),
            "pairs": str(args.pairs),
            "detector": args.detector,
            "landmarker": args.landmarker,
            "results": [r.as_json() for r in results],
        }
        write_atomic(args.json, (json.dumps(document, indent=2) + "\n").encode(), PUBLIC)
        print(f"figures: {args.json}")
    return 0


def _table(results: list[ModelEvaluation], args: argparse.Namespace) -> str:
    first = results[0]
    lines = [
        f"{args.faces}: {first.images} images ({first.images_without_face} without a usable "
        f"face), {first.pairs} pairs; {first.impostor_comparisons:,} impostor comparisons; "
        f"watch-lists of {first.gallery_size} people, {first.mated_searches} mated and "
        f"{first.non_mated_searches} non-mated searches",
        "",
        "| model | accuracy (10-fold) | faces found | TAR@FAR 1e-2 | TAR@1e-3 | TAR@1e-4 "
        "| TPIR@FPIR 1e-2 | TPIR@1e-3 | embed ms/face |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cells = [f"{p.hit_rate:.1%}{'' if p.resolved else '~'}" for p in r.verification]
        cells += [f"{p.hit_rate:.1%}{'' if p.resolved else '~'}" for p in r.identification]
        lines.append(
            f"| {r.model_id} | {r.accuracy:.2%} | {r.accuracy_found:.2%} | "
            + " | ".join(cells)
            + f" | {r.embed_ms:.1f} |"
        )
    lines.append("")
    lines.append(
        "thresholds (cosine): "
        + "; ".join(
            f"{r.model_id} FAR "
            + ", ".join(f"{p.target:g}: {p.threshold:.3f}" for p in r.verification)
            for r in results
        )
    )
    return "\n".join(lines)


def run_calibrate(args: argparse.Namespace) -> int:
    if args.list_size < 1:
        raise ConfigError("--list-size must be at least 1")
    if not 0.0 < args.fpir < 1.0:
        raise ConfigError("--fpir must be between 0 and 1")
    parts = _vision(args, args.embedder)
    data = _Data(args, parts)
    result = data.evaluate(parts, args.embedder)
    described = (
        f"{args.faces.name}: {result.images - result.images_without_face} faces of "
        f"{result.images} images, {args.detector} + {args.landmarker}"
    )
    calibration = calibrate(result.impostor, described, result.same_pair_scores)
    command = "edgewatch " + shlex.join(sys.argv[1:])
    table = calibration_toml(args.embedder, calibration, command)
    print(_calibration_summary(args, calibration))
    print()
    print(table)
    if args.out is not None:
        write_atomic(args.out, table.encode(), PUBLIC)
    return 0


def _calibration_summary(args: argparse.Namespace, c: Calibration) -> str:
    threshold = c.threshold_for(args.list_size, args.fpir)
    far = c.far(threshold)
    tar = c.tar_at(threshold)
    kept = "beyond the measured range" if tar is None else f"{tar:.1%}"
    extrapolated = " (extrapolated from the tail fit)" if c.extrapolated(far) else ""
    return "\n".join(
        [
            f"{args.embedder}: {c.impostor_comparisons:,} impostor comparisons, normal tail "
            f"mean {c.tail_mean:.4f} std {c.tail_std:.4f}",
            f"FPIR {args.fpir:g} with {args.list_size:,} templates: threshold {threshold:.4f} "
            f"(FAR {far:.2e} per comparison{extrapolated}); true accepts kept: {kept}",
            f"floor (one template, FPIR {PRODUCT_MAX_FPIR:g}): {c.floor}; at the floor a list "
            f"may hold 1 template, at {threshold:.4f} up to "
            f"{c.max_templates(threshold, PRODUCT_MAX_FPIR):,} within FPIR {PRODUCT_MAX_FPIR:g}",
        ]
    )
