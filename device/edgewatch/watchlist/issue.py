"""Issuing a watch-list on the issuer's workstation: photos in, one sealed file out.

Each reference photo goes through the device's own detector, landmarker,
aligner and embedder (templates from any other pipeline could not be
compared), and must show exactly one face that passes the reference-photo
quality rules. The photos and chips are overwritten once the template
exists; only templates and the entries' metadata enter the file.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgewatch.accuracy.calibration import PRODUCT_MAX_FPIR
from edgewatch.errors import ConfigError, InputError
from edgewatch.fileio import read_toml
from edgewatch.imaging import load_image
from edgewatch.transport.topics import IdentityField
from edgewatch.validation import validated
from edgewatch.vision.encoder import FaceEncoder
from edgewatch.vision.quality import QualityRules, measure
from edgewatch.vision.types import FloatArray
from edgewatch.watchlist.format import CATEGORIES, Deployment, Entry

log = logging.getLogger(__name__)

CSV_COLUMNS = ("subject_ref", "category", "image", "source", "added_by")


class PolicyOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(default=None, gt=-1.0, lt=1.0)
    margin: float | None = Field(default=None, ge=0.0, lt=1.0)
    max_fpir: float = Field(
        default=PRODUCT_MAX_FPIR,
        gt=0.0,
        le=PRODUCT_MAX_FPIR,
        description="Authorised false-positive identification rate per face searched.",
    )


class DeploymentFile(BaseModel):
    """The deployment TOML an issuer writes (see deploy/watchlist-deployment.example.toml)."""

    model_config = ConfigDict(extra="forbid")

    watchlist_id: IdentityField
    version: int = Field(ge=1)
    deployment: Deployment
    policy: PolicyOverride = Field(default_factory=PolicyOverride)


def load_deployment(path: Path) -> DeploymentFile:
    raw = read_toml(path, "deployment file")
    return validated(DeploymentFile, raw, f"deployment file {path}", ConfigError)


@dataclass(frozen=True, slots=True)
class EntryRow:
    """One CSV row: one photo of one listed person."""

    line: int
    subject_ref: str
    category: str
    image: Path
    source: str
    added_by: str


def read_entries(path: Path, photos_dir: Path | None = None) -> list[EntryRow]:
    """Rows of the entries CSV; image paths are relative to ``photos_dir`` or the CSV."""
    base = photos_dir or path.parent
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [c for c in ("subject_ref", "category", "image") if c not in columns]
            if missing:
                raise ConfigError(
                    f"entries file {path}: missing column(s) {', '.join(missing)}; expected "
                    f"a header row with {', '.join(CSV_COLUMNS)}"
                )
            extra = set(columns) - set(CSV_COLUMNS)
            if extra:
                raise ConfigError(
                    f"entries file {path}: unknown column(s) {', '.join(sorted(extra))}"
                )
            rows = []
            for number, record in enumerate(reader, start=2):
                ref = (record.get("subject_ref") or "").strip()
                category = (record.get("category") or "").strip()
                image = (record.get("image") or "").strip()
                if not ref or not image:
                    raise ConfigError(f"{path}:{number}: subject_ref and image are required")
                if category not in CATEGORIES:
                    raise ConfigError(
                        f"{path}:{number}: category {category!r} is not one of "
                        f"{', '.join(CATEGORIES)}"
                    )
                rows.append(
                    EntryRow(
                        number,
                        ref,
                        category,
                        base / image,
                        (record.get("source") or "").strip(),
                        (record.get("added_by") or "").strip(),
                    )
                )
    except FileNotFoundError:
        raise ConfigError(f"entries file {path}: file not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"entries file {path}: not a UTF-8 CSV file: {exc}") from None
    if not rows:
        raise ConfigError(f"entries file {path}: no entries")
    return rows


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """What happened to one row; ``problem`` is None when it was accepted."""

    row: EntryRow
    problem: str | None


@dataclass(slots=True)
class IssuedTemplates:
    """Entries and their templates, ready to seal, plus a report line per row."""

    entries: list[Entry] = field(default_factory=list)
    templates: FloatArray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    outcomes: list[RowOutcome] = field(default_factory=list)

    @property
    def refused(self) -> list[RowOutcome]:
        return [o for o in self.outcomes if o.problem is not None]

    def wipe(self) -> None:
        self.templates.fill(0.0)


def template_for_row(
    row: EntryRow, encoder: FaceEncoder, rules: QualityRules
) -> tuple[FloatArray | None, str | None]:
    """(template, None) for a usable photo, (None, reason) otherwise."""
    try:
        image = load_image(row.image)
    except InputError as exc:
        return None, str(exc)
    encoded = encoder.encode(image.copy())
    try:
        if not encoded.detected:
            return None, "no face found"
        if len(encoded.detected) > 1:
            return None, (
                f"{len(encoded.detected)} faces found; a reference photo must show exactly one "
                "person (crop it)"
            )
        if not encoded.embedded:
            return None, "the face is not usable (turned away, occluded, blurred or too small)"
        problems = rules.problems(measure(image, encoded.embedded[0]))
        if problems:
            return None, "; ".join(problems)
        template: FloatArray = encoded.embeddings[0].copy()
        return template, None
    finally:
        image.fill(0)
        encoded.scrub()


def issue_templates(
    rows: Sequence[EntryRow],
    encoder: FaceEncoder,
    rules: QualityRules | None = None,
    on_row: Callable[[RowOutcome], None] | None = None,
) -> IssuedTemplates:
    """Templates for every usable row, grouped by subject in first-seen order."""
    rules = rules or QualityRules()
    by_subject: dict[str, list[FloatArray]] = {}
    first_row: dict[str, EntryRow] = {}
    result = IssuedTemplates()
    for row in rows:
        previous = first_row.get(row.subject_ref)
        if previous is not None and previous.category != row.category:
            outcome = RowOutcome(
                row,
                f"category {row.category!r} contradicts {previous.category!r} on line "
                f"{previous.line} for the same subject",
            )
        else:
            template, problem = template_for_row(row, encoder, rules)
            outcome = RowOutcome(row, problem)
            if template is not None:
                by_subject.setdefault(row.subject_ref, []).append(template)
                first_row.setdefault(row.subject_ref, row)
        result.outcomes.append(outcome)
        if on_row is not None:
            on_row(outcome)
    for ref, templates in by_subject.items():
        row = first_row[ref]
        sources = sorted({r.source for r in rows if r.subject_ref == ref and r.source})
        added_by = sorted({r.added_by for r in rows if r.subject_ref == ref and r.added_by})
        result.entries.append(
            Entry(
                ref=ref,
                category=row.category,
                templates=len(templates),
                source="; ".join(sources),
                added_by="; ".join(added_by),
            )
        )
    if by_subject:
        stacked = np.concatenate([np.stack(t) for t in by_subject.values()]).astype(np.float32)
        result.templates = stacked
        for templates in by_subject.values():
            for template in templates:
                template.fill(0.0)
    return result
