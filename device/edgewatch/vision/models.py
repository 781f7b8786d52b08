"""The model manifest: which model files exist, where, and what they must hash to.

A model is only ever loaded through :func:`ModelManifest.resolve`, which checks
the file's sha256 against the manifest before anything reads it, so a swapped
or corrupted model file is refused with a clear message instead of producing
silently wrong matches.

The shipped manifest lives in ``models/manifest.toml`` at the project root
(``share/edgewatch/models`` in an installed wheel). Further manifests, e.g. for
research-only models used in tests and benchmarks, can be layered on top with
:meth:`ModelManifest.extend`; they are never part of the shipped defaults.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgewatch.accuracy.calibration import Calibration
from edgewatch.errors import ModelError
from edgewatch.validation import validated

MANIFEST_NAME = "manifest.toml"
MODELS_DIR_ENV = "EDGEWATCH_MODELS_DIR"


class ModelEntry(BaseModel):
    """One model: where its bytes are, what they hash to, and how to run it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["detector", "landmarker", "embedder"] = Field(description="What the model does.")
    backend: str = Field(description="Registry name of the code that runs it.")
    file: str | None = Field(
        default=None, description="Path relative to the manifest's folder, or absolute."
    )
    package_resource: str | None = Field(
        default=None,
        description="'package:relative/path' inside an installed Python package.",
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the file.")
    licence: str = Field(description="SPDX id or short licence statement.")
    licence_file: str | None = Field(default=None, description="Licence text beside it.")
    source: str = Field(description="Where the file comes from (registry package and path).")
    research_only: bool = Field(
        default=False, description="True for models that may never be a shipped default."
    )
    description: str = Field(default="", description="What it is, in one line.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Backend-specific settings, validated by the backend."
    )
    calibration: Calibration | None = Field(
        default=None,
        description="Embedders: impostor tail, threshold floor (from 'edgewatch calibrate').",
    )

    @model_validator(mode="after")
    def _exactly_one_location(self) -> ModelEntry:
        if (self.file is None) == (self.package_resource is None):
            raise ValueError("give exactly one of 'file' or 'package_resource'")
        return self


class ManifestFile(BaseModel):
    """The TOML document as a whole."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    models: dict[str, ModelEntry]


class ModelManifest:
    """Model entries by id, each remembering the folder its paths are relative to."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[ModelEntry, Path]] = {}
        self._verified: set[Path] = set()

    @classmethod
    def load(cls, path: Path) -> ModelManifest:
        """Read one manifest file."""
        manifest = cls()
        manifest.extend(path)
        return manifest

    @classmethod
    def default(cls) -> ModelManifest:
        """The manifest of the models that ship with edgewatch."""
        return cls.load(default_models_dir() / MANIFEST_NAME)

    def extend(self, path: Path) -> None:
        """Add the entries of another manifest; an id already present is an error."""
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"{path}: model manifest not found") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ModelError(f"{path}: cannot read model manifest: {exc}") from None
        parsed = validated(ManifestFile, raw, f"{path}: invalid model manifest", ModelError)
        for model_id, entry in parsed.models.items():
            if model_id in self._entries:
                raise ModelError(f"{path}: model id {model_id!r} is already defined")
            self._entries[model_id] = (entry, path.parent.resolve())

    def ids(self, kind: str | None = None) -> list[str]:
        """Model ids, optionally only those of one kind, in manifest order."""
        return [i for i, (e, _) in self._entries.items() if kind is None or e.kind == kind]

    def entry(self, model_id: str) -> ModelEntry:
        """The entry for ``model_id``; the error lists the ids that exist."""
        try:
            return self._entries[model_id][0]
        except KeyError:
            known = ", ".join(self.ids()) or "none"
            raise ModelError(f"unknown model {model_id!r} (known: {known})") from None

    def resolve(self, model_id: str) -> Path:
        """The model's file, after checking that it exists and hashes as declared."""
        entry = self.entry(model_id)
        base = self._entries[model_id][1]
        path = _locate(entry, base)
        if path in self._verified:
            return path
        if not path.is_file():
            raise ModelError(f"model {model_id!r}: file {path} not found")
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise ModelError(
                f"model {model_id!r}: {path} has sha256 {actual}, manifest expects "
                f"{entry.sha256}; refusing to load an altered model"
            )
        self._verified.add(path)
        return path


def _locate(entry: ModelEntry, base: Path) -> Path:
    if entry.file is not None:
        candidate = Path(entry.file)
        return candidate if candidate.is_absolute() else base / candidate
    assert entry.package_resource is not None
    package, _, relative = entry.package_resource.partition(":")
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise ModelError(
            f"model package {package!r} is not installed (pip install edgewatch pulls it in)"
        ) from None
    return Path(str(root.joinpath(relative)))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_models_dir() -> Path:
    """Where the shipped models are: env override, source checkout, or installed data."""
    override = os.environ.get(MODELS_DIR_ENV)
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parents[3] / "models"
    if (checkout / MANIFEST_NAME).is_file():
        return checkout
    return Path(sys.prefix) / "share" / "edgewatch" / "models"
