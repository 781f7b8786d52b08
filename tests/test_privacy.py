"""The privacy promise, as tests that would catch a violation (docs/privacy.md).

* The appliance runs as a field unit over recorded video, under a Python audit
  hook (tests/privacy_audit.py): it writes only its state directory, connects
  only to the broker, starts no process, and no written file, sent byte, log
  line or console line holds any face's embedding, chip, pixels or (for a
  face that did not match) box. A planted leak proves the search finds one.
* After every frame, every buffer the pipeline's models keep is zero, and so
  are the embeddings, chips and keypoints it produced.
* An error raised with faces in hand carries none of them.
* The broker sees signed alerts for enrolled people only, and statuses and
  audit events that hold counts only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgewatch.camera.video import VideoCamera, VideoCameraConfig
from edgewatch.errors import FrameError, ModelError
from edgewatch.events.subscriber import wait_for
from edgewatch.events.tally import DeploymentTally
from edgewatch.matching.enrol import ReferencePhoto, build_gallery
from edgewatch.matching.matcher import Matcher, MatchPolicy
from edgewatch.pipeline import Counters, Pipeline
from edgewatch.transport.mosquitto import LocalBroker
from edgewatch.vision.detect import FaceDetector
from edgewatch.vision.embed import Embedder, create_embedder
from edgewatch.vision.encoder import FaceEncoder
from edgewatch.vision.landmarks import Landmarker
from edgewatch.vision.models import ModelManifest
from edgewatch.vision.types import FloatArray, ImageArray
from tests.face_probes import RecordingDetector, RecordingEmbedder
from tests.test_event_schemas import errors, payload_validator
from tests.test_events import ControlRoom, Unit

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STRANGERS = "face-demographics-walking-and-pause.mp4"
"""People walking past the camera, none of them on the hamilton cast's watch-list."""
HAMILTON = "short_hamilton_clip.mp4"
ENROLLED_IN_HAMILTON = "Lin-Manuel Miranda"


# ------------------------------------------------------------------ the audited field unit


def audited_run(
    tmp_path: Path, *edgewatch_args: str, plant_leak: bool = False
) -> tuple[dict[str, Any], str]:
    """``edgewatch -vv ARGS`` in a subprocess under tests/privacy_audit.py; its report."""
    report = tmp_path / "audit-report.json"
    options = [str(report), *(["--plant-leak"] if plant_leak else []), "--"]
    done = subprocess.run(
        [sys.executable, "-m", "tests.privacy_audit", *options, "-vv", *edgewatch_args],
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(report.read_text())
    return result, done.stderr


def field_unit_run(
    tmp_path: Path,
    broker: LocalBroker,
    keys: Path,
    watchlist: Path,
    video: Path,
    *extra: str,
) -> tuple[dict[str, Any], str, Unit, ControlRoom]:
    """A unit with the issued watch-list publishing to the broker, audited, and a
    control room verifying everything the broker delivers."""
    unit = Unit(tmp_path, broker, "cam-privacy", crop=True, keys=keys / "unit", status_interval_s=1)
    room = ControlRoom(tmp_path, broker, [unit])
    report, stderr = audited_run(
        tmp_path,
        "simulate", "--video", str(video),
        "--watchlist", str(watchlist), "--device-key", str(keys / "unit" / "watchlist.key"),
        "--issuer-key", str(keys / "issuer" / "issuer.pub"),
        "--publish", str(unit.config), "--json", "--no-progress", *extra,
    )  # fmt: skip

    def stopped() -> bool:
        return any(e.kind == "audit" and e.payload["action"] == "stopped" for e in room.events)

    assert wait_for(stopped, 60.0), [e.kind for e in room.events]
    room.close()
    return report, stderr, unit, room


def check_nothing_left_the_process(report: dict[str, Any], unit: Unit, port: int) -> None:
    assert report["exit_code"] == 0
    assert report["leaks"] == []
    assert report["subprocesses"] == []
    outside = [w for w in report["writes"] if not Path(w).is_relative_to(unit.state)]
    assert outside == [], "files written outside the unit's state directory"
    assert report["writes"], "the outbox must have been written"
    # The broker, and paho's wake-up socket pair (a loopback socket it binds itself).
    own = [b for b in report["binds"] if b.startswith("('127.0.0.1'")]
    unexpected = [c for c in report["connects"] if c != repr(("127.0.0.1", port))]
    assert repr(("127.0.0.1", port)) in report["connects"]
    assert len(unexpected) <= len(own), (report["connects"], report["binds"])
    assert report["suspect_log_args"] == []
    assert report["log_records"] > 0 and report["sent_bytes"] > 0
    assert report["core_dumps_off"] and report["not_dumpable"]
    # Every chip and crop searched for was made in this run, one chip per embedded face.
    assert report["chips"] == report["embedded"]
    assert report["crops"] == report["matched"]


def test_strangers_leave_nothing_behind(
    tmp_path: Path, broker: LocalBroker, keys: Path, watchlist: Path, videos_dir: Path
) -> None:
    report, _, unit, room = field_unit_run(
        tmp_path, broker, keys, watchlist, videos_dir / STRANGERS
    )
    check_nothing_left_the_process(report, unit, broker.port)
    assert report["embedded"] >= 100 and report["matched"] == 0, report
    assert room.rejected == [] and room.alerts() == []
    check_only_counts(room, report)


def test_the_broker_sees_only_alerts_for_enrolled_people(
    tmp_path: Path, broker: LocalBroker, keys: Path, watchlist: Path, videos_dir: Path
) -> None:
    report, _, unit, room = field_unit_run(
        tmp_path, broker, keys, watchlist, videos_dir / HAMILTON, "--max-frames", "100"
    )
    check_nothing_left_the_process(report, unit, broker.port)
    # one alert per appearance: Miranda on stage (frames 0-19) and close up (82-99)
    assert report["matched"] >= 2 and report["embedded"] > report["matched"], report
    assert room.rejected == []
    alerts = room.alerts()
    assert len(alerts) == report["matched"]
    assert {a.payload["subject"]["ref"] for a in alerts} == {ENROLLED_IN_HAMILTON}
    assert all(a.crop is not None for a in alerts), "crops reach the control room sealed"
    check_only_counts(room, report)


def check_only_counts(room: ControlRoom, report: dict[str, Any]) -> None:
    """Status and audit events validate against their schemas (which admit counts and
    states only), and the deployment's totals account for every face."""
    for event in room.events:
        assert errors(payload_validator(event.payload["schema"]), event.payload) == []
    stopped = [e.payload for e in room.events if e.kind == "audit"][-1]
    assert stopped["action"] == "stopped"
    counters, deployment = stopped["counters"], stopped["deployment_counters"]
    assert counters["faces_seen"] == report["faces"]
    assert deployment == counters, "a fresh unit: the deployment's totals are this run's"
    assert counters["faces_discarded"] == counters["faces_seen"] - counters["matches"]


def test_the_leak_search_finds_a_planted_leak(
    tmp_path: Path, faces_dir: Path, videos_dir: Path
) -> None:
    report, stderr = audited_run(
        tmp_path,
        "simulate", "--video", str(videos_dir / STRANGERS), "--max-frames", "3",
        "--enrol", f"Joe Biden={faces_dir / 'examples' / 'biden.jpg'}", "--no-progress",
        plant_leak=True,
    )  # fmt: skip
    assert "planted leak" in stderr
    assert any(leak.startswith("log records: ") for leak in report["leaks"]), report["leaks"]
    assert any(leak.startswith("console: ") for leak in report["leaks"]), report["leaks"]


# ------------------------------------------------------------------ buffers, frame by frame


@pytest.fixture(
    scope="module",
    params=["dlib-resnet-v1", "dlib-resnet-v1-litert-fp32", "mobilefacenet-insightface"],
)
def any_embedder(request: pytest.FixtureRequest, research_manifest: ModelManifest) -> Embedder:
    """The shipped embedder (dlib) and a TFLite one (whose tensors Python can reach)."""
    return create_embedder(research_manifest, str(request.param))


def test_after_every_frame_every_buffer_is_overwritten(
    videos_dir: Path,
    faces_dir: Path,
    detector: FaceDetector,
    landmarker: Landmarker,
    any_embedder: Embedder,
) -> None:
    probe_detector, probe_embedder = RecordingDetector(detector), RecordingEmbedder(any_embedder)
    encoder = FaceEncoder(probe_detector, probe_embedder, landmarker, min_face_px=40)
    gallery = build_gallery(
        [ReferencePhoto("Barack Obama", faces_dir / "examples" / "obama.jpg")],
        FaceEncoder(detector, any_embedder, landmarker),
    )
    spec = any_embedder.spec
    pipeline = Pipeline(encoder, Matcher(gallery, MatchPolicy(threshold=spec.threshold)))
    frames_with_faces = 0
    clip = VideoCameraConfig(path=videos_dir / "head-pose-face-detection-female-and-male.mp4")
    with VideoCamera(clip) as camera:
        for frame in camera:
            faces_before = pipeline.counters.faces_seen
            assert pipeline.process(frame) == []
            frames_with_faces += pipeline.counters.faces_seen > faces_before
            assert not frame.image.any(), f"frame {frame.index}: pixels left"
            for n, buffer in enumerate(pipeline.scratch_buffers()):
                assert not buffer.any(), f"frame {frame.index}: scratch buffer {n} not overwritten"
            assert all(not out.any() for out in probe_embedder.outputs), "embeddings left"
            assert all(not chips.any() for chips in probe_embedder.chip_batches), "chips left"
            assert all(not d.keypoints.any() for d in probe_detector.detections), "keypoints left"
    assert frames_with_faces >= 30 and probe_embedder.outputs
    assert pipeline.scratch_buffers(), "the buffers checked must include the models' own"


# ------------------------------------------------------------------ errors with faces in hand


class LeakyEmbedder(RecordingEmbedder):
    """Fails the way dlib can: with the pixel array in the message."""

    def embed(self, chips: ImageArray) -> FloatArray:
        self.chip_batches.append(chips)
        raise ValueError(f"cannot embed {chips!r}")


class FailingModel(RecordingEmbedder):
    def embed(self, chips: ImageArray) -> FloatArray:
        self.chip_batches.append(chips)
        raise ModelError("model 'x': inference failed")


@pytest.mark.parametrize("embedder_class", [LeakyEmbedder, FailingModel])
def test_an_error_with_faces_in_hand_carries_none_of_them(
    faces_dir: Path,
    detector: FaceDetector,
    default_embedder: Embedder,
    embedder_class: type[RecordingEmbedder],
) -> None:
    from tests.test_pipeline import frame_of

    gallery = build_gallery(
        [ReferencePhoto("Barack Obama", faces_dir / "examples" / "obama.jpg")],
        FaceEncoder(detector, default_embedder),
    )
    probe = embedder_class(default_embedder)
    pipeline = Pipeline(FaceEncoder(detector, probe), Matcher(gallery, MatchPolicy(threshold=0.9)))
    frame = frame_of(faces_dir / "examples" / "biden.jpg")
    with pytest.raises((FrameError, ModelError)) as raised:
        pipeline.process(frame)
    error = raised.value
    assert probe.chip_batches and probe.chip_batches[0].shape[0] == 1
    assert "array" not in str(error) and "[[" not in str(error)
    assert error.__cause__ is None and error.__context__ is None
    if embedder_class is FailingModel:
        assert type(error) is ModelError and str(error) == "model 'x': inference failed"
    # Whatever the traceback still references has been overwritten.
    for tb_frame, _ in traceback.walk_tb(error.__traceback__):
        for value in tb_frame.f_locals.values():
            if isinstance(value, np.ndarray):
                assert not value.any(), f"{tb_frame.f_code.co_name} holds face data"
    formatted = "".join(traceback.format_exception(error))
    assert "array(" not in formatted


# ------------------------------------------------------------------ per-deployment counts


def test_deployment_totals_carry_over_restarts_and_close_at_the_end(tmp_path: Path) -> None:
    first = DeploymentTally(tmp_path)
    run1 = Counters(frames=10, faces_seen=4, faces_discarded=3, faces_rejected=1, matches=1)
    first.begin("dep-1", Counters(frames=2))  # accepted two frames into the run
    first.checkpoint(run1)
    assert first.current(run1) == {
        "frames": 8, "faces_seen": 4, "faces_discarded": 3, "faces_rejected": 1, "matches": 1
    }  # fmt: skip
    assert oct((tmp_path / "deployment-counters.json").stat().st_mode & 0o777) == "0o600"

    restarted = DeploymentTally(tmp_path)
    restarted.begin("dep-1", Counters())
    run2 = Counters(frames=5, faces_seen=2, faces_discarded=2)
    final = restarted.end(run2)
    assert final == {
        "frames": 13, "faces_seen": 6, "faces_discarded": 5, "faces_rejected": 1, "matches": 1
    }  # fmt: skip
    assert restarted.current(run2) is None, "an ended deployment is not counted any more"
    stored = json.loads((tmp_path / "deployment-counters.json").read_text())
    assert stored == {"dep-1": final}
    assert set(final) == {"frames", "faces_seen", "faces_discarded", "faces_rejected", "matches"}


def test_damaged_deployment_totals_are_set_aside_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "deployment-counters.json").write_text('{"dep-1": [1, 2')
    tally = DeploymentTally(tmp_path)
    tally.begin("dep-1", Counters())
    assert tally.current(Counters(frames=3)) == dict.fromkeys(
        ["frames", "faces_seen", "faces_discarded", "faces_rejected", "matches"], 0
    ) | {"frames": 3}
    (aside,) = tmp_path.glob("deployment-counters.json.damaged-*")
    assert aside.read_text() == '{"dep-1": [1, 2'
    assert "damaged" in caplog.text
