"""Run the device's own face path over a labelled data set and score it.

Every image goes through the configured detector, size gate and landmark
gate exactly as a camera frame does (:meth:`FaceEncoder.find`); the largest
usable face is aligned to each embedder's template and embedded. Detection
runs once and is shared by every embedder evaluated, so models are compared
on identical faces. An image without a usable face is a failure of the
pipeline: its pairs score -1 and its searches find nothing ("end to end");
verification is also reported over the pairs where both faces were found.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewatch.accuracy import metrics
from edgewatch.accuracy.dataset import Pair, person_of
from edgewatch.imaging import load_image
from edgewatch.progress import ProgressLine
from edgewatch.vision.align import align_face
from edgewatch.vision.embed import Embedder
from edgewatch.vision.encoder import FaceEncoder
from edgewatch.vision.types import Detection, FloatArray

FAR_TARGETS = (1e-2, 1e-3, 1e-4)
FPIR_TARGETS = (1e-2, 1e-3)
BATCH = 16


def find_faces(
    paths: Sequence[Path], encoder: FaceEncoder, progress: ProgressLine | None = None
) -> list[Detection | None]:
    """The largest usable face of every image (None where there is none)."""
    faces: list[Detection | None] = []
    for done, path in enumerate(paths, start=1):
        _, usable = encoder.find(load_image(path))
        faces.append(max(usable, key=lambda d: d.width * d.height, default=None))
        if progress is not None:
            progress.update(done, f"without a face {sum(f is None for f in faces)}")
    if progress is not None:
        progress.update(len(paths), force=True)
        progress.finish()
    return faces


@dataclass(slots=True)
class Embedded:
    """Embeddings of a data set's images (zero rows where no face was found)."""

    embeddings: FloatArray
    found: npt.NDArray[np.bool_]
    align_ms: float
    embed_ms: float


def embed_faces(
    paths: Sequence[Path],
    faces: Sequence[Detection | None],
    embedder: Embedder,
    progress: ProgressLine | None = None,
) -> Embedded:
    """Align each found face to the embedder's template and embed it, in batches."""
    spec = embedder.spec
    template = spec.template_array()
    found = np.array([face is not None for face in faces])
    embeddings = np.zeros((len(paths), spec.dim), np.float32)
    rows = np.flatnonzero(found)
    chips = spec.chip_buffer(BATCH)
    align_s = embed_s = 0.0
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        for slot, row in enumerate(batch):
            face = faces[row]
            assert face is not None
            image = load_image(paths[row])
            began = time.perf_counter()
            align_face(image, face, template, chips[slot])
            align_s += time.perf_counter() - began
        began = time.perf_counter()
        embeddings[batch] = embedder.embed(chips[: len(batch)])
        embed_s += time.perf_counter() - began
        if progress is not None:
            progress.update(start + len(batch))
    if progress is not None:
        progress.update(len(rows), force=True)
        progress.finish()
    count = max(len(rows), 1)
    return Embedded(embeddings, found, 1000 * align_s / count, 1000 * embed_s / count)


@dataclass(slots=True)
class ModelEvaluation:
    """Every figure for one embedder on one data set."""

    model_id: str
    images: int
    images_without_face: int
    pairs: int
    pairs_without_face: int
    accuracy: float
    """10-fold cross-validated verification accuracy, end to end."""
    accuracy_found: float
    """The same over pairs where both faces were found."""
    roc_auc: float
    impostor_comparisons: int
    verification: list[metrics.OperatingPoint]
    gallery_size: int
    mated_searches: int
    non_mated_searches: int
    identification: list[metrics.OperatingPoint]
    embed_ms: float
    align_ms: float
    det: tuple[list[float], list[float]] = field(repr=False)
    impostor: metrics.Scores = field(repr=False)
    same_pair_scores: metrics.Scores = field(repr=False)

    def as_json(self) -> dict[str, Any]:
        """Everything but the raw scores, for ``--json``."""

        def point(p: metrics.OperatingPoint, key: str, hit: str) -> dict[str, Any]:
            return {
                key: p.target,
                "threshold": p.threshold,
                hit: p.hit_rate,
                "resolved": p.resolved,
            }

        return {
            "model": self.model_id,
            "images": self.images,
            "images_without_face": self.images_without_face,
            "pairs": self.pairs,
            "pairs_without_face": self.pairs_without_face,
            "verification_accuracy": self.accuracy,
            "verification_accuracy_faces_found": self.accuracy_found,
            "roc_auc": self.roc_auc,
            "impostor_comparisons": self.impostor_comparisons,
            "tar_at_far": [point(p, "far", "tar") for p in self.verification],
            "identification": {
                "gallery_size": self.gallery_size,
                "mated_searches": self.mated_searches,
                "non_mated_searches": self.non_mated_searches,
                "tpir_at_fpir": [point(p, "fpir", "tpir") for p in self.identification],
                "det": {"fpir": self.det[0], "fnir": self.det[1]},
            },
            "ms_per_face": {"embed": self.embed_ms, "align": self.align_ms},
        }


def evaluate(
    model_id: str,
    pairs: Sequence[Pair],
    paths: Sequence[Path],
    embedded: Embedded,
    splits: int = 10,
) -> ModelEvaluation:
    """Verification on ``pairs`` and open-set identification on all of ``paths``."""
    index = {path: row for row, path in enumerate(paths)}
    embeddings, found = embedded.embeddings, embedded.found
    first = np.array([index[p.first] for p in pairs])
    second = np.array([index[p.second] for p in pairs])
    both = found[first] & found[second]
    scores = np.where(both, np.einsum("ij,ij->i", embeddings[first], embeddings[second]), -1.0)
    scores = scores.astype(np.float64)
    same = np.array([p.same for p in pairs])
    names = np.array([person_of(p) for p in paths])
    impostor = metrics.cross_identity_scores(names[found], embeddings[found])
    searches, gallery = metrics.open_set_searches(names, embeddings, found, splits=splits)
    fpir, fnir = searches.det_curve()
    return ModelEvaluation(
        model_id=model_id,
        images=len(paths),
        images_without_face=int((~found).sum()),
        pairs=len(pairs),
        pairs_without_face=int((~both).sum()),
        accuracy=metrics.tenfold_accuracy(scores, same),
        accuracy_found=metrics.tenfold_accuracy(scores[both], same[both]),
        roc_auc=metrics.roc_auc(scores[same], scores[~same]),
        impostor_comparisons=len(impostor),
        verification=[metrics.verification_point(f, impostor, scores, same) for f in FAR_TARGETS],
        gallery_size=gallery,
        mated_searches=len(searches.mated_scores),
        non_mated_searches=len(searches.non_mated_scores),
        identification=[searches.point(f) for f in FPIR_TARGETS],
        embed_ms=embedded.embed_ms,
        align_ms=embedded.align_ms,
        det=(fpir.tolist(), fnir.tolist()),
        impostor=impostor,
        same_pair_scores=scores[same],
    )
