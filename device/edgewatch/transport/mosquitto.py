"""The control room's Mosquitto broker: ACL, configuration, a local instance, client TLS.

Devices and control-room subscribers all authenticate with client
certificates (mutual TLS); the certificate's common name becomes the MQTT
user name (``use_identity_as_username``) *and* the client id
(``use_username_as_clientid``). The second option matters: without it any
authenticated client could connect with another client's id, kick it off and
take over its persistent session, whose queued alerts the broker would then
drop at delivery because the intruder may not read them.

What the ACL file can and cannot do in Mosquitto 2.0 (verified against
2.0.11, see ``tests/test_broker.py``):

* It is checked when a message is published (``write``) and again when it is
  delivered to each subscriber (``read``, on the message's topic). A denied
  MQTT v5 QoS 1 publish gets PUBACK reason code 135 "Not authorized".
* It is *not* checked on SUBSCRIBE: every subscription is granted, and a
  device subscribed to other devices' topics simply receives nothing.
* Hence shared subscriptions (``$share/<group>/<prefix>/+/alert``) need no
  ``$share`` rule: delivery checks the real topic, so ``topic read
  <prefix>/+/alert`` is all a reader needs. The flip side is that any
  authenticated client may join a share group; the broker then hands it its
  round-robin share of messages and drops them at the ACL check. Keep share
  group names out of device configuration (or move to the dynamic-security
  plugin, which can refuse subscriptions).

:class:`LocalBroker` runs a real ``mosquitto`` for the tests and the desktop
demo with exactly the configuration rendered here; ``deploy/mosquitto/`` holds
the production files, which a test keeps consistent with the renderers.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

from edgewatch.errors import ConfigError, EdgewatchError
from edgewatch.transport import pki
from edgewatch.transport.topics import (
    COMMAND_TOPIC,
    DEFAULT_PREFIX,
    EVENT_KINDS,
    check_identity,
    check_prefix,
)

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

DEFAULT_PORT: Final = 8883
DEFAULT_LOG_TYPES: Final = ("error", "warning", "notice", "information")
_BINARY_DIRS: Final = ("/usr/sbin", "/usr/local/sbin")
_RUNNING: Final = re.compile(r"mosquitto version \S+ running$", re.MULTILINE)


# --------------------------------------------------------------------------- ACL


def render_acl(
    prefix: str = DEFAULT_PREFIX,
    readers: Sequence[str] = (),
    commanders: Sequence[str] = (),
) -> str:
    """Mosquitto ``acl_file`` text: devices write below their own id, readers read events.

    ``readers`` are control-room subscriber identities (certificate CNs);
    ``commanders`` may send devices commands. A name may be in both.
    """
    check_prefix(prefix)
    names = [check_identity(name, "reader identity") for name in readers]
    senders = [check_identity(name, "commander identity") for name in commanders]
    for what, values in (("reader", names), ("commander", senders)):
        seen = {v for v in values if values.count(v) > 1}
        if seen:
            raise ConfigError(f"{what} identity {sorted(seen)[0]!r} is listed twice")
    lines = [
        "# Edgewatch MQTT access control list (mosquitto acl_file),",
        "# as written by edgewatch.transport.mosquitto.render_acl.",
        "# Identities are client-certificate common names (use_identity_as_username).",
        "# Mosquitto 2.0 checks these rules on PUBLISH (write) and again on delivery",
        "# (read, against the message's real topic); it does not check SUBSCRIBE.",
        "",
        "# Every device (%u is its certificate's CN) may publish only below its own id",
        "# and receive only its own commands. Pattern rules apply to every user.",
        *(f"pattern write {prefix}/%u/{kind}" for kind in EVENT_KINDS),
        f"pattern read {prefix}/%u/{COMMAND_TOPIC}",
    ]
    for name in dict.fromkeys([*names, *senders]):
        role = "Control-room reader" if name in names else "Command sender"
        lines += [
            "",
            f"# {role} {name}. The deny rule keeps it from posing as a device of that id.",
        ]
        if name in names:
            lines += [
                "# Reading <prefix>/+/<kind> also covers shared subscriptions",
                f"# ($share/<group>/{prefix}/+/alert): delivery is checked on the real topic.",
            ]
        lines += [f"user {name}", f"topic deny {prefix}/{name}/#"]
        if name in names:
            lines += [f"topic read {prefix}/+/{kind}" for kind in EVENT_KINDS]
        if name in senders:
            lines.append(f"topic write {prefix}/+/{COMMAND_TOPIC}")
    return "\n".join(lines) + "\n"


def acl_rules(text: str) -> list[str]:
    """The rule lines of an ACL file (comments and blank lines dropped, spaces normalised)."""
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and line[0] != "#"]


# ------------------------------------------------------------------------ config


def render_config(
    *,
    cafile: Path,
    certfile: Path,
    keyfile: Path,
    acl_file: Path,
    persistence_location: Path,
    port: int = DEFAULT_PORT,
    bind_address: str | None = None,
    crlfile: Path | None = None,
    log_file: Path | None = None,
    log_types: Sequence[str] = DEFAULT_LOG_TYPES,
    max_queued_messages: int = 10_000,
    autosave_interval: int = 60,
    persistent_client_expiration: str | None = "14d",
    run_as_user: str | None = None,
) -> str:
    """A ``mosquitto.conf`` for one mutual-TLS listener; every option says why it is there.

    ``log_file`` None logs to stderr (journald under systemd, a file for
    :class:`LocalBroker`). ``run_as_user`` only matters when started as root.
    """
    if not 0 < port < 65536:
        raise ConfigError(f"broker port {port} is not between 1 and 65535")
    if max_queued_messages < 1000:
        raise ConfigError(
            f"max_queued_messages {max_queued_messages} is too small: a device offline for "
            "a while may need more than 1000 alerts queued"
        )
    listener = f"listener {port} {bind_address}" if bind_address else f"listener {port}"
    lines = [
        "# Edgewatch control-room broker (mosquitto 2.0).",
        "# Generated by edgewatch.transport.mosquitto.render_config.",
        "",
        "# Authentication and authorisation are global: one listener, one ACL.",
        "per_listener_settings false",
        "# Only clients with a certificate from our CA get in; no user names or passwords.",
        "allow_anonymous false",
        "# Which identity may publish or read which topic.",
        f"acl_file {acl_file}",
    ]
    if run_as_user:
        lines += [
            "# Started as root, drop to this user right after reading this file.",
            f"user {run_as_user}",
        ]
    lines += [
        "",
        "# Persistent sessions and their queued QoS 1 alerts survive a broker restart.",
        "persistence true",
        f"persistence_location {persistence_location}/",
        "# Also save every N seconds, bounding what a power cut loses (a clean stop saves).",
        f"autosave_interval {autosave_interval}",
        "# Per client: a subscriber offline for hours must not lose alerts (default 1000).",
        f"max_queued_messages {max_queued_messages}",
    ]
    if persistent_client_expiration:
        lines += [
            "# Forget sessions of clients that never come back (retired devices, test ids).",
            f"persistent_client_expiration {persistent_client_expiration}",
        ]
    lines += [
        "# Alerts are small and latency matters more than packet count.",
        "set_tcp_nodelay true",
        "",
        "# Logging: connections and refusals, never payloads (they may be biometric).",
        f"log_dest file {log_file}" if log_file else "log_dest stderr",
        *(f"log_type {kind}" for kind in log_types),
        "connection_messages true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "",
        "# The only listener: MQTT over mutual TLS.",
        listener,
        "protocol mqtt",
        "# The CA that signs device and reader certificates, and the broker's own pair.",
        f"cafile {cafile}",
        f"certfile {certfile}",
        f"keyfile {keyfile}",
        "# TLS 1.2 is the minimum; 1.3 is used when both ends support it.",
        "tls_version tlsv1.2",
        "# Mutual TLS: no valid client certificate, no connection.",
        "require_certificate true",
        "# The certificate's CN is the user name the ACL sees ...",
        "use_identity_as_username true",
        "# ... and the client id, so nobody can take over another client's session.",
        "use_username_as_clientid true",
    ]
    if crlfile:
        lines += [
            "# Revoked certificates are refused at the handshake (re-read on SIGHUP).",
            f"crlfile {crlfile}",
        ]
    return "\n".join(lines) + "\n"


def config_options(text: str) -> list[str]:
    """The option lines of a mosquitto config (comments and blank lines dropped)."""
    return acl_rules(text)


# ----------------------------------------------------------------- client side


@dataclass(frozen=True)
class ClientCredentials:
    """Where a client's TLS material lives: the CA to trust, its certificate and key."""

    ca_cert: Path
    cert: Path
    key: Path

    def check(self) -> None:
        """Fail early, naming the file, rather than deep inside an SSL handshake."""
        for what, path in (
            ("CA certificate", self.ca_cert),
            ("client certificate", self.cert),
            ("client key", self.key),
        ):
            if not Path(path).is_file():
                raise ConfigError(f"{what} file {path} does not exist")


def tls_client_context(creds: ClientCredentials) -> ssl.SSLContext:
    """A client context: verify the broker against our CA (and its name), present our cert."""
    creds.check()
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(creds.ca_cert))
    except ssl.SSLError:
        raise ConfigError(f"CA certificate file {creds.ca_cert} is not a PEM certificate") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=str(creds.cert), keyfile=str(creds.key))
    except ssl.SSLError:
        raise ConfigError(
            f"client certificate {creds.cert} and key {creds.key} cannot be loaded: "
            "not PEM, or the key does not belong to the certificate"
        ) from None
    return context


def configure_tls(client: mqtt.Client, creds: ClientCredentials) -> None:
    """Set up a paho client for mutual TLS (call before ``connect``)."""
    client.tls_set_context(tls_client_context(creds))


# ------------------------------------------------------------------ local broker


def find_mosquitto(extra_dirs: Sequence[str] = _BINARY_DIRS) -> Path:
    """The ``mosquitto`` binary: PATH first, then the sbin directories PATH often lacks."""
    found = shutil.which("mosquitto")
    if found:
        return Path(found)
    for directory in extra_dirs:
        candidate = Path(directory) / "mosquitto"
        if os.access(candidate, os.X_OK):
            return candidate
    searched = ", ".join(["PATH", *extra_dirs])
    raise EdgewatchError(
        f"the mosquitto broker is not installed (searched {searched}): "
        "install the Debian package 'mosquitto'"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """Last-resort cleanup so an abandoned LocalBroker never outlives the interpreter."""
    if process.poll() is None:
        process.kill()
        process.wait()


class LocalBroker:
    """A real ``mosquitto`` on loopback with its own CA, for tests and the desktop demo.

    Everything lives in ``workdir``: ``pki/`` (CA, server pair, CRL),
    ``clients/<cn>/``, ``mosquitto.conf``, ``edgewatch.acl``, ``data/``
    (persistence) and ``mosquitto.log``. A fresh CA is created for every
    instance. The port is kept across :meth:`stop`/:meth:`start`, so clients
    can reconnect to the same address after a simulated outage.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        prefix: str = DEFAULT_PREFIX,
        readers: Sequence[str] = ("control-room",),
        commanders: Sequence[str] = (),
        port: int | None = None,
        bind_address: str = "127.0.0.1",
        server_names: Sequence[str] = ("localhost",),
        server_addresses: Sequence[str] = ("127.0.0.1",),
        log_types: Sequence[str] = DEFAULT_LOG_TYPES,
        binary: Path | None = None,
        start_timeout: float = 10.0,
        ca: pki.CertifiedKey | None = None,
        crl_path: Path | None = None,
    ) -> None:
        """``ca`` and ``crl_path``: run on an existing CA and its CRL (a fleet's, see
        :mod:`edgewatch.provisioning.fleet`) instead of a fresh CA of its own."""
        self.workdir = Path(workdir)
        self.prefix = check_prefix(prefix)
        self.readers = tuple(readers)
        self.commanders = tuple(commanders)
        self.bind_address = bind_address
        self.host = "127.0.0.1" if bind_address in ("0.0.0.0", "") else bind_address  # noqa: S104
        self.start_timeout = start_timeout
        self.binary = binary or find_mosquitto()
        self.port = port or free_port(self.host)
        self._log_types = tuple(log_types)
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], LocalBroker] | None = None
        self._issued: dict[str, list[int]] = {}
        self._revoked: set[int] = set()

        pki_dir = self.workdir / "pki"
        for directory in (self.workdir, pki_dir, self.workdir / "clients", self.data_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.ca = ca or pki.create_ca(f"edgewatch local CA {self.port}")
        self.ca_cert_path = pki_dir / "ca.crt"
        self.server_cert_path = pki_dir / "server.crt"
        self.server_key_path = pki_dir / "server.key"
        self.crl_path = crl_path or pki_dir / "crl.pem"
        pki.write_certificate(self.ca_cert_path, self.ca.cert)
        pki.write_private_key(pki_dir / "ca.key", self.ca.key)
        server = pki.issue(
            self.ca,
            server_names[0] if server_names else "edgewatch-broker",
            client=False,
            hostnames=server_names,
            ip_addresses=server_addresses,
        )
        pki.write_certificate(self.server_cert_path, server.cert)
        pki.write_private_key(self.server_key_path, server.key)
        if crl_path is None:
            pki.write_crl(self.crl_path, pki.build_crl(self.ca, ()))
        self.write_config()

    # -- files

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def acl_path(self) -> Path:
        return self.workdir / "edgewatch.acl"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def write_config(self) -> None:
        """(Re)write config and ACL from the current settings (applied on start or reload)."""
        self.acl_path.write_text(render_acl(self.prefix, self.readers, self.commanders))
        self.config_path.write_text(
            render_config(
                cafile=self.ca_cert_path,
                certfile=self.server_cert_path,
                keyfile=self.server_key_path,
                acl_file=self.acl_path,
                persistence_location=self.data_dir,
                port=self.port,
                bind_address=self.bind_address,
                crlfile=self.crl_path,
                log_types=self._log_types,
                # Mosquitto started as root drops to user 'mosquitto', which could not
                # read this private working directory; stay the user we are.
                run_as_user=pwd.getpwuid(os.geteuid()).pw_name,
            )
        )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the broker's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log yet)"
        return "\n".join(text.splitlines()[-lines:])

    # -- identities

    def issue_client(self, common_name: str) -> ClientCredentials:
        """A client certificate for a device or reader ``common_name``, written to disk."""
        check_identity(common_name, "client identity")
        issued = pki.issue(self.ca, common_name, client=True)
        directory = self.workdir / "clients" / common_name
        directory.mkdir(parents=True, exist_ok=True)
        creds = ClientCredentials(
            ca_cert=self.ca_cert_path,
            cert=directory / "client.crt",
            key=directory / "client.key",
        )
        pki.write_certificate(creds.cert, issued.cert)
        pki.write_private_key(creds.key, issued.key)
        self._issued.setdefault(common_name, []).append(issued.cert.serial_number)
        return creds

    def revoke(self, common_name: str, *, restart: bool = True) -> None:
        """Revoke every certificate issued here for ``common_name``.

        A SIGHUP makes Mosquitto re-read the CRL for *new* handshakes only; a
        revoked client that is already connected stays connected. So by
        default the broker is restarted (persistent sessions survive); with
        ``restart=False`` it is only reloaded.
        """
        serials = self._issued.get(common_name)
        if not serials:
            raise ConfigError(f"no certificate was issued for {common_name!r} by this broker")
        self._revoked.update(serials)
        pki.write_crl(self.crl_path, pki.build_crl(self.ca, self._revoked))
        if not self.running:
            return
        if restart:
            self.stop()
            self.start()
        else:
            self.reload()

    # -- process

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start ``mosquitto -c <conf>`` and wait until its TLS port accepts connections."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            log_start = log.tell()
            process = subprocess.Popen(
                [str(self.binary), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        self._process = process
        self._finalizer = weakref.finalize(self, _terminate, process)
        # Ready means: this process says it is running (so the port is ours, not a
        # leftover listener's) and the port accepts TCP connections.
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = process.poll()
            if code is not None:
                self._forget_process()
                raise EdgewatchError(
                    f"mosquitto exited with code {code} while starting on port {self.port} "
                    f"(config {self.config_path}); its log ends with:\n{self.log_tail()}"
                )
            if _RUNNING.search(self._log_since(log_start)):
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((self.host, self.port), timeout=0.5),
                ):
                    return
            if time.monotonic() > deadline:
                self.kill()
                raise EdgewatchError(
                    f"mosquitto did not accept connections on {self.host}:{self.port} within "
                    f"{self.start_timeout:g} s; its log ends with:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: Mosquitto saves its persistence database on the way out."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                self._forget_process()
                raise EdgewatchError(
                    f"mosquitto on port {self.port} ignored SIGTERM for {timeout:g} s and was "
                    "killed; queued messages since its last autosave are lost"
                ) from None
        self._forget_process()

    def kill(self) -> None:
        """SIGKILL, like a power cut: whatever was not autosaved is lost."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self._forget_process()

    def reload(self, timeout: float = 10.0) -> None:
        """SIGHUP (re-reads ACL, CRL, certificates) and wait until the broker has done it."""
        process = self._process
        if process is None or process.poll() is not None:
            raise EdgewatchError(f"mosquitto on port {self.port} is not running: cannot reload")
        marker = "Reloading config."
        before = self.log_path.read_text(errors="replace").count(marker)
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self.log_path.read_text(errors="replace").count(marker) <= before:
            if process.poll() is not None or time.monotonic() > deadline:
                raise EdgewatchError(
                    f"mosquitto on port {self.port} did not reload; its log ends with:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.02)

    def _forget_process(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = None
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
