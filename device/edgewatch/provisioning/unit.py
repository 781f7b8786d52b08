"""The unit's side of provisioning: first-boot keys and request, then installing the bundle.

Both steps work on a :class:`~edgewatch.unit.layout.UnitLayout`, so the same
code runs on the unit (root ``/``, at first boot, from
firmware_scripts/install-unit.sh) and against a unit's file tree elsewhere
(a simulated unit in the tests). Private keys are created here, on the unit,
0600 in the service's state directory, and are never read back out: the
request carries public keys and a CSR only.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edgewatch.errors import ConfigError
from edgewatch.fileio import PRIVATE, PUBLIC, read_bytes, write_atomic
from edgewatch.provisioning.formats import Bundle, issuer_key_of, make_request, read_request
from edgewatch.provisioning.unit_config import render_unit_config
from edgewatch.security.keys import (
    key_id,
    load_sealing_key,
    load_signing_key,
    save_key_pair,
)
from edgewatch.transport import pki
from edgewatch.transport.topics import check_identity
from edgewatch.unit.layout import ETC, SERVICE_USER, UnitLayout


@dataclass(frozen=True, slots=True)
class Owner:
    """The service user's uid and gid in the unit's own /etc/passwd."""

    uid: int
    gid: int


def service_owner(layout: UnitLayout, user: str = SERVICE_USER) -> Owner | None:
    """``user``'s ids from ``<root>/etc/passwd``, or None if the unit has no such user."""
    passwd = layout.under(Path("/etc/passwd"))
    if not passwd.exists():
        return None
    for line in passwd.read_text().splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == user:
            return Owner(int(fields[2]), int(fields[3]))
    return None


def _chown(path: Path, uid: int, gid: int) -> None:
    if os.geteuid() == 0:
        os.chown(path, uid, gid)


def _private_dir(path: Path, owner: Owner | None) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    if owner is not None:
        _chown(path, owner.uid, owner.gid)


@dataclass(frozen=True, slots=True)
class Initialised:
    request: Path
    signing_kid: str
    watchlist_kid: str
    created_keys: bool


def init_unit(layout: UnitLayout, device_id: str, owner: Owner | None) -> Initialised:
    """Generate the unit's keys (if it has none yet) and write its provisioning request.

    Run again, it keeps the keys (they may already be registered) and writes
    the request anew, so a lost request can be made again; a request for
    another device id than the one the keys were made for is refused.
    """
    check_identity(device_id)
    for directory in (
        layout.state_root,
        layout.keys_dir,
        layout.state_dir,
        layout.provisioning_dir,
    ):
        _private_dir(directory, owner)
    created = not layout.signing_key.exists()
    if created:
        for path, kind in (
            (layout.signing_key, Ed25519PrivateKey),
            (layout.watchlist_key, X25519PrivateKey),
        ):
            save_key_pair(kind.generate(), path, path.with_suffix(".pub"))
        pki.write_private_key(layout.tls_key, pki.create_key())
    elif layout.request.exists():
        existing, _ = read_request(read_bytes(layout.request, "request"), str(layout.request))
        if existing.device_id != device_id:
            raise ConfigError(
                f"this unit's keys were made for device id {existing.device_id!r}, not "
                f"{device_id!r}; a unit keeps its id (re-flash it to start over)"
            )
    signing = load_signing_key(layout.signing_key, "unit signing key")
    watchlist = load_sealing_key(layout.watchlist_key, "unit watch-list key")
    tls_key = pki.load_private_key(layout.tls_key)
    request = make_request(
        device_id, signing, watchlist.public_key(), pki.create_csr(tls_key, device_id)
    )
    write_atomic(layout.request, request, PUBLIC)
    if owner is not None:
        for path in (*layout.keys_dir.iterdir(), layout.request):
            _chown(path, owner.uid, owner.gid)
    return Initialised(
        layout.request, key_id(signing.public_key()), key_id(watchlist.public_key()), created
    )


def _check_bundle(layout: UnitLayout, bundle: Bundle, now: dt.datetime) -> x509.Certificate:
    """Every check the unit can make that the bundle is for it and sound."""
    request, _ = read_request(read_bytes(layout.request, "provisioning request"), "request")
    if bundle.device_id != request.device_id:
        raise ConfigError(
            f"the bundle is for unit {bundle.device_id!r}, this is unit {request.device_id!r}"
        )
    signing = load_signing_key(layout.signing_key, "unit signing key").public_key()
    watchlist = load_sealing_key(layout.watchlist_key, "unit watch-list key").public_key()
    if (bundle.signing_kid, bundle.watchlist_kid) != (key_id(signing), key_id(watchlist)):
        raise ConfigError(
            "the bundle registers other keys than this unit's: it was made from another "
            "unit's request (or this unit was re-flashed since)"
        )
    try:
        ca = x509.load_pem_x509_certificate(bundle.ca_cert.encode())
        cert = x509.load_pem_x509_certificate(bundle.client_cert.encode())
    except ValueError:
        raise ConfigError("the bundle's certificates are not PEM certificates") from None
    own = pki.load_private_key(layout.tls_key).public_key()
    problem = pki.client_certificate_problem(cert, ca, own, request.device_id, now)
    if problem is not None:
        raise ConfigError(problem)
    return cert


def install_bundle(
    layout: UnitLayout, bundle: Bundle, owner: Owner | None, now: dt.datetime | None = None
) -> list[str]:
    """Check the bundle, then write certificates, keys to trust and the configuration.

    An existing configuration file is kept (an operator may have tuned it);
    certificates and trusted keys are always replaced, so installing a new
    bundle is also how a unit gets a renewed certificate. Returns what was done.
    """
    _check_bundle(layout, bundle, now or dt.datetime.now(dt.UTC))
    config_dir = layout.config.parent
    done: list[str] = []
    for directory in (config_dir, layout.tls_dir, layout.issuers_dir):
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        directory.chmod(0o750)
        if owner is not None:
            _chown(directory, 0, owner.gid)
    write_atomic(layout.tls_dir / "ca.crt", bundle.ca_cert.encode(), PUBLIC)
    write_atomic(layout.tls_dir / "client.crt", bundle.client_cert.encode(), PUBLIC)
    done.append(f"certificates in {layout.tls_dir}")
    for stale in layout.issuers_dir.glob("*.pub"):
        stale.unlink()
    issuer_files = []
    for pem in bundle.issuer_keys:
        name = f"issuer-{key_id(issuer_key_of(pem))[:16]}.pub"
        write_atomic(layout.issuers_dir / name, pem.encode(), PUBLIC)
        issuer_files.append(str(ETC / "issuers" / name))
    done.append(f"{len(issuer_files)} trusted issuer key(s) in {layout.issuers_dir}")
    if bundle.crop_key is not None:
        write_atomic(layout.crop_key, bundle.crop_key.encode(), PUBLIC)
        done.append(f"control room crop key {layout.crop_key}")
    if layout.config.exists():
        done.append(f"kept the existing {layout.config}")
    else:
        text = render_unit_config(
            bundle.device_id, bundle.broker, issuer_files, bundle.crop_key is not None
        )
        write_atomic(layout.config, text.encode(), 0o640)
        if owner is not None:
            _chown(layout.config, 0, owner.gid)
        done.append(f"configuration {layout.config}")
    write_atomic(layout.installed, bundle.to_json(), PRIVATE)
    if owner is not None:
        _chown(layout.installed, owner.uid, owner.gid)
    return done
