"""Assembles the appliance from its configuration and runs the camera loop.

This is the one place that turns configuration into working parts (model
manifest, detector, embedder, decision policy); the command line, the
benchmark and the tests all go through it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgewatch.accuracy.calibration import check_threshold
from edgewatch.camera.base import Camera
from edgewatch.config import VisionConfig
from edgewatch.errors import ConfigError
from edgewatch.matching.gallery import Gallery
from edgewatch.matching.matcher import Matcher, MatchPolicy
from edgewatch.pipeline import Counters, MatchReport, Pipeline
from edgewatch.progress import ProgressLine
from edgewatch.security.keys import key_id, load_sealing_key, load_verify_key
from edgewatch.timing import StageClock
from edgewatch.tracking import TrackingPolicy
from edgewatch.vision.detect import create_detector
from edgewatch.vision.embed import Embedder, create_embedder
from edgewatch.vision.encoder import FaceEncoder
from edgewatch.vision.landmarks import create_landmarker
from edgewatch.vision.models import ModelManifest
from edgewatch.watchlist.device import AcceptedVersions, DeviceTrust
from edgewatch.watchlist.format import Header, ModelRef


@dataclass(slots=True)
class VisionParts:
    """The models an appliance runs, loaded and hash-checked."""

    manifest: ModelManifest
    encoder: FaceEncoder
    policy: MatchPolicy
    tracking: TrackingPolicy

    def with_policy(self, policy: MatchPolicy) -> VisionParts:
        return VisionParts(self.manifest, self.encoder, policy, self.tracking)


def load_manifest(config: VisionConfig) -> ModelManifest:
    """The shipped manifest plus any extra manifests the configuration names."""
    manifest = ModelManifest.default()
    for extra in config.model_manifests:
        manifest.extend(extra)
    return manifest


def resolve_policy(
    config: VisionConfig, embedder: Embedder, manifest: ModelManifest
) -> MatchPolicy:
    """Threshold and margin: configured values, else the embedder model's defaults.

    A threshold below the model's calibrated floor is refused: there even a
    one-person list would exceed the product's false-alert limit.
    """
    threshold = config.matching.threshold
    margin = config.matching.margin
    policy = MatchPolicy(
        threshold=embedder.spec.threshold if threshold is None else threshold,
        margin=embedder.spec.margin if margin is None else margin,
    )
    calibration = manifest.entry(embedder.spec.model_id).calibration
    if calibration is not None:
        check_threshold(embedder.spec.model_id, calibration, policy.threshold)
    return policy


def load_vision(config: VisionConfig) -> VisionParts:
    """Load the configured detector and embedder (hash-checked) and the policy."""
    manifest = load_manifest(config)
    detector = create_detector(manifest, config.detector.model, **config.detector.options)
    landmarker = None
    if config.landmarker.model is not None:
        landmarker = create_landmarker(
            manifest, config.landmarker.model, **config.landmarker.options
        )
    embedder = create_embedder(manifest, config.embedder.model, **config.embedder.options)
    encoder = FaceEncoder(
        detector,
        embedder,
        landmarker,
        max_faces=config.quality.max_faces_per_frame,
        min_face_px=config.quality.min_face_px,
        quality=config.quality.rules(),
    )
    return VisionParts(
        manifest, encoder, resolve_policy(config, embedder, manifest), config.tracking
    )


def build_pipeline(parts: VisionParts, gallery: Gallery, crop_matches: bool = False) -> Pipeline:
    """The pipeline matching against ``gallery`` with the configured policy."""
    return Pipeline(parts.encoder, Matcher(gallery, parts.policy), crop_matches, parts.tracking)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a run did, in aggregate."""

    counters: Counters
    wall_seconds: float
    stage_ms: dict[str, float]

    @property
    def fps(self) -> float:
        return self.counters.frames / self.wall_seconds if self.wall_seconds > 0 else 0.0


def run_camera(
    camera: Camera,
    pipeline: Pipeline,
    on_match: Callable[[MatchReport], None],
    max_frames: int | None = None,
    progress: ProgressLine | None = None,
    on_frame: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> RunSummary:
    """Feed frames from an opened camera through the pipeline until it ends or ``stop`` is set.

    ``on_frame`` runs before each frame is processed: the caller checks the
    watch-list's expiry there (so a list stops matching at its expiry to
    within one frame) and sends its periodic status.
    """
    clock: StageClock = pipeline.clock
    started = time.perf_counter()
    while max_frames is None or pipeline.counters.frames < max_frames:
        if stop is not None and stop.is_set():
            break
        with clock.measure("decode"):
            frame = camera.read()
        if frame is None:
            clock.samples["decode"].pop()
            break
        if on_frame is not None:
            on_frame()
        for report in pipeline.process(frame):
            on_match(report)
        if progress is not None:
            counters = pipeline.counters
            progress.update(
                counters.frames, f"faces {counters.faces_seen}, matches {counters.matches}"
            )
    if progress is not None:
        progress.update(pipeline.counters.frames, force=True)
        progress.finish()
    return RunSummary(pipeline.counters, time.perf_counter() - started, clock.medians_ms())


def embedder_model_ref(parts: VisionParts) -> ModelRef:
    """The embedder's id and model-file hash, as watch-list headers record them."""
    model_id = parts.encoder.embedder.spec.model_id
    return ModelRef(id=model_id, sha256=parts.manifest.entry(model_id).sha256)


def policy_for_watchlist(header: Header, config: VisionConfig) -> MatchPolicy:
    """The issued policy; the unit's configuration may make it stricter, never looser."""
    issued = MatchPolicy(threshold=header.policy.threshold, margin=header.policy.margin)
    wanted = config.matching
    for name, value in (("threshold", wanted.threshold), ("margin", wanted.margin)):
        if value is not None and value < getattr(issued, name):
            raise ConfigError(
                f"matching {name} {value} is below the {getattr(issued, name)} the watch-list "
                f"{header.watchlist_id} was issued with; a unit may only be stricter"
            )
    return MatchPolicy(
        threshold=issued.threshold if wanted.threshold is None else wanted.threshold,
        margin=issued.margin if wanted.margin is None else wanted.margin,
    )


def device_trust(
    parts: VisionParts,
    issuer_keys: Sequence[Path],
    device_key: Path,
    state_dir: Path | None,
    what: str,
) -> DeviceTrust:
    """What the unit checks a watch-list against: pinned issuers, its key, its model."""
    issuers = {}
    for path in issuer_keys:
        key = load_verify_key(path, "issuer key")
        issuers[key_id(key)] = key
    state = None
    if state_dir is not None:
        if not state_dir.is_dir():
            raise ConfigError(f"{what} directory {state_dir}: does not exist")
        state = state_dir / "watchlist-versions.json"
    return DeviceTrust(
        issuers=issuers,
        device_key=load_sealing_key(device_key, "device key"),
        model=embedder_model_ref(parts),
        accepted=AcceptedVersions(state),
        manifest=parts.manifest,
    )
