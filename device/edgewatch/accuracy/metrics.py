"""Scores in, error rates out: verification and open-set identification.

Conventions (ISO/IEC 19795-1 and NIST FRVT's identification reports):
a comparison is *accepted* when its cosine is at or above the threshold.

- Verification (pairs): accuracy at the best single threshold and by 10-fold
  cross-validation, ROC AUC, and the true accept rate (TAR) at a false accept
  rate (FAR). Listed different pairs are too few to resolve FAR 1e-3, so FAR
  thresholds come from all comparisons between images of different people.
- Open-set identification (a watch-list): a *mated* search is a photo of an
  enrolled person, a *non-mated* search a photo of someone not enrolled. The
  false-positive identification rate (FPIR) is the share of non-mated
  searches whose best score clears the threshold; the true-positive
  identification rate (TPIR) the share of mated searches whose best subject
  is the right one and clears it; FNIR = 1 - TPIR. A search whose face was
  not found scores -inf: a miss for a mated search, no alarm for a non-mated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]


# --------------------------------------------------------------------------- thresholds


def threshold_at_rate(impostor: Scores, rate: float) -> float:
    """The smallest threshold at which at most ``rate`` of ``impostor`` scores are accepted."""
    ordered = np.sort(impostor)[::-1]
    allowed = int(np.floor(rate * len(ordered)))
    if allowed >= len(ordered):
        return float(ordered[-1])
    return float(np.nextafter(ordered[allowed], np.inf))


MIN_EVENTS = 10
"""Impostor scores that must lie above a threshold for its rate to count as measured."""


def resolvable(rate: float, count: int, events: int = MIN_EVENTS) -> bool:
    """Whether ``count`` impostor scores can measure ``rate`` (at least ``events`` above it)."""
    return rate * count >= events


# --------------------------------------------------------------------------- verification


def best_threshold(scores: Scores, same: Flags) -> tuple[float, float]:
    """The threshold with the highest accuracy, and that accuracy.

    Candidates are midpoints between sorted scores, so the threshold does not
    sit exactly on a sample.
    """
    ordered = np.sort(scores)
    candidates = np.concatenate([[ordered[0] - 1e-6], (ordered[1:] + ordered[:-1]) / 2])
    positives = np.sort(scores[same])
    negatives = np.sort(scores[~same])
    true_accepts = len(positives) - np.searchsorted(positives, candidates, side="left")
    true_rejects = np.searchsorted(negatives, candidates, side="left")
    accuracies = (true_accepts + true_rejects) / len(scores)
    best = int(np.argmax(accuracies))
    return float(candidates[best]), float(accuracies[best])


def tenfold_accuracy(scores: Scores, same: Flags) -> float:
    """Mean test accuracy over 10 interleaved folds, threshold chosen on the other 9."""
    folds = np.arange(len(scores)) % 10
    accuracies = []
    for fold in range(10):
        train, test = folds != fold, folds == fold
        threshold, _ = best_threshold(scores[train], same[train])
        accuracies.append(float(np.mean((scores[test] >= threshold) == same[test])))
    return float(np.mean(accuracies))


def roc_auc(positives: Scores, negatives: Scores) -> float:
    """P(random same-pair score > random different-pair score), ties counted half."""
    sorted_neg = np.sort(negatives)
    below = np.searchsorted(sorted_neg, positives, side="left")
    equal = np.searchsorted(sorted_neg, positives, side="right") - below
    return float((below + 0.5 * equal).sum() / (len(positives) * len(negatives)))


def cross_identity_scores(
    names: npt.NDArray[np.str_], embeddings: npt.NDArray[np.float32]
) -> Scores:
    """Cosines of every pair of images of different people (each pair once)."""
    similarity = embeddings @ embeddings.T
    upper = np.triu(np.ones(similarity.shape, dtype=bool), k=1)
    different = names[:, None] != names[None, :]
    scores: Scores = similarity[upper & different].astype(np.float64)
    similarity.fill(0)
    return scores


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """What a threshold chosen for a target impostor rate does."""

    target: float
    threshold: float
    hit_rate: float
    """TAR (verification) or TPIR (identification) at the threshold."""
    resolved: bool
    """False when there are too few impostor scores to measure the target rate."""


def verification_point(
    far: float, impostor: Scores, pair_scores: Scores, same: Flags
) -> OperatingPoint:
    """TAR on the same pairs at the threshold giving ``far`` on the impostor comparisons."""
    threshold = threshold_at_rate(impostor, far)
    tar = float(np.mean(pair_scores[same] >= threshold))
    return OperatingPoint(far, threshold, tar, resolvable(far, len(impostor)))


# --------------------------------------------------------------------------- identification


@dataclass(frozen=True, slots=True)
class Searches:
    """Rank-1 outcomes of many watch-list searches (pooled over enrolment splits)."""

    mated_scores: Scores
    """Best score of each mated search (-inf when no face was found)."""
    mated_correct: Flags
    """Whether that best subject was the right person."""
    non_mated_scores: Scores
    """Best score of each non-mated search (-inf when no face was found)."""

    def point(self, fpir: float) -> OperatingPoint:
        """TPIR at the threshold that gives ``fpir`` on the non-mated searches."""
        threshold = threshold_at_rate(self.non_mated_scores, fpir)
        hits = self.mated_correct & (self.mated_scores >= threshold)
        resolved = resolvable(fpir, len(self.non_mated_scores))
        return OperatingPoint(fpir, threshold, float(np.mean(hits)), resolved)

    def det_curve(self, points: int = 200) -> tuple[Scores, Scores]:
        """(FPIR, FNIR) pairs over thresholds spanning the non-mated scores."""
        finite = self.non_mated_scores[np.isfinite(self.non_mated_scores)]
        thresholds = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, points)))
        non_mated = np.sort(self.non_mated_scores)
        fpir = 1.0 - np.searchsorted(non_mated, thresholds, side="left") / len(non_mated)
        hits = np.where(self.mated_correct, self.mated_scores, -np.inf)
        fnir = np.searchsorted(np.sort(hits), thresholds, side="left") / len(hits)
        return fpir.astype(np.float64), fnir.astype(np.float64)


def open_set_searches(
    names: npt.NDArray[np.str_],
    embeddings: npt.NDArray[np.float32],
    found: Flags,
    splits: int = 10,
    seed: int = 0,
) -> tuple[Searches, int]:
    """Enrol half the people with two or more photos (one photo each), search with the rest.

    Each split enrols a random half of the people with a usable second photo,
    from their first photo with a face; the other photos of enrolled people
    are mated searches, every photo of a person not enrolled (including all
    people with a single photo) a non-mated search. Splits are pooled so
    that FPIR 1e-3 rests on thousands of non-mated searches, not hundreds.
    Returns the searches and the mean gallery size.
    """
    people, inverse = np.unique(names, return_inverse=True)
    first_found = np.full(len(people), -1)
    for index in np.flatnonzero(found)[::-1]:
        first_found[inverse[index]] = index
    photos = np.bincount(inverse, minlength=len(people))
    eligible = np.flatnonzero((first_found >= 0) & (photos >= 2))
    if len(eligible) < 2:
        raise ValueError("open-set identification needs at least two people with two photos")
    rng = np.random.default_rng(seed)
    mated_scores, mated_correct, non_mated_scores = [], [], []
    gallery_size = len(eligible) // 2
    for _ in range(splits):
        enrolled = rng.choice(eligible, gallery_size, replace=False)
        gallery_rows = first_found[enrolled]
        is_enrolled = np.isin(inverse, enrolled)
        probes = np.setdiff1d(np.arange(len(names)), gallery_rows)
        scores = embeddings[probes] @ embeddings[gallery_rows].T
        best = np.argmax(scores, axis=1)
        best_score = np.where(found[probes], scores[np.arange(len(probes)), best], -np.inf)
        correct = enrolled[best] == inverse[probes]
        mated = is_enrolled[probes]
        mated_scores.append(best_score[mated])
        mated_correct.append(correct[mated])
        non_mated_scores.append(best_score[~mated])
        scores.fill(0)
    searches = Searches(
        np.concatenate(mated_scores).astype(np.float64),
        np.concatenate(mated_correct),
        np.concatenate(non_mated_scores).astype(np.float64),
    )
    return searches, gallery_size
