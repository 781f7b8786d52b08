"""Key pairs of the appliance and its back office, on disk as PEM.

Three kinds of keys, each with one job (a key is never used for two):

- Ed25519 *signing* keys: a device signs its events, an issuer signs
  watch-lists, the issuer signs commands.
- X25519 *sealing* keys: a device's watch-list key (watch-lists' content keys
  are sealed to it with HPKE), the control room's crop key (the face crop of a
  match is sealed to it).

Private keys are PKCS#8 PEM, mode 0600, optionally encrypted with a
passphrase (issuers' workstation keys should be); public keys are
SubjectPublicKeyInfo PEM. A key is named by its RFC 7638 JWK thumbprint
(:func:`key_id`), the identifier JOSE tools compute too.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from edgewatch.errors import ConfigError
from edgewatch.fileio import PRIVATE, PUBLIC, read_bytes, write_atomic

PublicKey = Ed25519PublicKey | X25519PublicKey
PrivateKey = Ed25519PrivateKey | X25519PrivateKey

_CURVE = {Ed25519PublicKey: "Ed25519", X25519PublicKey: "X25519"}


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 §5), as JOSE uses it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, what: str) -> bytes:
    """Inverse of :func:`b64url`; a clear error for anything that is not base64url."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ConfigError(f"{what} is not valid base64url") from None


def raw_public_bytes(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: PublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an OKP public key (RFC 8037)."""
    curve = next(name for cls, name in _CURVE.items() if isinstance(key, cls))
    jwk = {"crv": curve, "kty": "OKP", "x": b64url(raw_public_bytes(key))}
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode("ascii")
    return b64url(hashlib.sha256(canonical).digest())


def public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def save_key_pair(
    key: PrivateKey, private_path: Path, public_path: Path, passphrase: bytes | None = None
) -> None:
    """Write a new key pair; refuses to overwrite an existing key (it may be in use)."""
    write_atomic(private_path, private_pem(key, passphrase), PRIVATE, overwrite=False)
    write_atomic(public_path, public_pem(key.public_key()), PUBLIC, overwrite=False)


def load_signing_key(path: Path, what: str, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """An Ed25519 private key (PEM), with errors that say what is wrong."""
    key: Ed25519PrivateKey = _load_private(path, Ed25519PrivateKey, what, passphrase)
    return key


def load_sealing_key(path: Path, what: str, passphrase: bytes | None = None) -> X25519PrivateKey:
    """An X25519 private key (PEM)."""
    key: X25519PrivateKey = _load_private(path, X25519PrivateKey, what, passphrase)
    return key


def load_verify_key(path: Path, what: str) -> Ed25519PublicKey:
    """An Ed25519 public key (PEM)."""
    key: Ed25519PublicKey = _load_public(path, Ed25519PublicKey, what)
    return key


def load_recipient_key(path: Path, what: str) -> X25519PublicKey:
    """An X25519 public key (PEM)."""
    key: X25519PublicKey = _load_public(path, X25519PublicKey, what)
    return key


def _load_private(path: Path, kind: Any, what: str, passphrase: bytes | None) -> Any:
    data = read_bytes(path, what)
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        raise ConfigError(
            f"{what} {path}: the key is encrypted and needs a passphrase"
            if passphrase is None
            else f"{what} {path}: the key is not encrypted; do not give a passphrase"
        ) from None
    except ValueError:
        raise ConfigError(
            f"{what} {path}: not a PEM private key, or the passphrase is wrong"
        ) from None
    if not isinstance(key, kind):
        raise ConfigError(f"{what} {path}: expected an {_kind_name(kind)} key")
    return key


def _load_public(path: Path, kind: Any, what: str) -> Any:
    return _public_from_pem(read_bytes(path, what), kind, f"{what} {path}")


def _public_from_pem(data: bytes, kind: Any, what: str) -> Any:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ConfigError(f"{what}: not a PEM public key") from None
    if not isinstance(key, kind):
        raise ConfigError(f"{what}: expected an {_kind_name(kind)} public key")
    return key


def verify_key_from_pem(data: bytes, what: str) -> Ed25519PublicKey:
    """An Ed25519 public key carried as PEM text inside a document."""
    key: Ed25519PublicKey = _public_from_pem(data, Ed25519PublicKey, what)
    return key


def recipient_key_from_pem(data: bytes, what: str) -> X25519PublicKey:
    """An X25519 public key carried as PEM text inside a document."""
    key: X25519PublicKey = _public_from_pem(data, X25519PublicKey, what)
    return key


def _kind_name(kind: Any) -> str:
    return "Ed25519" if "Ed25519" in kind.__name__ else "X25519"
