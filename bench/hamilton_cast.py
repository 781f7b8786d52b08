"""The hamilton clip's cast and their reference photos (shared by tests and benchmarks)."""

from __future__ import annotations

from pathlib import Path

CLIP = "short_hamilton_clip.mp4"

REFERENCE_PHOTOS: dict[str, tuple[str, ...]] = {
    "Lin-Manuel Miranda": ("lin-manuel-miranda.png",),
    "Barack Obama": ("obama.jpg", "obama2.jpg", "knn_examples/test/obama1.jpg"),
    "Alex Lacamoire": (
        "alex-lacamoire.png",
        "knn_examples/train/alex_lacamoire/img1.jpg",
        "knn_examples/test/alex_lacamoire1.jpg",
    ),
    "Joe Biden": ("biden.jpg", "knn_examples/train/biden/biden2.jpg"),
}
"""Every photo of each person in ../shared/data/faces/examples (IDENTITIES.csv)."""


def enrol_options(examples: Path) -> list[str]:
    """``--enrol NAME=IMAGE`` arguments for every reference photo."""
    options: list[str] = []
    for name, files in REFERENCE_PHOTOS.items():
        for file in files:
            options += ["--enrol", f"{name}={examples / file}"]
    return options
