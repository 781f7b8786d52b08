"""The TFLite interpreter: LiteRT first, tflite-runtime as fallback, else a clear error."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from edgewatch.errors import ModelError
from edgewatch.vision.runtime import make_interpreter, runtime_name


def test_litert_is_preferred() -> None:
    assert runtime_name() == "ai-edge-litert"


def test_falls_back_to_tflite_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where LiteRT has no wheel, tflite-runtime's Interpreter (same API) is used."""
    from ai_edge_litert.interpreter import Interpreter as LiteRTInterpreter

    fallback = types.ModuleType("tflite_runtime.interpreter")
    fallback.Interpreter = LiteRTInterpreter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fallback)
    assert runtime_name() == "tflite-runtime"


def test_no_interpreter_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(ModelError, match="pip install ai-edge-litert"):
        runtime_name()


def test_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.tflite"
    bogus.write_bytes(b"\x00" * 1024)
    with pytest.raises(ModelError, match="cannot load this model"):
        make_interpreter(bogus)
