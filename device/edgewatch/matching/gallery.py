"""The in-memory gallery: enrolled templates as one matrix, grouped by subject.

Templates are stored as a single contiguous float32 matrix, rows grouped by
subject, so one matrix product scores a face against every template and a
``reduceat`` takes each subject's best template. The matrix lives in a
:class:`~edgewatch.security.memory.LockedBuffer` (kept out of core dumps and,
where allowed, out of swap), and :meth:`Gallery.wipe` overwrites it in place
when the gallery's life ends (end of a deployment): the templates are
biometric data too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgewatch.errors import ConfigError
from edgewatch.security.memory import LockedBuffer
from edgewatch.vision.types import FloatArray


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a group of templates belongs to (never the photo itself)."""

    reference: str
    """Pseudonymous subject reference, e.g. a name in a demo or a case number."""
    category: str = "unspecified"


class Gallery:
    """Enrolled templates for one embedder model."""

    def __init__(
        self,
        model_id: str,
        subjects: Sequence[Subject],
        templates: Sequence[FloatArray],
    ) -> None:
        """``templates[i]`` is a (k_i, dim) array of subject i's templates, k_i >= 1."""
        if len(subjects) != len(templates):
            raise ConfigError("gallery: one template array per subject is required")
        if len({s.reference for s in subjects}) != len(subjects):
            raise ConfigError("gallery: subject references must be unique")
        self.model_id = model_id
        self.subjects: tuple[Subject, ...] = tuple(subjects)
        self._storage: LockedBuffer | None = None
        if not subjects:
            self._matrix: FloatArray = np.zeros((0, 0), np.float32)
            self._starts = np.zeros(0, np.intp)
            return
        dims = {t.shape[1] for t in templates if t.ndim == 2}
        if len(dims) != 1 or any(t.ndim != 2 or t.shape[0] == 0 for t in templates):
            raise ConfigError("gallery: templates must be non-empty (k, dim) arrays of one dim")
        rows = sum(t.shape[0] for t in templates)
        dim = dims.pop()
        self._storage = LockedBuffer(rows * dim * 4)
        matrix: FloatArray = self._storage.array((rows, dim), np.float32)
        np.concatenate(templates, out=matrix, casting="same_kind")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            self._storage.close()
            raise ConfigError("gallery: a template is zero or not finite")
        matrix /= norms
        self._matrix = matrix
        counts = np.array([t.shape[0] for t in templates])
        self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)

    @property
    def dim(self) -> int:
        return int(self._matrix.shape[1]) if len(self.subjects) else 0

    @property
    def template_count(self) -> int:
        return int(self._matrix.shape[0]) if len(self.subjects) else 0

    def __len__(self) -> int:
        return len(self.subjects)

    def subject_scores(self, embeddings: FloatArray) -> FloatArray:
        """Cosine similarity of each (unit-norm) embedding to each subject's best template.

        (m, dim) in, (m, n_subjects) out, in one matrix product.
        """
        if embeddings.shape[1] != self.dim:
            raise ConfigError(
                f"gallery: embeddings have dimension {embeddings.shape[1]}, "
                f"gallery was built with {self.dim}"
            )
        scores = embeddings @ self._matrix.T
        if self.template_count == len(self.subjects):
            return scores
        result: FloatArray = np.maximum.reduceat(scores, self._starts, axis=1)
        scores.fill(0.0)  # per-template scores of these faces: overwritten, not just freed
        return result

    def wipe(self) -> None:
        """Overwrite the templates in place and forget the subjects."""
        self._matrix.fill(0.0)
        self._matrix = np.zeros((0, 0), np.float32)
        self._starts = np.zeros(0, np.intp)
        self.subjects = ()
        if self._storage is not None:
            self._storage.close()
            self._storage = None

    @property
    def locked_in_memory(self) -> bool:
        """Whether the templates are locked out of swap (see ``LockedBuffer``)."""
        return self._storage is not None and self._storage.locked
