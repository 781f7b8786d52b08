"""Thresholds that mean something: impostor tails, floors and watch-list budgets.

A watch-list search compares a face with every template on the list, so the
chance that a stranger is reported grows with the list: with a false accept
rate ``FAR(t)`` per comparison at threshold ``t`` and ``N`` templates, the
false-positive identification rate per face searched is

    FPIR(N, t) = 1 - (1 - FAR(t)) ** N   (about N * FAR(t) while small)

assuming comparisons with different templates err independently. NPL's
reference point for a deployed system, 0.017% with 10,000 entries, means
``FAR`` of about 1.7e-8 per comparison: far beyond what a million measured
impostor comparisons can resolve. So the calibration fits the upper tail of
the measured impostor distribution with a normal tail (least squares on the
normal quantile plot of the top ``TAIL_FRACTION`` of scores) and uses the fit
beyond the measured range; every use says when a figure is extrapolated.

Each shipped embedder carries its calibration in ``models/manifest.toml``
(``edgewatch calibrate`` prints the table). From it the product derives:

- the *floor*: the threshold at which even a one-template list reaches the
  largest FPIR the product ever allows (:data:`PRODUCT_MAX_FPIR`, South Wales
  Police's authorised limit of 1 false alert in 1,000). No unit runs below it.
- the *budget*: a watch-list of ``N`` templates at threshold ``t`` must have
  ``FPIR(N, t)`` at or below the rate its deployment authorises; otherwise
  the issuing tool and the unit refuse it and say what size or threshold
  would fit, and what the higher threshold costs in missed matches.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Final

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgewatch.accuracy.metrics import Scores, resolvable, threshold_at_rate
from edgewatch.errors import ConfigError

PRODUCT_MAX_FPIR: Final = 1e-3
"""The largest false-positive identification rate per face any deployment may authorise."""

TAIL_FRACTION: Final = 1e-2
"""Share of the highest impostor scores the normal tail is fitted to."""

MEASURED_RATES: Final = (1e-2, 1e-3, 1e-4, 1e-5)

_NORMAL = NormalDist()


class Calibration(BaseModel):
    """An embedder's impostor tail, as measured by ``edgewatch calibrate``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field(min_length=1, description="What the scores were measured on, and how.")
    impostor_comparisons: int = Field(gt=0, description="Number of impostor scores measured.")
    tail_mean: float = Field(description="Normal tail fit: FAR(t) = Q((t - mean) / std).")
    tail_std: float = Field(gt=0, description="Normal tail fit's spread.")
    far_thresholds: list[tuple[float, float]] = Field(
        description="Measured (FAR per comparison, threshold) points, for the record."
    )
    tar_thresholds: list[tuple[float, float]] = Field(
        default_factory=list,
        description="Measured (threshold, true accept rate on same-person pairs) points.",
    )
    floor: float = Field(ge=-1.0, le=1.0, description="Lowest threshold a unit may use.")

    @model_validator(mode="after")
    def _floor_matches_fit(self) -> Calibration:
        expected = self.threshold_for_far(PRODUCT_MAX_FPIR)
        if abs(expected - self.floor) > 5e-4:
            raise ValueError(
                f"floor {self.floor} disagrees with the tail fit ({expected:.4f} gives FPIR "
                f"{PRODUCT_MAX_FPIR:g} for one template); recalibrate"
            )
        return self

    # ------------------------------------------------------------------ the model

    def far(self, threshold: float) -> float:
        """False accept rate per comparison at ``threshold`` (tail fit)."""
        return 1.0 - _NORMAL.cdf((threshold - self.tail_mean) / self.tail_std)

    def threshold_for_far(self, far: float) -> float:
        """The threshold whose false accept rate per comparison is ``far`` (tail fit)."""
        return self.tail_mean + self.tail_std * _NORMAL.inv_cdf(1.0 - far)

    def fpir(self, templates: int, threshold: float) -> float:
        """Predicted false-positive identification rate per face for a list of ``templates``."""
        return -math.expm1(templates * math.log1p(-self.far(threshold)))

    def threshold_for(self, templates: int, fpir: float) -> float:
        """The threshold at which a list of ``templates`` has false-positive rate ``fpir``."""
        per_comparison = -math.expm1(math.log1p(-fpir) / max(templates, 1))
        return self.threshold_for_far(per_comparison)

    def max_templates(self, threshold: float, fpir: float) -> int:
        """The most templates a list may hold at ``threshold`` within ``fpir``."""
        far = self.far(threshold)
        if far <= 0.0:
            return 2**62
        return math.floor(math.log1p(-fpir) / math.log1p(-far))

    def tar_at(self, threshold: float) -> float | None:
        """Measured true accept rate at ``threshold`` (interpolated); None beyond the record."""
        points = sorted(self.tar_thresholds)
        if not points or threshold > points[-1][0]:
            return None
        xs = [t for t, _ in points]
        ys = [r for _, r in points]
        return float(np.interp(threshold, xs, ys))

    def extrapolated(self, far: float) -> bool:
        """Whether ``far`` lies beyond what the measured comparisons resolve."""
        return not resolvable(far, self.impostor_comparisons)


# --------------------------------------------------------------------------- fitting


def fit_normal_tail(impostor: Scores, fraction: float = TAIL_FRACTION) -> tuple[float, float]:
    """(mean, std) of the normal whose upper tail best fits the top ``fraction`` of scores.

    On the normal quantile plot a normal tail is a straight line: score =
    mean + std * z, with z = Q^-1(exceedance). Fitting only the top of the
    distribution follows the tail's own slope, which is what false accepts
    at high thresholds depend on, rather than the bulk's.
    """
    ordered = np.sort(impostor)[::-1]
    count = max(int(len(ordered) * fraction), 20)
    if len(ordered) < count or count < 20:
        raise ConfigError(f"{len(ordered)} impostor scores are too few to fit a tail")
    top = ordered[:count]
    exceedance = (np.arange(1, count + 1) - 0.5) / len(ordered)
    z = np.array([_NORMAL.inv_cdf(1.0 - p) for p in exceedance])
    std, mean = np.polyfit(z, top, 1)
    if std <= 0:
        raise ConfigError("impostor scores have no usable upper tail (all equal?)")
    return float(mean), float(std)


def calibrate(
    impostor: Scores,
    data: str,
    same_pair_scores: Scores | None = None,
) -> Calibration:
    """A model's calibration from its impostor scores (and same-person pair scores)."""
    mean, std = fit_normal_tail(impostor)
    floor = mean + std * _NORMAL.inv_cdf(1.0 - PRODUCT_MAX_FPIR)
    far_points = [
        (rate, round(threshold_at_rate(impostor, rate), 4))
        for rate in MEASURED_RATES
        if rate * len(impostor) >= 10
    ]
    tar_points: list[tuple[float, float]] = []
    if same_pair_scores is not None and len(same_pair_scores):
        for threshold in np.round(np.arange(floor - 0.1, 1.0, 0.01), 4):
            rate = float(np.mean(same_pair_scores >= threshold))
            tar_points.append((float(threshold), round(rate, 4)))
    return Calibration(
        data=data,
        impostor_comparisons=len(impostor),
        tail_mean=round(mean, 6),
        tail_std=round(std, 6),
        far_thresholds=far_points,
        tar_thresholds=tar_points,
        floor=round(floor, 4),
    )


def calibration_toml(model_id: str, calibration: Calibration, command: str) -> str:
    """The ``[models.<id>.calibration]`` table to paste into a model manifest."""

    def pairs(points: list[tuple[float, float]]) -> str:
        return "[" + ", ".join(f"[{a:g}, {b:g}]" for a, b in points) + "]"

    c = calibration
    return "\n".join(
        [
            f"[models.{model_id}.calibration]",
            f"# {command}",
            f"data = {_toml_string(c.data)}",
            f"impostor_comparisons = {c.impostor_comparisons}",
            "# normal tail fitted to the top 1% of impostor scores: FAR(t) = Q((t - mean) / std)",
            f"tail_mean = {c.tail_mean}",
            f"tail_std = {c.tail_std}",
            "# measured (FAR per comparison, threshold) and (threshold, TAR on same pairs)",
            f"far_thresholds = {pairs(c.far_thresholds)}",
            f"tar_thresholds = {pairs(c.tar_thresholds)}",
            f"# one template at this threshold: FPIR {PRODUCT_MAX_FPIR:g}, the product's limit",
            f"floor = {c.floor}",
            "",
        ]
    )


def _toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# --------------------------------------------------------------------------- enforcement


def check_threshold(model_id: str, calibration: Calibration, threshold: float) -> None:
    """Refuse a threshold below the model's calibrated floor, saying why."""
    if threshold < calibration.floor:
        raise ConfigError(
            f"threshold {threshold} is below the calibrated floor {calibration.floor} of model "
            f"{model_id!r}: there, even a one-person watch-list would report a stranger in "
            f"more than {PRODUCT_MAX_FPIR:g} of the faces searched "
            f"(predicted {calibration.fpir(1, threshold):.1e})"
        )


def check_budget(
    model_id: str,
    calibration: Calibration,
    templates: int,
    threshold: float,
    authorised_fpir: float,
    alternatives: dict[str, tuple[Calibration, float]] | None = None,
) -> float:
    """The predicted FPIR of a list; refuses one whose size exceeds the authorised rate.

    ``alternatives`` maps other model ids to (calibration, default threshold)
    so that a refusal can name a model that would serve the list.
    """
    check_threshold(model_id, calibration, threshold)
    if not 0.0 < authorised_fpir <= PRODUCT_MAX_FPIR:
        raise ConfigError(
            f"authorised false-positive identification rate {authorised_fpir:g} must be "
            f"above 0 and at most the product's limit {PRODUCT_MAX_FPIR:g}"
        )
    predicted = calibration.fpir(templates, threshold)
    if predicted <= authorised_fpir:
        return predicted
    needed = calibration.threshold_for(templates, authorised_fpir)
    advice = [
        f"at threshold {threshold} model {model_id!r} can hold at most "
        f"{calibration.max_templates(threshold, authorised_fpir):,} templates",
        f"{templates:,} templates need threshold {needed:.3f}" + _cost(calibration, needed),
    ]
    fitting = [
        f"{other} (up to {cal.max_templates(default, authorised_fpir):,} templates at its "
        f"threshold {default})"
        for other, (cal, default) in sorted((alternatives or {}).items())
        if other != model_id and cal.max_templates(default, authorised_fpir) >= templates
    ]
    if fitting:
        advice.append("models that fit: " + ", ".join(fitting))
    extrapolated = (
        " (extrapolated from the tail fit)"
        if calibration.extrapolated(calibration.far(threshold))
        else ""
    )
    raise ConfigError(
        f"a watch-list of {templates:,} templates at threshold {threshold} with model "
        f"{model_id!r} would report a stranger in {predicted:.1e} of the faces searched"
        f"{extrapolated}, above the authorised {authorised_fpir:g}; " + "; ".join(advice)
    )


def _cost(calibration: Calibration, threshold: float) -> str:
    """What a higher threshold costs in true matches, where measured."""
    tar = calibration.tar_at(threshold)
    if tar is None:
        return " (beyond the measured range of true matches)"
    return f" (which keeps about {tar:.0%} of true matches, measured on same-person pairs)"
