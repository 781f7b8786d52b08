"""The appliance's configuration: typed, validated, every field described.

A unit reads it from a TOML file; ``edgewatch simulate`` builds the same
object from its command-line options, so both paths share one validation.
Unknown keys are errors (a misspelt option must not be silently ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgewatch.camera.registry import CameraConfig
from edgewatch.errors import ConfigError
from edgewatch.fileio import read_toml
from edgewatch.tracking import TrackingPolicy
from edgewatch.validation import validated
from edgewatch.vision.quality import QualityRules

DEFAULT_DETECTOR = "blazeface-full-range"
DEFAULT_EMBEDDER = "dlib-resnet-v1-litert-fp32"
DEFAULT_LANDMARKER = "facemesh-v1"


class DetectorConfig(BaseModel):
    """Which detector model runs, with backend options (validated by the backend)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(default=DEFAULT_DETECTOR, description="Model id from the manifest.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Backend options, e.g. tiling or num_threads."
    )


class LandmarkerConfig(BaseModel):
    """The landmark model that refines alignment points and gates on face presence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(
        default=DEFAULT_LANDMARKER,
        description="Model id from the manifest, or 'none' to align on the detector's keypoints.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Backend options, e.g. min_presence or num_threads."
    )

    @field_validator("model")
    @classmethod
    def _none_disables(cls, value: str | None) -> str | None:
        return None if value in (None, "none") else value


class QualityConfig(BaseModel):
    """Gates a face must pass before it is embedded; a refused face is discarded unembedded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_face_px: float = Field(
        default=40.0,
        ge=0.0,
        description="Minimum face width in pixels: smaller faces are too small to identify.",
    )
    max_faces_per_frame: int = Field(
        default=16, ge=1, le=256, description="Faces beyond this many in a frame are refused."
    )
    min_eye_distance_px: float = Field(
        default=15.0,
        ge=0.0,
        description="Minimum distance between the eyes in pixels, measured on the refined "
        "landmarks (about 0.4 of the face's width: 15 px is a 40-pixel face).",
    )
    min_sharpness: float = Field(
        default=10.0,
        ge=0.0,
        description="Minimum variance of the Laplacian of the face at 112x112: lower is motion "
        "blur or focus blur (sharp faces in the clips score 30-50; reference photos need 60).",
    )
    max_yaw_ratio: float = Field(
        default=0.8,
        ge=0.0,
        description="Largest sideways turn: the nose's offset from the eyes' midpoint in eye "
        "distances (0 frontal, about 0.5 at 45 degrees, near profile at 0.8; reference "
        "photos allow 0.35). Turned faces were no likelier to be falsely accepted on LFW, "
        "and a face turned 0.65 is still identifiable (docs/accuracy.md).",
    )

    def rules(self) -> QualityRules:
        """The gate the encoder applies to every face before embedding it."""
        return QualityRules(
            min_eye_distance_px=self.min_eye_distance_px,
            min_sharpness=self.min_sharpness,
            max_yaw_ratio=self.max_yaw_ratio,
        )


class EmbedderConfig(BaseModel):
    """Which embedder model turns aligned faces into templates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(default=DEFAULT_EMBEDDER, description="Model id from the manifest.")
    options: dict[str, Any] = Field(default_factory=dict, description="Backend options.")


class MatchingConfig(BaseModel):
    """The decision rule; unset values take the embedder model's calibrated defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="Minimum cosine similarity for a match."
    )
    margin: float | None = Field(
        default=None, ge=0.0, le=2.0, description="Minimum lead over the runner-up subject."
    )


class VisionConfig(BaseModel):
    """The face models and decision policy: what the device and the issuing tool share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    landmarker: LandmarkerConfig = Field(default_factory=LandmarkerConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    tracking: TrackingPolicy = Field(
        default_factory=TrackingPolicy,
        description="Linking faces across frames; frames that must agree before an alert.",
    )
    model_manifests: list[Path] = Field(
        default_factory=list,
        description="Extra model manifests layered on the shipped one (e.g. research models).",
    )


class AppConfig(VisionConfig):
    """Everything the appliance needs to run."""

    camera: CameraConfig = Field(description="Where frames come from.")


def parse_vision_config(raw: dict[str, Any], origin: str) -> VisionConfig:
    """Validate the model sections alone (for tools that run no camera)."""
    return validated(VisionConfig, raw, f"{origin}: invalid configuration", ConfigError)


def parse_config(raw: dict[str, Any], origin: str) -> AppConfig:
    """Validate a configuration mapping; errors name the field and the problem."""
    return validated(AppConfig, raw, f"{origin}: invalid configuration", ConfigError)


def load_config(path: Path) -> AppConfig:
    """Read and validate a TOML configuration file."""
    return parse_config(read_toml(path, "configuration"), str(path))
