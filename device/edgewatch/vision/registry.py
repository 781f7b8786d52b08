"""Finding the code that runs a manifest entry: one lookup for every model kind.

Each kind (detector, landmarker, embedder) keeps a table from the manifest's
``backend`` name to its implementation; :func:`backend_for` checks the entry
is of the expected kind and names the known backends when it is not found.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from edgewatch.errors import ModelError
from edgewatch.vision.models import ModelManifest

BackendT = TypeVar("BackendT")


def backend_for(
    manifest: ModelManifest, model_id: str, kind: str, backends: Mapping[str, BackendT]
) -> BackendT:
    """The implementation registered for ``model_id``'s backend."""
    entry = manifest.entry(model_id)
    if entry.kind != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        raise ModelError(f"model {model_id!r} is a {entry.kind}, not {article} {kind}")
    try:
        return backends[entry.backend]
    except KeyError:
        known = ", ".join(sorted(backends)) or "none"
        raise ModelError(
            f"model {model_id!r}: unknown {kind} backend {entry.backend!r} (known: {known})"
        ) from None
