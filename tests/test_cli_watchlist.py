"""The watch-list, key, registry and subscribe commands as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgewatch.pipeline import Counters
from edgewatch.transport.mosquitto import LocalBroker
from tests.cli_support import DEPLOYMENT, HAMILTON, edgewatch, hamilton, subjects_of
from tests.event_producer import report
from tests.test_events import Unit


def test_key_files_are_private_and_never_overwritten(keys: Path) -> None:
    assert oct((keys / "unit" / "signing.key").stat().st_mode & 0o777) == "0o600"
    assert oct((keys / "unit" / "watchlist.key").stat().st_mode & 0o777) == "0o600"
    again = edgewatch("keys", "device", "--out", str(keys / "unit"))
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr


def test_build_refuses_bad_photos_unless_told_to_skip(
    keys: Path, faces_dir: Path, tmp_path: Path
) -> None:
    examples = faces_dir / "examples"
    csv = tmp_path / "entries.csv"
    csv.write_text(
        "subject_ref,category,image\n"
        f"obama,wanted,{examples / 'obama.jpg'}\n"
        f"pair,wanted,{examples / 'two_people.jpg'}\n"
    )
    common = [
        "watchlist", "build", "--deployment", str(DEPLOYMENT), "--entries", str(csv),
        "--issuer-key", str(keys / "issuer" / "issuer.key"),
        "--recipient", str(keys / "unit" / "watchlist.pub"), "--no-progress",
    ]  # fmt: skip
    refused = edgewatch(*common, "--out", str(tmp_path / "a.ewl"))
    assert refused.returncode == 3
    assert "REFUSED: 2 faces found" in refused.stdout and not (tmp_path / "a.ewl").exists()
    skipped = edgewatch(*common, "--out", str(tmp_path / "b.ewl"), "--skip-refused")
    assert skipped.returncode == 0 and (tmp_path / "b.ewl").exists()


def test_inspect_shows_the_header_and_names_nobody(watchlist: Path) -> None:
    run = edgewatch("watchlist", "inspect", str(watchlist))
    assert run.returncode == 0
    assert "hamilton-demo version 1" in run.stdout and "4 (max 100)" in run.stdout
    assert "Obama" not in run.stdout and "Miranda" not in run.stdout
    header = json.loads(edgewatch("watchlist", "inspect", str(watchlist), "--json").stdout)
    assert header["entry_count"] == 4 and header["model"]["id"] == "dlib-resnet-v1-litert-fp32"


def test_verify(watchlist: Path, keys: Path, tmp_path: Path) -> None:
    issuer = str(keys / "issuer" / "issuer.pub")
    good = edgewatch(
        "watchlist", "verify", str(watchlist), "--issuer-key", issuer,
        "--device-key", str(keys / "unit" / "watchlist.key"),
    )  # fmt: skip
    assert good.returncode == 0 and "can open it (4 entries" in good.stdout
    other = edgewatch(
        "watchlist", "verify", str(watchlist), "--issuer-key", issuer,
        "--device-key", str(keys / "other" / "watchlist.key"),
    )  # fmt: skip
    assert other.returncode == 3 and "not a recipient" in other.stderr
    data = bytearray(watchlist.read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / "bad.ewl").write_bytes(bytes(data))
    bad = edgewatch("watchlist", "verify", str(tmp_path / "bad.ewl"), "--issuer-key", issuer)
    assert bad.returncode == 3 and "BAD SIGNATURE" in bad.stderr


def test_simulate_refuses_a_watchlist_for_another_unit(watchlist: Path, keys: Path) -> None:
    run = edgewatch(
        "simulate", "--images", str(keys), "--watchlist", str(watchlist),
        "--device-key", str(keys / "other" / "watchlist.key"),
        "--issuer-key", str(keys / "issuer" / "issuer.pub"),
    )  # fmt: skip
    assert run.returncode == 3 and "refused (not_recipient)" in run.stderr


def test_hamilton_with_the_watchlist_matches_as_with_enrol(
    watchlist: Path, keys: Path, videos_dir: Path, faces_dir: Path, tmp_path: Path
) -> None:
    """The issued list decides exactly as enrolling the same photos at the same policy."""
    header = json.loads(edgewatch("watchlist", "inspect", str(watchlist), "--json").stdout)
    policy = header["policy"]
    enrolled = hamilton(
        faces_dir, videos_dir, "--threshold", str(policy["threshold"]),
        "--margin", str(policy["margin"]),
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    run = edgewatch(
        "simulate", "--video", str(videos_dir / HAMILTON), "--watchlist", str(watchlist),
        "--device-key", str(keys / "unit" / "watchlist.key"),
        "--issuer-key", str(keys / "issuer" / "issuer.pub"),
        "--state-dir", str(tmp_path), "--json", "--no-progress",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    key = ("frame_index", "subject", "score", "box")
    assert [[m[k] for k in key] for m in run.matches] == [
        [m[k] for k in key] for m in enrolled.matches
    ]
    assert subjects_of(run).keys() == subjects_of(enrolled).keys() == {"Lin-Manuel Miranda"}
    assert (tmp_path / "watchlist-versions.json").exists()


def test_registry_and_subscribe_commands(broker: LocalBroker, tmp_path: Path) -> None:
    unit = Unit(tmp_path, broker, "cam-a")
    registry = tmp_path / "devices.toml"
    added = edgewatch(
        "registry", "add", "--registry", str(registry), "--device-id", "cam-a",
        "--signing-key", str(unit.dir / "signing.pub"),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    creds = broker.issue_client("control-room")
    subscriber = subprocess.Popen(
        [
            sys.executable, "-m", "edgewatch", "subscribe",
            "--broker", f"127.0.0.1:{broker.port}", "--ca-cert", str(creds.ca_cert),
            "--cert", str(creds.cert), "--key", str(creds.key), "--registry", str(registry),
            "--count", "3", "--timeout", "120",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert subscriber.stderr is not None
    assert "subscribed" in subscriber.stderr.readline()
    service = unit.service()
    service.start(Counters())
    for index in range(3):
        service.emitter.alert(report(index))
    service.stop(Counters(), 0.0)
    out, err = subscriber.communicate(timeout=120)
    lines = [json.loads(line) for line in out.splitlines()]
    alerts = [line for line in lines if line["kind"] == "alert"]
    assert [a["payload"]["sequence"] for a in alerts] == [1, 2, 3], err
    assert all(a["device_id"] == "cam-a" for a in alerts)
    listed = edgewatch("registry", "list", "--registry", str(registry))
    assert "cam-a" in listed.stdout and "active" in listed.stdout
    revoked = edgewatch("registry", "revoke", "--registry", str(registry), "--device-id", "cam-a")
    assert revoked.returncode == 0
    assert "REVOKED" in edgewatch("registry", "list", "--registry", str(registry)).stdout


def test_demo_runs_every_role_end_to_end(faces_dir: Path, videos_dir: Path) -> None:
    """The README's main command, shortened: broker, issuer, unit and control room."""
    entries = Path(__file__).resolve().parents[1] / "deploy" / "demo" / "hamilton-entries.csv"
    run = edgewatch(
        "demo", "--video", str(videos_dir / HAMILTON), "--photos", str(faces_dir / "examples"),
        "--entries", str(entries), "--max-frames", "12",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "control room: VERIFIED alert" in run.stdout
    assert "sealed crop opened" in run.stdout
    assert "rejected 0 (none); gaps 0" in run.stderr


def test_a_publishing_unit_reports_a_refused_watchlist_and_keeps_running(
    watchlist: Path, keys: Path, faces_dir: Path, broker: LocalBroker, tmp_path: Path
) -> None:
    from edgewatch.cli.keys import generate_role
    from tests.test_events import ControlRoom

    generate_role("control-room", tmp_path / "control-room")
    unit = Unit(tmp_path, broker, "cam-a")  # its own keys: not a recipient of the list
    room = ControlRoom(tmp_path, broker, [unit])
    run = edgewatch(
        "simulate", "--images", str(faces_dir / "examples" / "obama.jpg"),
        "--watchlist", str(watchlist), "--device-key", str(unit.dir / "watchlist.key"),
        "--issuer-key", str(keys / "issuer" / "issuer.pub"), "--publish", str(unit.config),
        "--no-progress",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "refused (not_recipient)" in run.stderr and "1 frames, 0 faces seen" in run.stderr
    from edgewatch.events.subscriber import wait_for

    def audit_actions() -> list[str]:
        return [str(e.payload["action"]) for e in room.events if e.kind == "audit"]

    assert wait_for(lambda: "stopped" in audit_actions(), 30.0), audit_actions()
    room.close()
    assert "watchlist_refused" in audit_actions()
    statuses = [e.payload for e in room.events if e.kind == "status"]
    assert statuses[-1]["watchlist"] == {"state": "refused", "reason": "not_recipient"}
