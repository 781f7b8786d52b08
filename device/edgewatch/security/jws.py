"""Signed messages as JSON Web Signatures (RFC 7515, flattened JSON form) with EdDSA.

Why JWS rather than a home-made envelope: the signature is over the exact
bytes that travel (``BASE64URL(protected) '.' BASE64URL(payload)``), so no
canonical JSON form is needed, and any JOSE library in any language (RFC 8037
adds Ed25519) can verify our events with the device's public key. The
protected header names the key by its RFC 7638 thumbprint (``kid``) and the
message type (``typ``), so a signature for one type cannot be replayed as
another.

Verification never returns a half-trusted result: it either returns the
payload bytes that the named key signed, or raises :class:`VerificationError`
with a machine-readable ``reason``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgewatch.errors import ConfigError, EdgewatchError
from edgewatch.security.keys import b64url, b64url_decode, key_id

ALGORITHM: Final = "EdDSA"
Reason = Literal["malformed", "unknown_signer", "bad_signature", "wrong_type"]


class VerificationError(EdgewatchError):
    """A message that must not be trusted; ``reason`` says why, for counters and logs."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True, slots=True)
class Verified:
    """A payload and the key that signed it."""

    payload: bytes
    kid: str
    typ: str


def _compact(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Signer:
    """Signs payloads with one Ed25519 key; cheap to call from any thread."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.kid = key_id(key.public_key())

    def sign(self, payload: bytes, typ: str) -> bytes:
        """The flattened JWS JSON serialisation of ``payload``, as UTF-8 bytes."""
        protected = b64url(_compact({"alg": ALGORITHM, "kid": self.kid, "typ": typ}))
        body = b64url(payload)
        signature = self._key.sign(f"{protected}.{body}".encode("ascii"))
        return _compact({"payload": body, "protected": protected, "signature": b64url(signature)})


KeyLookup = Callable[[str], Ed25519PublicKey | None]


def verify(
    message: bytes, lookup: KeyLookup, expected_typ: str | tuple[str, ...] | None = None
) -> Verified:
    """Check a flattened JWS and return what it signed, or raise :class:`VerificationError`.

    ``expected_typ``: the payload type, or the types, the receiver accepts.
    """
    try:
        envelope = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        raise VerificationError("malformed", "not a JSON message") from None
    if not isinstance(envelope, dict) or set(envelope) != {"payload", "protected", "signature"}:
        raise VerificationError(
            "malformed", "not a flattened JWS (expected payload, protected, signature)"
        )
    if not all(isinstance(v, str) for v in envelope.values()):
        raise VerificationError("malformed", "JWS members must be strings")
    try:
        header = json.loads(b64url_decode(envelope["protected"], "protected header"))
        signature = b64url_decode(envelope["signature"], "signature")
        payload = b64url_decode(envelope["payload"], "payload")
    except (ConfigError, ValueError, UnicodeDecodeError) as exc:
        raise VerificationError("malformed", f"undecodable JWS member: {exc}") from None
    if not isinstance(header, dict):
        raise VerificationError("malformed", "protected header is not a JSON object")
    if header.get("alg") != ALGORITHM or "crit" in header:
        raise VerificationError(
            "malformed", f"unsupported JWS header: alg must be {ALGORITHM}, no crit"
        )
    kid, typ = header.get("kid"), header.get("typ")
    if not isinstance(kid, str) or not isinstance(typ, str):
        raise VerificationError("malformed", "protected header lacks kid or typ")
    key = lookup(kid)
    if key is None:
        raise VerificationError("unknown_signer", f"signed by unknown key {kid}")
    signing_input = f"{envelope['protected']}.{envelope['payload']}".encode("ascii")
    try:
        key.verify(signature, signing_input)
    except InvalidSignature:
        raise VerificationError("bad_signature", f"signature by {kid} does not verify") from None
    accepted = (expected_typ,) if isinstance(expected_typ, str) else expected_typ
    if accepted is not None and typ not in accepted:
        wanted = " or ".join(repr(t) for t in accepted)
        raise VerificationError("wrong_type", f"expected typ {wanted}, got {typ!r}")
    return Verified(payload=payload, kid=kid, typ=typ)
