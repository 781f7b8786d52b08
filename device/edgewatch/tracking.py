"""One alert per person per appearance: faces linked across frames into tracks.

A camera sees the same person in many consecutive frames; reporting every
frame floods the control room and, worse, turns one borderline face into a
run of alerts. The tracker links each frame's faces to the faces of earlier
frames by position (box overlap, or a centre close relative to the face's
size), so that one walk past the camera is one *track*. The pipeline then
alerts once per track and subject, and only when enough of the track's
frames agree (:class:`TrackingPolicy`).

What a track holds, and why that respects the privacy invariant: for every
face, only its last box (a position in the image, not a description of the
face) and frame counts; for faces whose frame matched a listed subject, that
subject's agreeing-frame count and best score. No embedding, score or
keypoint of a face that did not match is kept: a track's evidence is built
from per-frame match decisions only. A track is forgotten ``max_gap_s`` of
stream time after its face was last seen.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgewatch.vision.types import ImageArray

Box = tuple[float, float, float, float]


class TrackingPolicy(BaseModel):
    """How faces are linked across frames and how many frames an alert needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    link_frames: bool = Field(
        default=True,
        description="Link faces across frames; false for unrelated still photos, where every "
        "face is its own track and alerts on its own (confirm_frames must then be 1).",
    )
    confirm_frames: int = Field(
        default=2,
        ge=1,
        le=100,
        description="Frames of one track that must match the same subject before it is alerted.",
    )
    max_gap_s: float = Field(
        default=1.5,
        gt=0.0,
        le=60.0,
        description="Stream seconds a face may go unseen before its track ends.",
    )
    min_overlap: float = Field(
        default=0.2,
        gt=0.0,
        le=1.0,
        description="Box overlap (IoU) that links a face to a track.",
    )
    max_centre_shift: float = Field(
        default=0.6,
        gt=0.0,
        le=5.0,
        description="Alternatively, centre distance in face widths that links a face to a track.",
    )

    scene_change: float = Field(
        default=0.3,
        gt=0.0,
        le=1.0,
        description="Colour-histogram distance between successive frames (Bhattacharyya, "
        "0-1) above which every track ends: a cut, or the camera moved. On the clips, "
        "ordinary frames differ by at most 0.16 and cuts by 0.41 or more; 1 disables.",
    )

    @model_validator(mode="after")
    def _stills_alert_alone(self) -> TrackingPolicy:
        if not self.link_frames and self.confirm_frames != 1:
            raise ValueError("confirm_frames must be 1 when link_frames is false")
        return self

    @classmethod
    def stills(cls) -> TrackingPolicy:
        """For unrelated photos: no linking, every matching face alerts."""
        return cls(link_frames=False, confirm_frames=1)


@dataclass(slots=True)
class SubjectEvidence:
    """The frames of one track that matched one subject."""

    frames: int = 0
    best_score: float = -1.0
    streak: int = 0
    """Matching frames in a row, not interrupted by a frame matching another subject."""


@dataclass(slots=True)
class Track:
    """One face followed across frames."""

    track_id: int
    """Unique on the unit: milliseconds at tracker start times 1000, plus a count."""
    box: Box
    first_capture_time: float
    """Unix capture time of the track's first frame (for the alert's summary)."""
    last_seen: float
    """Stream time of the latest frame with this face (tracks expire by stream time)."""
    frames: int = 1
    evidence: dict[str, SubjectEvidence] = field(default_factory=dict)
    alerted: set[str] = field(default_factory=set)

    def record_match(self, subject: str, score: float) -> SubjectEvidence:
        """Count a frame in which this track's face matched ``subject``.

        A match to another subject breaks every other subject's streak; a frame
        in which the face matched nobody breaks none (a weaker view of the same
        person is not evidence against them).
        """
        for other, evidence in self.evidence.items():
            if other != subject:
                evidence.streak = 0
        evidence = self.evidence.setdefault(subject, SubjectEvidence())
        evidence.frames += 1
        evidence.streak += 1
        evidence.best_score = max(evidence.best_score, score)
        return evidence

    def confirmed(self, subject: str, policy: TrackingPolicy) -> bool:
        """The last ``confirm_frames`` matches of this track all named ``subject``."""
        evidence = self.evidence.get(subject)
        return evidence is not None and evidence.streak >= policy.confirm_frames

    def __repr__(self) -> str:
        return f"Track({self.track_id}, frames={self.frames})"


class Tracker:
    """Links each frame's face boxes to live tracks; forgets tracks gone quiet."""

    def __init__(self, policy: TrackingPolicy | None = None) -> None:
        self.policy = policy or TrackingPolicy()
        self._tracks: list[Track] = []
        self.tracks_started = 0
        self.scene_changes = 0
        self._scene = SceneChange(self.policy.scene_change)
        self._first_id = time.time_ns() // 1_000_000 * 1000

    def new_frame(self, image: ImageArray) -> None:
        """Look at the frame as a whole before its faces are linked: a cut ends every track."""
        if self.policy.link_frames and self._scene.changed(image):
            self.scene_changes += 1
            self._tracks.clear()

    def update(self, stream_time: float, capture_time: float, boxes: Sequence[Box]) -> list[Track]:
        """The track of each box, in order; unlinked boxes start new tracks."""
        self._expire(stream_time)
        if not self.policy.link_frames:
            self._tracks.clear()
        candidates = sorted(
            (
                (_closeness(track.box, box), t, b)
                for t, track in enumerate(self._tracks)
                for b, box in enumerate(boxes)
            ),
            reverse=True,
        )
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for closeness, t, b in candidates:
            if closeness <= 0.0 or t in used or b in assigned:
                continue
            if not self._linked(self._tracks[t].box, boxes[b]):
                continue
            assigned[b] = self._tracks[t]
            used.add(t)
        result = []
        for b, box in enumerate(boxes):
            track = assigned.get(b)
            if track is None:
                track_id = self._first_id + self.tracks_started
                track = Track(track_id, box, capture_time, stream_time)
                self._tracks.append(track)
                self.tracks_started += 1
            else:
                track.box = box
                track.last_seen = stream_time
                track.frames += 1
            result.append(track)
        return result

    def _expire(self, stream_time: float) -> None:
        limit = self.policy.max_gap_s
        self._tracks = [t for t in self._tracks if stream_time - t.last_seen <= limit]

    def _linked(self, previous: Box, current: Box) -> bool:
        if iou(previous, current) >= self.policy.min_overlap:
            return True
        width = max((previous[2] - previous[0] + current[2] - current[0]) / 2, 1e-6)
        return _centre_distance(previous, current) / width <= self.policy.max_centre_shift


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _centre_distance(a: Box, b: Box) -> float:
    dx = (a[0] + a[2] - b[0] - b[2]) / 2
    dy = (a[1] + a[3] - b[1] - b[3]) / 2
    return float((dx * dx + dy * dy) ** 0.5)


def _closeness(a: Box, b: Box) -> float:
    """Ordering key for greedy linking: overlap first, then nearness of centres."""
    width = max((a[2] - a[0] + b[2] - b[0]) / 2, 1e-6)
    return iou(a, b) + 1.0 / (1.0 + _centre_distance(a, b) / width)


class SceneChange:
    """Notices a cut (or a camera knocked aside) between successive frames.

    Faces are linked by position, so across a cut the person now standing
    where someone stood a moment ago would inherit their track. A coarse
    hue-saturation histogram of a 64x36 thumbnail of the whole frame is
    enough to see the cut. It describes the scene's colours, not a face,
    and the thumbnail is overwritten at once; only the histogram of the
    previous frame (128 numbers) is kept.
    """

    SIZE = (64, 36)
    BINS = (16, 8)

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._previous: np.ndarray | None = None

    def changed(self, image: ImageArray) -> bool:
        """Whether ``image`` starts a new scene (the first frame does not)."""
        thumbnail = cv2.resize(image, self.SIZE, interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(thumbnail, cv2.COLOR_BGR2HSV)
        histogram = cv2.calcHist([hsv], [0, 1], None, list(self.BINS), [0, 180, 0, 256])
        thumbnail.fill(0)
        hsv.fill(0)
        cv2.normalize(histogram, histogram)
        previous, self._previous = self._previous, histogram
        if previous is None:
            return False
        distance = cv2.compareHist(previous, histogram, cv2.HISTCMP_BHATTACHARYYA)
        return bool(distance > self.threshold)
