"""The tracker: faces linked across frames, one alert per track and subject."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from edgewatch.tracking import Tracker, TrackingPolicy, iou


def box(x: float, y: float = 100.0, size: float = 60.0) -> tuple[float, float, float, float]:
    return (x, y, x + size, y + size)


def test_a_face_moving_across_frames_stays_one_track() -> None:
    tracker = Tracker()
    ids = {
        tracker.update(i / 10, 1000 + i / 10, [box(100 + 12 * i)])[0].track_id for i in range(20)
    }
    assert len(ids) == 1
    assert tracker.tracks_started == 1


def test_two_faces_side_by_side_keep_their_own_tracks() -> None:
    tracker = Tracker()
    first = tracker.update(0.0, 0.0, [box(100), box(300)])
    later = tracker.update(0.1, 0.1, [box(305), box(104)])  # listed in the other order
    assert later[0] is first[1] and later[1] is first[0]
    assert [t.frames for t in later] == [2, 2]


def test_a_face_gone_longer_than_the_gap_starts_a_new_track() -> None:
    tracker = Tracker(TrackingPolicy(max_gap_s=1.0))
    before = tracker.update(0.0, 0.0, [box(100)])[0]
    assert tracker.update(0.9, 0.9, [box(100)])[0] is before  # a short gap is bridged
    assert tracker.update(2.5, 2.5, [box(100)])[0] is not before
    assert tracker.tracks_started == 2


def test_a_face_far_away_in_the_next_frame_is_someone_else() -> None:
    tracker = Tracker()
    first = tracker.update(0.0, 0.0, [box(100)])[0]
    assert tracker.update(0.1, 0.1, [box(400)])[0] is not first


def test_unlinked_stills_are_each_their_own_track() -> None:
    tracker = Tracker(TrackingPolicy.stills())
    first = tracker.update(0.0, 0.0, [box(100)])[0]
    assert tracker.update(1.0, 1.0, [box(100)])[0] is not first
    with pytest.raises(ValidationError, match="confirm_frames must be 1"):
        TrackingPolicy(link_frames=False, confirm_frames=2)


def test_alert_needs_its_last_matches_to_agree() -> None:
    policy = TrackingPolicy(confirm_frames=2)
    track = Tracker(policy).update(0.0, 0.0, [box(100)])[0]
    track.record_match("case-1", 0.95)
    assert not track.confirmed("case-1", policy)  # one frame is not enough
    track.record_match("case-2", 0.94)
    assert not track.confirmed("case-2", policy)  # broken by case-1's frame before it
    track.record_match("case-2", 0.92)
    assert track.confirmed("case-2", policy)
    assert not track.confirmed("case-1", policy)
    track.record_match("case-1", 0.97)
    assert not track.confirmed("case-2", policy) and not track.confirmed("case-1", policy)
    assert track.evidence["case-1"].frames == 2 and track.evidence["case-1"].best_score == 0.97
    assert track.evidence["case-2"].best_score == 0.94


def test_a_cut_ends_every_track() -> None:
    tracker = Tracker()
    stage = np.full((90, 160, 3), (40, 20, 120), np.uint8)
    audience = np.full((90, 160, 3), (200, 180, 30), np.uint8)
    tracker.new_frame(stage)
    first = tracker.update(0.0, 0.0, [box(100)])[0]
    tracker.new_frame(stage.copy())
    assert tracker.update(0.04, 0.04, [box(102)])[0] is first
    tracker.new_frame(audience)
    assert tracker.update(0.08, 0.08, [box(102)])[0] is not first
    assert tracker.scene_changes == 1


def test_iou() -> None:
    assert iou(box(0), box(0)) == 1.0
    assert iou(box(0), box(1000)) == 0.0
    assert iou((0, 0, 2, 1), (1, 0, 3, 1)) == pytest.approx(1 / 3)
