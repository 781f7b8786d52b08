"""Frame in, match decisions out: encode the faces, match them, then discard.

The pipeline owns every buffer that holds biometric data for a frame: the
frame's pixels (handed over by the camera), the aligned face chips (inside the
:class:`~edgewatch.vision.encoder.FaceEncoder`, reused frame after frame) and
the embeddings. As soon as the frame's decisions are made, all of them are
overwritten in place, whether the frame produced a match or not and whether
processing succeeded or raised. Only :class:`MatchReport` objects leave, and
only for faces that matched an enrolled subject.

An error raised while faces are in hand leaves as an error that carries
nothing of them: edgewatch's own errors keep their messages (written never
to contain face data) but lose their traceback and chained causes, whose
frames held the face arrays; any other error is replaced by a
:class:`~edgewatch.errors.FrameError` naming only its type. See
docs/privacy.md for the whole guarantee and its limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy.typing as npt

from edgewatch.camera.base import Frame
from edgewatch.errors import ConfigError, EdgewatchError, FrameError
from edgewatch.matching.matcher import Match, Matcher
from edgewatch.timing import StageClock
from edgewatch.tracking import Track, Tracker, TrackingPolicy
from edgewatch.vision.encoder import EncodedFaces, FaceEncoder
from edgewatch.vision.types import Detection


@dataclass(frozen=True, slots=True)
class TrackSummary:
    """The appearance an alert belongs to, as of the frame that confirmed it."""

    track_id: int
    first_seen: float
    """Capture time (Unix) of the track's first frame."""
    frames: int
    """Frames the face has been seen in so far."""
    matching_frames: int
    """Of those, frames in which it matched the alerted subject."""
    best_score: float
    """Best cosine score against the subject over the track."""


@dataclass(frozen=True, slots=True)
class MatchReport:
    """A face that matched an enrolled subject: what a unit would send about it."""

    subject: str
    category: str
    score: float
    threshold: float
    margin: float
    frame_index: int
    stream_time: float
    capture_time: float
    box: tuple[int, int, int, int]
    """x0, y0, x1, y1 in frame pixels, rounded."""
    model_id: str
    track: TrackSummary | None = None
    crop: bytes | None = field(default=None, repr=False)
    """JPEG of the matched face, only when the unit seals crops to the control room."""


@dataclass(slots=True)
class Counters:
    """Aggregate counts only: nothing here identifies or describes a face."""

    frames: int = 0
    faces_seen: int = 0
    faces_discarded: int = 0
    """Faces whose data was overwritten without a match (including rejected ones)."""
    faces_rejected: int = 0
    """Of the discarded faces, those refused before embedding (quality gate, frame cap)."""
    matches: int = 0
    """Faces that matched a subject in their frame (alerts are fewer: one per track)."""


class Pipeline:
    """Runs one frame at a time through the face encoder, the matcher and the tracker."""

    def __init__(
        self,
        encoder: FaceEncoder,
        matcher: Matcher,
        crop_matches: bool = False,
        tracking: TrackingPolicy | None = None,
    ) -> None:
        """``crop_matches``: attach a JPEG of each *alerted* face (never of anyone else)."""
        model_id = encoder.embedder.spec.model_id
        if matcher.gallery.model_id != model_id:
            raise ConfigError(
                f"the gallery was built with model {matcher.gallery.model_id!r} but the "
                f"embedder is {model_id!r}; templates of different models cannot be compared"
            )
        self.encoder = encoder
        self.matcher = matcher
        self.crop_matches = crop_matches
        self.counters = Counters()
        self.clock = StageClock()
        self.tracker = Tracker(tracking)

    def process(self, frame: Frame) -> list[MatchReport]:
        """Alerts confirmed by this frame; its pixels are overwritten before returning.

        Every face is linked to its track; a face that matches a subject adds
        to its track's evidence, and the track is alerted (once per subject)
        when enough of its frames agree. With an empty gallery (no watch-list,
        or one that expired or was ended) nobody can match, so no face is
        even looked for.
        """
        if len(self.matcher.gallery) == 0:
            frame.image.fill(0)
            self.counters.frames += 1
            return []
        encoded = EncodedFaces()
        reports: list[MatchReport] = []
        matches: list[Match] = []
        failure: EdgewatchError | None = None
        try:
            encoded = self.encoder.encode(frame.image, self.clock)
            with self.clock.measure("match"):
                matches = self.matcher.decide(encoded.embeddings)
                reports = self._alerts(frame, encoded, matches)
        except Exception as exc:  # every error is made face-free, then re-raised
            failure = _face_free(exc, frame.index)
        finally:
            frame.image.fill(0)
            seen, embedded = len(encoded.detected), len(encoded.embedded)
            encoded.scrub()
        if failure is not None:
            # Raised outside the except block, so nothing chains back to the
            # frames (and arrays) of the stage that failed.
            raise failure
        self.counters.frames += 1
        self.counters.faces_seen += seen
        self.counters.faces_rejected += seen - embedded
        self.counters.matches += len(matches)
        self.counters.faces_discarded += seen - len(matches)
        return reports

    def scratch_buffers(self) -> list[npt.NDArray[Any]]:
        """Every array the pipeline's models keep between frames: all zero after
        :meth:`process` returns or raises (checked by the privacy tests)."""
        return self.encoder.scratch_buffers()

    def _alerts(
        self, frame: Frame, encoded: EncodedFaces, matches: list[Match]
    ) -> list[MatchReport]:
        """Link the frame's faces to tracks, add its matches, and alert confirmed tracks."""
        self.tracker.new_frame(frame.image)
        boxes = [d.box for d in encoded.detected]
        track_of = dict(
            zip(
                boxes,
                self.tracker.update(frame.stream_time, frame.capture_time, boxes),
                strict=True,
            )
        )
        reports = []
        for match in matches:
            detection = encoded.embedded[match.face_index]
            track = track_of[detection.box]
            subject = match.subject.reference
            track.record_match(subject, match.score)
            if subject not in track.alerted and track.confirmed(subject, self.tracker.policy):
                track.alerted.add(subject)
                reports.append(self._report(frame, detection, match, track))
        return reports

    def _report(
        self, frame: Frame, detection: Detection, match: Match, track: Track
    ) -> MatchReport:
        evidence = track.evidence[match.subject.reference]
        x0, y0, x1, y1 = (round(v) for v in detection.box)
        return MatchReport(
            subject=match.subject.reference,
            category=match.subject.category,
            score=round(match.score, 4),
            threshold=self.matcher.policy.threshold,
            margin=self.matcher.policy.margin,
            frame_index=frame.index,
            stream_time=round(frame.stream_time, 3),
            capture_time=frame.capture_time,
            box=(x0, y0, x1, y1),
            model_id=self.encoder.embedder.spec.model_id,
            track=TrackSummary(
                track_id=track.track_id,
                first_seen=track.first_capture_time,
                frames=track.frames,
                matching_frames=evidence.frames,
                best_score=round(evidence.best_score, 4),
            ),
            crop=_crop_jpeg(frame, detection) if self.crop_matches else None,
        )


def _face_free(error: Exception, frame_index: int) -> EdgewatchError:
    """``error`` without anything that could carry face data out of the pipeline."""
    if isinstance(error, EdgewatchError):
        error.__traceback__ = None
        error.__cause__ = error.__context__ = None
        return error
    return FrameError(
        f"frame {frame_index}: {type(error).__name__} while faces were in hand "
        "(the message is withheld: it may contain face data)"
    )


CROP_MARGIN = 0.25
CROP_QUALITY = 90


def _crop_jpeg(frame: Frame, detection: Detection) -> bytes | None:
    """The matched face with a margin, as JPEG; read from the frame before it is wiped."""
    height, width = frame.image.shape[:2]
    x0, y0, x1, y1 = detection.box
    pad_x, pad_y = (x1 - x0) * CROP_MARGIN, (y1 - y0) * CROP_MARGIN
    left, top = max(int(x0 - pad_x), 0), max(int(y0 - pad_y), 0)
    right, bottom = min(int(x1 + pad_x), width), min(int(y1 + pad_y), height)
    if right - left < 2 or bottom - top < 2:
        return None
    ok, encoded = cv2.imencode(
        ".jpg", frame.image[top:bottom, left:right], [cv2.IMWRITE_JPEG_QUALITY, CROP_QUALITY]
    )
    if not ok:
        return None
    jpeg = encoded.tobytes()
    encoded.fill(0)
    return jpeg
