"""The one place that creates TFLite interpreters.

LiteRT (``ai-edge-litert``) is the maintained successor of ``tflite-runtime``
and runs the same ``.tflite`` files faster; ``tflite-runtime`` stays as a
fallback for platforms where LiteRT has no wheel.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgewatch.errors import ModelError

log = logging.getLogger(__name__)


def _interpreter_class() -> tuple[Any, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        raise ModelError(
            "no TFLite interpreter installed: pip install ai-edge-litert (or tflite-runtime)"
        ) from None


def runtime_name() -> str:
    """Which interpreter package is in use, for status reports and benchmarks."""
    return _interpreter_class()[1]


def make_interpreter(path: Path, num_threads: int = 1) -> Any:
    """An allocated interpreter for ``path`` (already hash-checked by the caller)."""
    interpreter_class, name = _interpreter_class()
    try:
        interpreter = interpreter_class(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: {name} cannot load this model: {exc}") from None
    log.debug("loaded %s with %s (%d threads)", path.name, name, num_threads)
    return interpreter
