"""``edgewatch doctor``: check a unit and say what is wrong in plain words.

Each check returns findings (ok, warning, problem) with a sentence a field
technician can act on. The checks never disturb a running service: the
broker check stops after the TLS handshake (an MQTT CONNECT with the unit's
certificate would take over the service's session, since the broker uses
the certificate's name as client id), and the watch-list check reads only
the signed header, never decrypting a template.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import ssl
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgewatch.appliance import VisionParts, device_trust, load_vision
from edgewatch.camera.registry import create_camera
from edgewatch.errors import EdgewatchError
from edgewatch.provisioning.unit import service_owner
from edgewatch.security.keys import load_sealing_key, load_signing_key
from edgewatch.transport import pki
from edgewatch.transport.mosquitto import tls_client_context
from edgewatch.unit.config import UnitConfig
from edgewatch.unit.layout import SERVICE_USER, UnitLayout
from edgewatch.watchlist.device import WatchlistRefusedError, check_header
from edgewatch.watchlist.format import WatchlistFormatError, parse

Level = Literal["ok", "warning", "problem"]
CERT_RENEW_DAYS = 30


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    check: str
    message: str

    def line(self) -> str:
        label = {"ok": "ok     ", "warning": "WARNING", "problem": "PROBLEM"}[self.level]
        return f"{label} {self.check:<10} {self.message}"


class Doctor:
    """Runs every check against one unit's configuration and files."""

    def __init__(self, config: UnitConfig, layout: UnitLayout, timeout_s: float = 5.0) -> None:
        self.config = config
        self.layout = layout
        self.timeout_s = timeout_s
        self.parts: VisionParts | None = None
        self.live = layout.root == Path("/")

    def run(self) -> list[Finding]:
        findings: list[Finding] = []
        checks: list[Callable[[], Iterator[Finding]]] = [
            self.models,
            self.keys,
            self.certificate,
            self.clock,
            self.broker,
            self.watchlist,
            self.camera,
            self.memory,
        ]
        for check in checks:
            try:
                findings.extend(check())
            except EdgewatchError as exc:
                findings.append(Finding("problem", check.__name__, str(exc)))
        return findings

    # ------------------------------------------------------------------ checks

    def models(self) -> Iterator[Finding]:
        self.parts = load_vision(self.config.app)
        app = self.config.app
        yield Finding(
            "ok",
            "models",
            f"{app.detector.model}, {app.landmarker.model}, {app.embedder.model}: present, "
            "hashes match the manifest",
        )

    def keys(self) -> Iterator[Finding]:
        publish, watchlist = self.config.publish, self.config.watchlist
        files = {
            "signing key": publish.device.signing_key,
            "watch-list key": watchlist.key,
            "TLS key": publish.mqtt.key,
        }
        owner = self._service_uid()
        for what, path in files.items():
            if not path.exists():
                yield Finding("problem", "keys", f"{what} {path} is missing: run provisioning")
                continue
            info = path.stat()
            if stat.S_IMODE(info.st_mode) & 0o077:
                yield Finding(
                    "problem",
                    "keys",
                    f"{what} {path} is readable by others (mode "
                    f"{stat.S_IMODE(info.st_mode):o}): chmod 600 it",
                )
            elif owner is not None and info.st_uid != owner:
                yield Finding(
                    "problem",
                    "keys",
                    f"{what} {path} is not owned by the {SERVICE_USER} user: the service "
                    f"cannot read it (chown {SERVICE_USER}: it)",
                )
            else:
                yield Finding("ok", "keys", f"{what} {path}: private (0600)")
        load_signing_key(publish.device.signing_key, "signing key")
        load_sealing_key(watchlist.key, "watch-list key")

    def _service_uid(self) -> int | None:
        owner = service_owner(self.layout)
        return None if owner is None else owner.uid

    def certificate(self) -> Iterator[Finding]:
        mqtt = self.config.publish.mqtt
        cert = pki.load_certificate(mqtt.cert)
        key = pki.load_private_key(mqtt.key).public_key()
        now = dt.datetime.now(dt.UTC)
        problem = pki.client_certificate_problem(
            cert, pki.load_certificate(mqtt.ca_cert), key, self.config.device_id, now
        )
        until = cert.not_valid_after_utc
        if problem is not None:
            yield Finding("problem", "cert", f"{mqtt.cert}: {problem}")
        elif until - now < dt.timedelta(days=CERT_RENEW_DAYS):
            yield Finding(
                "warning", "cert", f"the client certificate expires on {until:%Y-%m-%d}: renew it"
            )
        else:
            yield Finding("ok", "cert", f"client certificate valid until {until:%Y-%m-%d}")

    def clock(self) -> Iterator[Finding]:
        now = dt.datetime.now(dt.UTC)
        built = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        if now < built:
            yield Finding(
                "problem",
                "clock",
                f"the clock says {now:%Y-%m-%d}, before this software was built: time is not "
                "synchronised, so signatures, expiry and certificates cannot be checked",
            )
            return
        timedatectl = shutil.which("timedatectl")
        if not self.live or timedatectl is None:
            yield Finding("ok", "clock", f"{now:%Y-%m-%d %H:%M} UTC (synchronisation not checked)")
            return
        result = subprocess.run(
            [timedatectl, "show", "--property=NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.stdout.strip() == "yes":
            yield Finding("ok", "clock", f"{now:%Y-%m-%d %H:%M} UTC, synchronised (NTP)")
        else:
            yield Finding(
                "warning",
                "clock",
                "the clock is not NTP-synchronised yet (timedatectl): check the network and "
                "'systemctl status systemd-timesyncd'",
            )

    def broker(self) -> Iterator[Finding]:
        mqtt = self.config.publish.mqtt
        where = f"{mqtt.host}:{mqtt.port}"
        context = tls_client_context(mqtt.credentials)
        try:
            raw = socket.create_connection((mqtt.host, mqtt.port), timeout=self.timeout_s)
        except OSError as exc:
            yield Finding("problem", "broker", f"cannot reach {where}: {exc.strerror or exc}")
            return
        try:
            with context.wrap_socket(raw, server_hostname=mqtt.host) as tls:
                tls.settimeout(1.0)
                try:
                    closed = tls.recv(1) == b""
                except TimeoutError:
                    closed = False  # the broker is waiting for our CONNECT: it took us
        except ssl.SSLCertVerificationError as exc:
            yield Finding(
                "problem",
                "broker",
                f"{where} is not the fleet's broker, or its name does not match "
                f"({exc.verify_message})",
            )
            return
        except (ssl.SSLError, OSError) as exc:
            yield Finding(
                "problem",
                "broker",
                f"{where} refused this unit's certificate ({_reason(exc)}): revoked, expired "
                "or from another fleet",
            )
            return
        finally:
            raw.close()
        if closed:
            yield Finding("problem", "broker", f"{where} closed the connection after TLS")
        else:
            yield Finding("ok", "broker", f"{where} reachable, mutual TLS accepted")

    def watchlist(self) -> Iterator[Finding]:
        path = self.config.watchlist_file
        if not path.exists():
            yield Finding(
                "warning",
                "watch-list",
                "none held: the unit matches nobody until the issuer sends one",
            )
            return
        assert self.parts is not None, "models are checked first"
        trust = device_trust(
            self.parts,
            self.config.watchlist.issuer_keys,
            self.config.watchlist.key,
            self.config.state_dir,
            "device.state_dir",
        )
        try:
            header = check_header(parse(path.read_bytes()), trust, dt.datetime.now(dt.UTC))
        except WatchlistFormatError as exc:
            yield Finding("problem", "watch-list", f"{path} is damaged: {exc}")
            return
        except WatchlistRefusedError as exc:
            yield Finding("problem", "watch-list", str(exc))
            return
        yield Finding(
            "ok",
            "watch-list",
            f"{header.watchlist_id} v{header.version} for deployment {header.deployment.id}, "
            f"{header.entry_count} entries, valid until {header.deployment.expires:%Y-%m-%d %H:%M}",
        )

    def camera(self) -> Iterator[Finding]:
        with create_camera(self.config.app.camera) as camera:
            frame = camera.read()
        if frame is None:
            yield Finding("problem", "camera", "the camera opened but delivered no frame")
        else:
            height, width = frame.image.shape[:2]
            frame.image.fill(0)  # a person may be in it: overwritten, never kept
            yield Finding("ok", "camera", f"{self.config.app.camera.type}: {width}x{height} frames")

    def memory(self) -> Iterator[Finding]:
        if not self.live:
            return
        swaps = Path("/proc/swaps").read_text().splitlines()[1:]
        disk = [line.split()[0] for line in swaps if not line.startswith("/dev/zram")]
        if disk:
            yield Finding(
                "problem",
                "memory",
                f"disk swap is on ({', '.join(disk)}): face data could reach the SD card; "
                "run firmware_scripts/harden-os.sh",
            )
        else:
            yield Finding("ok", "memory", "no disk swap")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc).replace("_", " ").lower()


def camera_hint(findings: list[Finding]) -> str | None:
    """A camera that cannot open while the service runs is usually just busy."""
    camera_failed = any(f.check == "camera" and f.level == "problem" for f in findings)
    if camera_failed and Path("/run/systemd/system").exists():
        return "if the edgewatch service is running, it holds the camera: stop it to test"
    return None
