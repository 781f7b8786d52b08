"""Turning pydantic validation errors into the one line a user reads.

Every typed settings object (configuration, model manifest, backend params
and options) is validated through :func:`validated`, so all of them report
mistakes the same way: the field's dotted path and what is wrong with it,
never the offending value (a value might be a path to a photo, or worse).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from edgewatch.errors import EdgewatchError

ModelT = TypeVar("ModelT", bound=BaseModel)


def describe(exc: ValidationError) -> str:
    """``field.path: problem; other.field: problem`` without input values."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )


def validated(
    model: type[ModelT], raw: Mapping[str, Any], what: str, error: type[EdgewatchError]
) -> ModelT:
    """``raw`` parsed as ``model``, or ``error("{what}: {problems}")``."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{what}: {describe(exc)}") from None
