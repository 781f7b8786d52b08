"""The decision for each face: a named subject, or an explicit "unknown".

A face is reported only when its best subject clears the threshold *and*
beats the runner-up subject by a margin: a face that looks somewhat like two
enrolled people is not confidently either of them, and a false alert costs a
stranger far more than a missed one costs the operator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgewatch.matching.gallery import Gallery, Subject
from edgewatch.vision.types import FloatArray


class MatchPolicy(BaseModel):
    """Threshold and margin on cosine similarity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(
        ge=-1.0, le=1.0, description="Minimum cosine similarity to the best subject."
    )
    margin: float = Field(
        default=0.0, ge=0.0, le=2.0, description="Minimum lead over the second-best subject."
    )


@dataclass(frozen=True, slots=True)
class Match:
    """A positive decision: this face is this subject (the only kind that leaves)."""

    face_index: int
    subject: Subject
    score: float
    runner_up: float
    """Score of the second-best subject (-1 when only one is enrolled)."""


class Matcher:
    """Scores faces against a gallery and keeps only the confident matches."""

    def __init__(self, gallery: Gallery, policy: MatchPolicy) -> None:
        self.gallery = gallery
        self.policy = policy

    def decide(self, embeddings: FloatArray) -> list[Match]:
        """Matches among ``embeddings`` (m, dim); every other face is unknown.

        Nothing about an unknown face is returned: not its score, not its
        nearest subject; every score array is overwritten before returning.
        """
        if embeddings.shape[0] == 0 or len(self.gallery) == 0:
            return []
        scores = self.gallery.subject_scores(embeddings)
        best, runner_up = _top_two(scores)
        best_scores = scores[np.arange(scores.shape[0]), best]
        try:
            accepted = (best_scores >= self.policy.threshold) & (
                best_scores - runner_up >= self.policy.margin
            )
            return [
                Match(
                    face_index=int(i),
                    subject=self.gallery.subjects[int(best[i])],
                    score=float(best_scores[i]),
                    runner_up=float(runner_up[i]),
                )
                for i in np.flatnonzero(accepted)
            ]
        finally:
            for array in (scores, best, runner_up, best_scores):
                array.fill(0)


def _top_two(scores: FloatArray) -> tuple[np.ndarray, FloatArray]:
    """Index of each row's best column, and the row's second-best value (-1 if none)."""
    best = np.argmax(scores, axis=1)
    if scores.shape[1] == 1:
        return best, np.full(scores.shape[0], -1.0, np.float32)
    partitioned = np.partition(scores, -2, axis=1)
    second: FloatArray = partitioned[:, -2].copy()
    partitioned.fill(0.0)
    return best, second
