"""Labelled face images in LFW's layout, and LFW-style pairs files.

A data set is a folder with one sub-folder per person, named after them, and
that person's photos inside (``<root>/<Name>/<Name>_0001.jpg``). A pairs file
lists comparisons: a first line with counts, then ``name n1 n2`` for two
photos of one person and ``name1 n1 name2 n2`` for photos of two people.
Errors name the file and line, so a mistyped path is found in seconds, not
after an hour of embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgewatch.errors import InputError
from edgewatch.imaging import IMAGE_SUFFIXES


@dataclass(frozen=True, slots=True)
class Pair:
    """Two images and whether they show the same person."""

    first: Path
    second: Path
    same: bool


def person_of(path: Path) -> str:
    """The identity of an image: the name of the folder it is in."""
    return path.parent.name


def image_path(root: Path, name: str, number: str) -> Path:
    """LFW's file naming: ``<root>/<Name>/<Name>_<0001>.jpg``."""
    return root / name / f"{name}_{int(number):04d}.jpg"


def list_images(root: Path) -> list[Path]:
    """Every image of every person under ``root``, sorted (person, then file)."""
    if not root.is_dir():
        raise InputError(f"{root}: face folder not found")
    images = sorted(
        path
        for path in root.glob("*/*")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise InputError(f"{root}: no images in per-person sub-folders (<root>/<Name>/*.jpg)")
    return images


def read_pairs(pairs_file: Path, root: Path) -> list[Pair]:
    """The pairs of an LFW-style pairs file, every listed image checked to exist."""
    try:
        lines = pairs_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{pairs_file}: pairs file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{pairs_file}: cannot read pairs file: {exc}") from None
    pairs: list[Pair] = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        try:
            if len(fields) == 3:
                name, a, b = fields
                pair = Pair(image_path(root, name, a), image_path(root, name, b), True)
            elif len(fields) == 4:
                name_a, a, name_b, b = fields
                pair = Pair(image_path(root, name_a, a), image_path(root, name_b, b), False)
            elif not fields:
                continue
            else:
                raise ValueError(f"{len(fields)} fields")
        except ValueError as exc:
            raise InputError(
                f"{pairs_file}:{number}: expected 'name n1 n2' or 'name1 n1 name2 n2' ({exc})"
            ) from None
        for path in (pair.first, pair.second):
            if not path.is_file():
                raise InputError(f"{pairs_file}:{number}: {path} not found under {root}")
        pairs.append(pair)
    if not any(p.same for p in pairs) or all(p.same for p in pairs):
        raise InputError(f"{pairs_file}: needs both same-person and different-person pairs")
    return pairs


def images_of(pairs: Sequence[Pair]) -> list[Path]:
    """The distinct images the pairs use, sorted."""
    return sorted({p.first for p in pairs} | {p.second for p in pairs})
