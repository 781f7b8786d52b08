"""From first boot to a revoked unit, on a simulated unit in a temporary root.

The same scripts and commands as on a Raspberry Pi, with ``--root DIR``
instead of ``/``: firmware_scripts/install-unit.sh installs the appliance
(service user, hardened unit, harden-os.sh, camera) and has the unit
generate its keys and provisioning request; the back office creates a fleet
and enrols the request; the unit installs its bundle; the issuer sends a
watch-list and later the end of the deployment over MQTT; the unit runs from
that tree (``edgewatch run --root``) on a recorded video against a real
Mosquitto with the fleet's CA, mutual TLS, ACL and CRL, and a control-room
subscriber verifies what it sends. Once revoked, the broker refuses the unit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgewatch.events.ledger import Ledger
from edgewatch.events.registry import DeviceRegistry
from edgewatch.events.subscriber import (
    EventVerifier,
    Rejected,
    Subscriber,
    SubscriberSettings,
    VerifiedEvent,
    wait_for,
)
from edgewatch.provisioning.fleet import Fleet
from edgewatch.security.keys import load_sealing_key
from edgewatch.transport.mosquitto import ClientCredentials, LocalBroker, free_port
from tests.cli_support import DEPLOYMENT, HAMILTON, edgewatch

PROJECT = Path(__file__).resolve().parents[1]
INSTALL = PROJECT / "firmware_scripts" / "install-unit.sh"
UNIT = "cam-0042"
ENTRIES = PROJECT / "deploy" / "demo" / "hamilton-entries.csv"

MINIMAL_ETC = {
    "passwd": "root:x:0:0:root:/root:/bin/bash\n",
    "group": "root:x:0:\nvideo:x:44:\nsudo:x:27:\n",
    "shadow": "root:*:19000:0:99999:7:::\n",
    "gshadow": "root:*::\nvideo:!::\nsudo:!::\n",
}


def make_root(path: Path) -> Path:
    """The bare bones of a Raspberry Pi OS root: /etc's account files and the boot partition."""
    etc = path / "etc"
    etc.mkdir(parents=True)
    for name, text in MINIMAL_ETC.items():
        (etc / name).write_text(text)
        (etc / name).chmod(0o600 if "shadow" in name else 0o644)
    (etc / "dphys-swapfile").write_text("CONF_SWAPSIZE=512\n")
    boot = path / "boot" / "firmware"
    (boot / "edgewatch").mkdir(parents=True)
    (boot / "config.txt").write_text("[all]\ncamera_auto_detect=0\n")
    return path


def install(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSTALL), "--root", str(root), "--device-id", UNIT,
         "--venv", str(Path(sys.executable).parents[1]), "--no-apt", *extra],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


@dataclass
class World:
    """One simulated unit, its fleet, the issuer and a running broker."""

    root: Path
    fleet: Fleet
    broker: LocalBroker
    issuer: Path
    watchlist: Path
    events: list[VerifiedEvent] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def client(self, name: str) -> list[str]:
        folder = self.fleet.client_dir(name)
        return [
            "--broker", f"localhost:{self.broker.port}",
            "--ca-cert", str(folder / "ca.crt"),
            "--cert", str(folder / "client.crt"),
            "--key", str(folder / "client.key"),
        ]  # fmt: skip

    def of(self, kind: str, action: str | None = None) -> list[VerifiedEvent]:
        return [
            e
            for e in list(self.events)
            if e.kind == kind and (action is None or e.payload.get("action") == action)
        ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Iterator[World]:
    base = tmp_path_factory.mktemp("provisioning")
    root = make_root(base / "unit-root")
    installed = install(root)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    for role, folder in (("issuer", "issuer"), ("control-room", "control-room")):
        assert edgewatch("keys", role, "--out", str(base / folder)).returncode == 0
    port = free_port()
    created = edgewatch(
        "fleet", "init", "--fleet", str(base / "fleet"), "--name", "test-fleet",
        "--broker-host", "localhost", "--broker-ip", "127.0.0.1", "--broker-port", str(port),
        "--issuer-key", str(base / "issuer" / "issuer.pub"),
        "--crop-key", str(base / "control-room" / "crop.pub"),
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    request = root / "boot" / "firmware" / "edgewatch" / "request.json"
    enrolled = edgewatch("fleet", "enrol", str(request), "--fleet", str(base / "fleet"))
    assert enrolled.returncode == 0, enrolled.stderr
    bundle = base / "fleet" / "devices" / UNIT / "bundle.json"
    done = edgewatch("provision", "install", str(bundle), "--root", str(root))
    assert done.returncode == 0, done.stderr
    watchlist = base / "cast.ewl"
    built = edgewatch(
        "watchlist", "build", "--deployment", str(DEPLOYMENT),
        "--entries", str(ENTRIES), "--photos", str(shared_dir / "data" / "faces" / "examples"),
        "--issuer-key", str(base / "issuer" / "issuer.key"),
        "--recipients", str(base / "fleet" / "recipients"),
        "--out", str(watchlist), "--no-progress",
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    fleet = Fleet(base / "fleet")
    broker = LocalBroker(
        base / "broker",
        port=port,
        readers=fleet.settings.readers,
        commanders=fleet.settings.commanders,
        ca=fleet.ca(),
        crl_path=fleet.crl,
    )
    broker.start()
    world = World(root, fleet, broker, base / "issuer", watchlist)
    reader = fleet.client_dir("control-room")
    verifier = EventVerifier(
        DeviceRegistry.load(fleet.registry),
        "edgewatch",
        Ledger(),
        load_sealing_key(base / "control-room" / "crop.key", "crop key"),
    )

    def on_reject(topic: str, rejected: Rejected) -> None:
        world.rejected.append(f"{topic}: {rejected}")

    subscriber = Subscriber(
        SubscriberSettings(
            "localhost",
            port,
            ClientCredentials(reader / "ca.crt", reader / "client.crt", reader / "client.key"),
            "control-room",
            "edgewatch",
        ),
        verifier,
        world.events.append,
        on_reject,
    )
    subscriber.start()
    try:
        yield world
    finally:
        subscriber.stop()
        broker.stop()


def start_unit(world: World, video: Path, notify: Path | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    if notify is not None:
        env |= {"NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "2000000"}
    return subprocess.Popen(
        [str(world.root / "opt" / "edgewatch" / "venv" / "bin" / "edgewatch"), "run",
         "--root", str(world.root), "--video", str(video), "--loop"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def stop_unit(unit: subprocess.Popen[str]) -> str:
    unit.send_signal(signal.SIGTERM)
    _, stderr = unit.communicate(timeout=60)
    assert unit.returncode == 0, stderr
    return stderr


# ------------------------------------------------------------------ the image


def test_install_builds_a_hardened_unit_with_private_keys(world: World) -> None:
    root = world.root
    passwd = (root / "etc" / "passwd").read_text()
    user = next(line.split(":") for line in passwd.splitlines() if line.startswith("edgewatch:"))
    assert user[6] == "/usr/sbin/nologin"
    assert "edgewatch" in next(
        line
        for line in (root / "etc" / "group").read_text().splitlines()
        if line.startswith("video:")
    )
    keys = root / "var" / "lib" / "edgewatch" / "keys"
    for name in ("signing.key", "watchlist.key", "tls.key"):
        info = (keys / name).stat()
        assert stat.S_IMODE(info.st_mode) == 0o600, name
        if os.geteuid() == 0:
            assert info.st_uid == int(user[2]), name
    assert stat.S_IMODE((root / "var" / "lib" / "edgewatch").stat().st_mode) == 0o700
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "edgewatch.service"
    assert wants.is_symlink()
    assert (root / "etc" / "systemd" / "system" / "dphys-swapfile.service").resolve() == Path(
        "/dev/null"
    )
    assert (root / "etc" / "sysctl.d" / "90-edgewatch-nocore.conf").exists()
    assert "camera_auto_detect=1" in (root / "boot" / "firmware" / "config.txt").read_text()
    request = json.loads((root / "var/lib/edgewatch/provisioning/request.json").read_text())
    assert set(request) == {"payload", "protected", "signature"}
    assert "PRIVATE" not in (root / "boot/firmware/edgewatch/request.json").read_text()
    config = root / "etc" / "edgewatch" / "edgewatch.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640


def test_install_again_keeps_the_keys(world: World) -> None:
    key = world.root / "var" / "lib" / "edgewatch" / "keys" / "signing.key"
    before = key.read_bytes()
    again = install(world.root)
    assert again.returncode == 0, again.stderr
    assert "kept the unit's keys" in again.stdout
    assert key.read_bytes() == before


def test_install_refuses_bad_input(tmp_path: Path) -> None:
    bad_id = subprocess.run(
        [str(INSTALL), "--root", str(tmp_path), "--device-id", "../x", "--no-apt"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad_id.returncode == 2 and "--device-id ../x" in bad_id.stderr
    no_etc = subprocess.run(
        [str(INSTALL), "--root", str(tmp_path), "--device-id", "cam-1", "--venv", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert no_etc.returncode == 2 and "does not look like a root file system" in no_etc.stderr


def test_a_bundle_for_another_unit_is_refused(world: World, tmp_path: Path) -> None:
    other = make_root(tmp_path / "other")
    assert install(other).returncode == 0
    bundle = world.fleet.device_dir(UNIT) / "bundle.json"
    refused = edgewatch("provision", "install", str(bundle), "--root", str(other))
    assert refused.returncode == 2
    assert "registers other keys than this unit's" in refused.stderr


def test_enrolling_twice_needs_replace(world: World) -> None:
    request = world.root / "var" / "lib" / "edgewatch" / "provisioning" / "request.json"
    again = edgewatch("fleet", "enrol", str(request), "--fleet", str(world.fleet.dir))
    assert again.returncode == 2 and "already enrolled" in again.stderr


# ------------------------------------------------------------- in operation


def test_doctor_finds_a_healthy_unit(world: World, videos_dir: Path) -> None:
    config = world.root / "etc" / "edgewatch" / "edgewatch.toml"
    checked = edgewatch("doctor", "--root", str(world.root))
    # The configured camera is the Pi's: picamera2 is absent here, and doctor says so.
    assert "PROBLEM camera" in checked.stdout and "picamera2 is not installed" in checked.stdout
    for check in ("models", "keys", "cert", "broker"):
        assert f"ok      {check}" in checked.stdout, checked.stdout
    assert "mutual TLS accepted" in checked.stdout
    assert "WARNING watch-list none held" in checked.stdout
    assert config.exists()


def test_watchlist_over_mqtt_then_alerts_then_end_of_deployment(
    world: World, videos_dir: Path, tmp_path: Path
) -> None:
    sent = edgewatch(
        "command", "watchlist", str(world.watchlist), "--unit", UNIT, *world.client("issuer")
    )
    assert sent.returncode == 0, sent.stderr
    notify = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(0.2)
    notes: list[str] = []
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            try:
                notes.append(listener.recv(4096).decode())
            except TimeoutError:
                continue

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    unit = start_unit(world, videos_dir / HAMILTON, notify)
    try:
        assert wait_for(lambda: len(world.of("alert")) >= 1, 240), unit.stderr
        assert world.of("audit", "watchlist_accepted")
        held = world.root / "var" / "lib" / "edgewatch" / "state" / "watchlist.ewl"
        assert held.read_bytes() == world.watchlist.read_bytes()
        ended = edgewatch(
            "command", "end-deployment", "--unit", UNIT, "--deployment", "demo-2026-11",
            "--reason", "operation over", "--issuer-key", str(world.issuer / "issuer.key"),
            *world.client("issuer"),
        )  # fmt: skip
        assert ended.returncode == 0, ended.stderr
        assert wait_for(lambda: bool(world.of("audit", "watchlist_ended")), 60)
    finally:
        stderr = stop_unit(unit)
        stop.set()
        thread.join()
        listener.close()
    alert = world.of("alert")[0].payload
    assert alert["subject"]["ref"] == "Lin-Manuel Miranda" and alert["device_id"] == UNIT
    detail = world.of("audit", "watchlist_ended")[0].payload["detail"]
    assert "operation over" in detail and "watch-list file deleted" in detail
    assert not held.exists()
    assert any(n.startswith("READY=1") for n in notes) and "WATCHDOG=1" in notes
    assert "STOPPING=1" in notes
    assert wait_for(
        lambda: any(e.payload.get("state") == "stopped" for e in world.of("status")), 10
    )
    assert "watch-list ended" in stderr
    assert not world.rejected


def test_a_forged_command_is_refused_and_reported(
    world: World, videos_dir: Path, tmp_path: Path
) -> None:
    assert edgewatch("keys", "issuer", "--out", str(tmp_path / "rogue")).returncode == 0
    forged = edgewatch(
        "command", "end-deployment", "--unit", UNIT, "--deployment", "demo-2026-11",
        "--reason", "forged", "--issuer-key", str(tmp_path / "rogue" / "issuer.key"),
        *world.client("issuer"),
    )  # fmt: skip
    assert forged.returncode == 0, forged.stderr  # the broker takes it; the unit must refuse it
    unit = start_unit(world, videos_dir / HAMILTON)
    try:
        assert wait_for(lambda: bool(world.of("audit", "command_refused")), 120)
    finally:
        stop_unit(unit)
    detail = world.of("audit", "command_refused")[0].payload["detail"]
    assert "unknown_issuer" in detail


def test_an_ended_deployment_is_not_resumed_by_its_old_list(world: World, videos_dir: Path) -> None:
    sent = edgewatch(
        "command", "watchlist", str(world.watchlist), "--unit", UNIT, *world.client("issuer")
    )
    assert sent.returncode == 0, sent.stderr
    unit = start_unit(world, videos_dir / HAMILTON)
    try:
        assert wait_for(lambda: bool(world.of("audit", "watchlist_refused")), 120)
    finally:
        stop_unit(unit)
    detail = world.of("audit", "watchlist_refused")[-1].payload["detail"]
    assert "rollback" in detail and "was ended" in detail
    assert not (world.root / "var" / "lib" / "edgewatch" / "state" / "watchlist.ewl").exists()


def test_a_unit_cannot_send_commands(world: World) -> None:
    folder = world.fleet.device_dir(UNIT)
    keys = world.root / "var" / "lib" / "edgewatch" / "keys"
    denied = edgewatch(
        "command", "watchlist", str(world.watchlist), "--unit", "cam-other",
        "--broker", f"localhost:{world.broker.port}",
        "--ca-cert", str(world.fleet.ca_dir / "ca.crt"),
        "--cert", str(folder / "client.crt"), "--key", str(keys / "tls.key"),
    )  # fmt: skip
    assert denied.returncode == 1 and "refused the message" in denied.stderr


def test_a_revoked_unit_is_refused_by_the_broker(world: World) -> None:
    revoked = edgewatch(
        "fleet", "revoke", UNIT, "--fleet", str(world.fleet.dir), "--reason", "stolen"
    )
    assert revoked.returncode == 0, revoked.stderr
    assert "removed from the recipient list" in revoked.stdout
    assert not (world.fleet.recipients / f"{UNIT}.pub").exists()
    assert DeviceRegistry.load(world.fleet.registry).devices[UNIT].revoked
    world.broker.stop()
    world.broker.start()  # Mosquitto reads the CRL at start; a reload spares live connections
    checked = edgewatch("doctor", "--root", str(world.root))
    assert checked.returncode == 1
    assert (
        "PROBLEM broker" in checked.stdout and "refused this unit's certificate" in checked.stdout
    )
    listed = edgewatch("fleet", "list", "--fleet", str(world.fleet.dir))
    assert "REVOKED" in listed.stdout
