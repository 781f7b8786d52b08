"""Detection-error trade-off (DET) curves as a PNG, one line per embedder.

matplotlib is only needed here, on the desk where accuracy is evaluated,
never on a unit; it comes with the ``eval`` extra (``pip install
edgewatch[eval]``), and its absence is a clear error, not a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgewatch.accuracy.evaluate import ModelEvaluation
from edgewatch.errors import ConfigError, EdgewatchError


def write_det_plot(results: Sequence[ModelEvaluation], path: Path, title: str) -> None:
    """FNIR against FPIR on log axes, with the FPIR targets marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "drawing the DET curve needs matplotlib: pip install 'edgewatch[eval]'"
        ) from None
    figure, axes = plt.subplots(figsize=(7, 5), dpi=120)
    for result in results:
        fpir, fnir = result.det
        points = [(x, y) for x, y in zip(fpir, fnir, strict=True) if x > 0 and y > 0]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, label=result.model_id, linewidth=1.5)
    for target in (1e-2, 1e-3):
        axes.axvline(target, color="grey", linestyle=":", linewidth=1)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("false-positive identification rate (non-mated searches)")
    axes.set_ylabel("false-negative identification rate (mated searches)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    try:
        figure.savefig(path)
    except OSError as exc:
        raise EdgewatchError(f"{path}: cannot write the DET plot: {exc}") from None
    finally:
        plt.close(figure)
