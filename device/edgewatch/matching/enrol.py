"""Enrolment: reference photos to templates, through the device's own face encoder
(templates from any other pipeline would not be comparable).

Used by ``edgewatch simulate --enrol`` to build an in-memory gallery; the
photos and the chips are never written anywhere, and the buffers are
overwritten once the template exists.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewatch.errors import ConfigError, InputError
from edgewatch.imaging import load_image
from edgewatch.matching.gallery import Gallery, Subject
from edgewatch.vision.encoder import FaceEncoder
from edgewatch.vision.types import FloatArray

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReferencePhoto:
    """One photo of one subject."""

    subject: str
    path: Path
    category: str = "unspecified"


def parse_enrol_option(value: str) -> ReferencePhoto:
    """``NAME=IMAGE`` from the command line."""
    name, sep, path = value.partition("=")
    name = name.strip()
    if not sep or not name or not path.strip():
        raise ConfigError(
            f"--enrol {value!r}: expected NAME=IMAGE, e.g. 'Jane Doe=photos/jane.jpg'"
        )
    return ReferencePhoto(subject=name, path=Path(path.strip()))


def template_from_photo(photo: ReferencePhoto, encoder: FaceEncoder) -> FloatArray:
    """The (dim,) template of the largest usable face in the photo."""
    image = load_image(photo.path)
    encoded = encoder.encode(image)
    try:
        if not encoded.embedded:
            found = "a face was found but is not usable (turned away, occluded or blurred)"
            raise InputError(
                f"{photo.path}: no usable face for {photo.subject!r}: "
                f"{found if encoded.detected else 'no face found'}; use a photo in which the "
                "face is frontal and clearly visible"
            )
        if len(encoded.embedded) > 1:
            log.warning(
                "%s: %d faces found; enrolling the largest as %r",
                photo.path,
                len(encoded.embedded),
                photo.subject,
            )
        areas = [d.width * d.height for d in encoded.embedded]
        template: FloatArray = encoded.embeddings[int(np.argmax(areas))].copy()
        return template
    finally:
        image.fill(0)
        encoded.scrub()


def build_gallery(photos: Sequence[ReferencePhoto], encoder: FaceEncoder) -> Gallery:
    """A gallery with every subject's photos as that subject's templates."""
    by_subject: dict[str, list[FloatArray]] = {}
    categories: dict[str, str] = {}
    for photo in photos:
        by_subject.setdefault(photo.subject, []).append(template_from_photo(photo, encoder))
        categories.setdefault(photo.subject, photo.category)
    subjects = [Subject(name, categories[name]) for name in by_subject]
    templates = [np.stack(t) for t in by_subject.values()]
    return Gallery(encoder.embedder.spec.model_id, subjects, templates)
