"""A small X.509 toolkit for the broker's mutual TLS.

Every device and every control-room subscriber authenticates to the broker
with a client certificate whose common name *is* its identity: Mosquitto
(``use_identity_as_username``) turns the CN into the ACL user name, so the CN
decides which topics the client may touch. That is why client CNs are checked
with :func:`~edgewatch.transport.topics.check_identity` before signing.

TLS keys are ECDSA P-256 (what every TLS stack, including Mosquitto's
OpenSSL, accepts); they are deliberately separate from the devices' Ed25519
event-signing keys, so that rotating a transport certificate never changes the
key that vouches for a match event.

Revocation goes through a CRL file that Mosquitto reads (``crlfile``): it is
how a stolen or decommissioned device is refused without re-keying the fleet.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgewatch.errors import ConfigError
from edgewatch.transport.topics import check_identity

PrivateKey = ec.EllipticCurvePrivateKey
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Backdating tolerates small clock skew between the issuer and a device that
# has just synced its clock (a Pi without RTC boots in 1970 until NTP runs).
_BACKDATE = dt.timedelta(minutes=5)
_HASH = hashes.SHA256()


@dataclass(frozen=True)
class CertifiedKey:
    """A private key and the certificate for it (a CA, a server or a client)."""

    key: PrivateKey
    cert: x509.Certificate


def create_key() -> PrivateKey:
    """A fresh ECDSA P-256 key for TLS."""
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    if not common_name or len(common_name) > 64:
        raise ConfigError(f"certificate common name {common_name!r} must be 1-64 characters")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_days(valid_days: int) -> None:
    if valid_days < 1:
        raise ConfigError(f"certificate validity must be at least 1 day, not {valid_days}")


def create_ca(common_name: str, valid_days: int = 3650) -> CertifiedKey:
    """A self-signed CA that may sign leaf certificates and CRLs, nothing deeper."""
    _check_days(valid_days)
    key = create_key()
    name = _name(common_name)
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, _HASH)
    )
    return CertifiedKey(key=key, cert=cert)


def create_csr(key: PrivateKey, common_name: str) -> x509.CertificateSigningRequest:
    """A CSR carrying only the common name: the CA decides every extension."""
    return x509.CertificateSigningRequestBuilder().subject_name(_name(common_name)).sign(key, _HASH)


def _common_name(subject: x509.Name) -> str:
    values = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1:
        raise ConfigError(
            f"certificate request subject {subject.rfc4514_string()!r} "
            "must have exactly one common name"
        )
    value = values[0].value
    return value if isinstance(value, str) else value.decode()


def sign_csr(
    ca: CertifiedKey,
    csr: x509.CertificateSigningRequest,
    *,
    client: bool,
    hostnames: Sequence[str] = (),
    ip_addresses: Sequence[str | IPAddress] = (),
    valid_days: int = 825,
) -> x509.Certificate:
    """Sign a leaf certificate for a client (device, reader) or for the broker.

    The CSR must prove possession of its key (valid self-signature). A client's
    CN becomes its MQTT user name, so it must be a valid identity; a server
    certificate carries its host names and addresses as subjectAltNames, which
    is what TLS clients check (the CN is ignored by modern hostname checks).
    """
    _check_days(valid_days)
    if not csr.is_signature_valid:
        raise ConfigError("certificate request has an invalid signature: refusing to sign it")
    common_name = _common_name(csr.subject)
    if client:
        check_identity(common_name, "client certificate common name")
        if hostnames or ip_addresses:
            raise ConfigError(
                f"client certificate {common_name!r} must not carry host names or addresses"
            )
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ConfigError(f"certificate request {common_name!r} must use an ECDSA key")
    now = _now()
    not_after = min(now + dt.timedelta(days=valid_days), ca.cert.not_valid_after_utc)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
    )
    if not client:
        names = _subject_alt_names(hostnames, ip_addresses)
        if not names:
            raise ConfigError(
                f"server certificate {common_name!r} needs at least one host name or IP address"
            )
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca.key, _HASH)


def _subject_alt_names(
    hostnames: Iterable[str], ip_addresses: Iterable[str | IPAddress]
) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(host) for host in hostnames]
    for address in ip_addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(
                f"server certificate address {address!r} is not an IP address"
            ) from None
        names.append(x509.IPAddress(ip))
    return names


def issue(
    ca: CertifiedKey,
    common_name: str,
    *,
    client: bool,
    hostnames: Sequence[str] = (),
    ip_addresses: Sequence[str | IPAddress] = (),
    valid_days: int = 825,
) -> CertifiedKey:
    """Key, CSR and signature in one step (for tests, the demo and small fleets)."""
    key = create_key()
    csr = create_csr(key, common_name)
    cert = sign_csr(
        ca,
        csr,
        client=client,
        hostnames=hostnames,
        ip_addresses=ip_addresses,
        valid_days=valid_days,
    )
    return CertifiedKey(key=key, cert=cert)


def client_certificate_problem(
    cert: x509.Certificate,
    ca: x509.Certificate,
    key: ec.EllipticCurvePublicKey,
    common_name: str,
    now: dt.datetime,
) -> str | None:
    """Why ``cert`` cannot serve as ``common_name``'s client certificate for ``key`` under
    ``ca`` at ``now``, in words for the operator; None when it can.

    One set of checks for installing a bundle and for ``edgewatch doctor``.
    """
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, spki) != key.public_bytes(der, spki):
        return "the client certificate is not for this unit's TLS key"
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    named = names[0].value if names else None
    if named != common_name:
        return (
            f"the client certificate names {named!r}, but this unit is {common_name!r}: "
            "the broker would file its events elsewhere"
        )
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "the client certificate is not signed by the fleet CA"
    if now < cert.not_valid_before_utc:
        return (
            f"the client certificate is valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M}"
            " UTC: the clock is wrong (check time sync)"
        )
    if now >= cert.not_valid_after_utc:
        return f"the client certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}: re-enrol"
    return None


def build_crl(
    ca: CertifiedKey, revoked_serials: Iterable[int], valid_days: int = 30
) -> x509.CertificateRevocationList:
    """A CRL signed by ``ca`` listing ``revoked_serials`` (may be empty).

    Mosquitto refuses every client when its ``crlfile`` has expired, so the
    CRL must be re-issued (e.g. monthly) even when nothing new is revoked.
    """
    _check_days(valid_days)
    now = _now()
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - _BACKDATE)
        .next_update(now + dt.timedelta(days=valid_days))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
    )
    for serial in sorted(set(revoked_serials)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - _BACKDATE)
            .build()
        )
    return builder.sign(ca.key, _HASH)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a temp file in the same directory, so readers never see half a file."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: directory {path.parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        # mkstemp already creates the file 0600; chmod widens it for public files.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_private_key(path: Path, key: PrivateKey) -> None:
    """PEM (PKCS#8, unencrypted: the broker and devices start unattended), mode 0600.

    The file is never readable by others, not even for an instant: its
    temporary file is created 0600 and renamed into place.
    """
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomic(path, data, 0o600)


def write_certificate(path: Path, cert: x509.Certificate) -> None:
    """PEM, mode 0644 (certificates are public)."""
    _write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def write_crl(path: Path, crl: x509.CertificateRevocationList) -> None:
    """PEM, mode 0644, replaced atomically so the broker never reads a partial CRL."""
    _write_atomic(path, crl.public_bytes(serialization.Encoding.PEM), 0o644)


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}") from None


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate of a PEM file."""
    data = _read(path, "certificate")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"certificate file {path} is not a PEM certificate") from None


def load_private_key(path: Path) -> PrivateKey:
    """An unencrypted PEM ECDSA key, as written by :func:`write_private_key`."""
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(f"private key file {path} is encrypted: provide it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"private key file {path} is not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"private key file {path} is not an ECDSA key")
    return key
