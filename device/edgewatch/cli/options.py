"""Command-line options shared by the commands that run the face models.

``simulate`` and ``watchlist build`` must encode faces identically (templates
from different pipelines cannot be compared), so they take the model options
from one place.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgewatch.config import DEFAULT_DETECTOR, DEFAULT_EMBEDDER, DEFAULT_LANDMARKER


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models")
    group.add_argument(
        "--detector", default=DEFAULT_DETECTOR, metavar="MODEL", help="detector model id"
    )
    group.add_argument(
        "--landmarker",
        default=DEFAULT_LANDMARKER,
        metavar="MODEL",
        help="landmark model that refines alignment and rejects unusable faces "
        "('none': align on the detector's keypoints, no gate)",
    )
    group.add_argument(
        "--embedder", default=DEFAULT_EMBEDDER, metavar="MODEL", help="embedder model id"
    )
    group.add_argument(
        "--min-face-px",
        type=float,
        default=40.0,
        metavar="PX",
        help="faces narrower than this are never embedded (default 40)",
    )
    group.add_argument(
        "--model-manifest",
        action="append",
        default=[],
        type=Path,
        metavar="TOML",
        help="extra model manifest (e.g. research-only models for comparison)",
    )


def model_config(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration sections that :func:`add_model_arguments` sets."""
    return {
        "detector": {"model": args.detector},
        "landmarker": {"model": args.landmarker},
        "embedder": {"model": args.embedder},
        "quality": {"min_face_px": args.min_face_px},
        "model_manifests": args.model_manifest,
    }
