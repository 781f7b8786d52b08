"""The accuracy budget applied to a watch-list, from the model manifest's calibrations.

The issuing tool and the unit both call these, with the same manifest, so a
list the issuer accepts is a list every unit with that model accepts, and a
unit refuses a list that an altered or outdated issuing tool let through.
"""

from __future__ import annotations

import math

from edgewatch.accuracy.calibration import Calibration, check_budget
from edgewatch.errors import ModelError
from edgewatch.vision.models import ModelManifest

THRESHOLD_DECIMALS = 4


def calibration_of(manifest: ModelManifest, model_id: str) -> Calibration:
    """The model's calibration; a model without one cannot serve a watch-list."""
    calibration = manifest.entry(model_id).calibration
    if calibration is None:
        raise ModelError(
            f"model {model_id!r} has no calibration in its manifest, so its false-alert rate "
            "is unknown; run 'edgewatch calibrate' and add the table it prints"
        )
    return calibration


def alternatives(manifest: ModelManifest) -> dict[str, tuple[Calibration, float]]:
    """Every calibrated embedder with its default threshold, to name one that would fit."""
    found = {}
    for model_id in manifest.ids("embedder"):
        entry = manifest.entry(model_id)
        default = entry.params.get("threshold")
        usable = entry.calibration is not None and not entry.research_only
        if usable and isinstance(default, int | float):
            assert entry.calibration is not None
            found[model_id] = (entry.calibration, float(default))
    return found


def check_watchlist(
    manifest: ModelManifest, model_id: str, templates: int, threshold: float, max_fpir: float
) -> float:
    """The list's predicted false-positive identification rate; ConfigError if over budget."""
    calibration = calibration_of(manifest, model_id)
    return check_budget(
        model_id, calibration, templates, threshold, max_fpir, alternatives(manifest)
    )


def issuing_threshold(
    manifest: ModelManifest, model_id: str, templates: int, default: float, max_fpir: float
) -> float:
    """The threshold a list is issued with when the issuer sets none.

    The model's default, raised as far as the list's size requires to stay
    within ``max_fpir`` (rounded up, so the budget holds after rounding).
    """
    calibration = calibration_of(manifest, model_id)
    needed = calibration.threshold_for(templates, max_fpir)
    scale = 10**THRESHOLD_DECIMALS
    return float(max(default, calibration.floor, math.ceil(needed * scale) / scale))
