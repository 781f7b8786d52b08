"""The watch-list file, version 1 (specified in ``docs/watchlist-format.md``).

Layout (integers big-endian)::

    magic        8 bytes   b"EDGEWL\\x00\\x01"
    header_len   4 bytes
    header       header_len bytes of UTF-8 JSON (sorted keys, no spaces)
    body_len     8 bytes
    body         AES-256-GCM ciphertext and 16-byte tag of the plaintext body
    signature    64 bytes  Ed25519 by the issuer over every byte before it

Only standard constructions, composed in the usual way:

- The body (entries' metadata and templates) is encrypted once with a fresh
  256-bit content key; the associated data is ``magic || header_len || header``,
  so the body cannot be moved under another header.
- The content key is sealed to each authorised device's X25519 key with HPKE
  (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM);
  the HPKE ``info`` names the format, the watch-list id and its version.
- The issuer's Ed25519 signature covers the whole file; a device checks it,
  against a key pinned in its configuration, before it reads anything else.

Plaintext body: ``entries_len`` (4 bytes) || entries JSON || templates as
little-endian float32, ``template_count`` rows of ``dim``, rows grouped by entry
in entry order. Photos never enter the file.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import numpy as np
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from edgewatch.accuracy.calibration import PRODUCT_MAX_FPIR
from edgewatch.errors import ConfigError, EdgewatchError
from edgewatch.security.keys import b64url, b64url_decode, key_id
from edgewatch.transport.topics import IdentityField
from edgewatch.validation import validated
from edgewatch.vision.types import FloatArray

MAGIC: Final = b"EDGEWL\x00\x01"
FORMAT_VERSION: Final = 1
SIGNATURE_SIZE: Final = 64
NONCE: Final = b"\x00" * 12
"""The content key is fresh for every file and encrypts one message, so a fixed
nonce is safe (as in RFC 9180's own single-shot use of its key schedule)."""
SUITE_NAME: Final = "HPKE-base(DHKEM-X25519-HKDF-SHA256,HKDF-SHA256,AES-256-GCM)+AES-256-GCM"
HPKE_SUITE: Final = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
CATEGORIES: Final = ("wanted", "missing-person", "vulnerable", "other")
MAX_HEADER: Final = 1 << 20
_HEADER_LEN = struct.Struct(">I")
_BODY_LEN = struct.Struct(">Q")
_ENTRIES_LEN = struct.Struct(">I")


class WatchlistFormatError(EdgewatchError):
    """The bytes are not a well-formed version-1 watch-list."""


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must include a timezone, e.g. 2026-12-01T08:00:00Z")
    return value.astimezone(UTC)


AwareTime = Annotated[datetime, AfterValidator(_aware)]
Text = Annotated[str, Field(min_length=1, max_length=500)]


class Deployment(BaseModel):
    """Who authorised the list, for what, where, and for how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: IdentityField
    purpose: Text
    location: Text
    authorised_by: Text
    not_before: AwareTime
    expires: AwareTime
    max_entries: int = Field(ge=1, le=10_000_000)

    @model_validator(mode="after")
    def _window(self) -> Deployment:
        if self.expires <= self.not_before:
            raise ValueError("expires must be after not_before")
        return self


class ModelRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Policy(BaseModel):
    """The decision policy the templates were issued for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(gt=-1.0, lt=1.0)
    margin: float = Field(ge=0.0, lt=1.0)
    max_fpir: float = Field(
        default=PRODUCT_MAX_FPIR,
        gt=0.0,
        le=PRODUCT_MAX_FPIR,
        description="Authorised false-positive identification rate per face searched.",
    )
    predicted_fpir: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="The issuer's prediction for this list at this threshold (calibration).",
    )


class Recipient(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kid: str = Field(min_length=43, max_length=43)
    sealed_key: str = Field(min_length=1)


class Header(BaseModel):
    """The signed, unencrypted header: everything but biometric data and who is listed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1]
    suite: Literal["HPKE-base(DHKEM-X25519-HKDF-SHA256,HKDF-SHA256,AES-256-GCM)+AES-256-GCM"]
    watchlist_id: IdentityField
    version: int = Field(ge=1)
    issued_at: AwareTime
    issuer_kid: str = Field(min_length=43, max_length=43)
    deployment: Deployment
    model: ModelRef
    policy: Policy
    entry_count: int = Field(ge=0)
    template_count: int = Field(ge=0)
    dim: int = Field(ge=1, le=4096)
    recipients: list[Recipient] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Header:
        if self.entry_count > self.deployment.max_entries:
            raise ValueError(
                f"{self.entry_count} entries exceed the deployment's maximum "
                f"{self.deployment.max_entries}"
            )
        if self.template_count < self.entry_count:
            raise ValueError("every entry needs at least one template")
        if len({r.kid for r in self.recipients}) != len(self.recipients):
            raise ValueError("a recipient is listed twice")
        return self

    def recipient(self, kid: str) -> Recipient | None:
        return next((r for r in self.recipients if r.kid == kid), None)


class Entry(BaseModel):
    """One listed person: a pseudonymous reference, never a photo."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ref: str = Field(min_length=1, max_length=200)
    category: Literal["wanted", "missing-person", "vulnerable", "other"]
    templates: int = Field(ge=1)
    source: str = Field(default="", max_length=500)
    added_by: str = Field(default="", max_length=200)


class _Entries(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: list[Entry]


def hpke_info(watchlist_id: str, version: int) -> bytes:
    return f"edgewatch watch-list v{FORMAT_VERSION}|{watchlist_id}|{version}".encode()


def _compact(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class HeaderFields:
    """What the issuer decides; the rest of the header is derived when sealing."""

    watchlist_id: str
    version: int
    deployment: Deployment
    model: ModelRef
    policy: Policy


def seal(
    fields: HeaderFields,
    entries: Sequence[Entry],
    templates: FloatArray,
    recipients: Sequence[X25519PublicKey],
    issuer_key: Ed25519PrivateKey,
    issued_at: datetime | None = None,
) -> bytes:
    """Encrypt, seal and sign a watch-list; returns the file's bytes."""
    if templates.ndim != 2 or templates.shape[0] != sum(e.templates for e in entries):
        raise ConfigError("watch-list: templates do not match the entries' template counts")
    if not recipients:
        raise ConfigError("watch-list: at least one recipient device key is required")
    content_key = AESGCM.generate_key(bit_length=256)
    info = hpke_info(fields.watchlist_id, fields.version)
    header_dict = {
        "format": FORMAT_VERSION,
        "suite": SUITE_NAME,
        "watchlist_id": fields.watchlist_id,
        "version": fields.version,
        "issued_at": (issued_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "issuer_kid": key_id(issuer_key.public_key()),
        "deployment": fields.deployment.model_dump(mode="json"),
        "model": fields.model.model_dump(),
        "policy": fields.policy.model_dump(exclude_none=True),
        "entry_count": len(entries),
        "template_count": int(templates.shape[0]),
        "dim": int(templates.shape[1]),
        "recipients": [
            {"kid": key_id(pub), "sealed_key": b64url(HPKE_SUITE.encrypt(content_key, pub, info))}
            for pub in recipients
        ],
    }
    header_bytes = _compact(header_dict)
    _validated_header(header_bytes)  # an issuer never writes a header that devices reject
    prefix = MAGIC + _HEADER_LEN.pack(len(header_bytes)) + header_bytes
    entries_json = _compact({"entries": [e.model_dump() for e in entries]})
    plaintext = bytearray(
        _ENTRIES_LEN.pack(len(entries_json))
        + entries_json
        + np.ascontiguousarray(templates, dtype="<f4").tobytes()
    )
    try:
        body = AESGCM(content_key).encrypt(NONCE, bytes(plaintext), prefix)
    finally:
        plaintext[:] = bytes(len(plaintext))
    signed = prefix + _BODY_LEN.pack(len(body)) + body
    return signed + issuer_key.sign(signed)


@dataclass(frozen=True, slots=True)
class Container:
    """A parsed but not yet trusted file: check :meth:`verify` before anything else."""

    header: Header
    header_prefix: bytes
    body: bytes
    signed: bytes
    signature: bytes

    def verify(self, issuer: Ed25519PublicKey) -> None:
        """Raise ``InvalidSignature`` unless ``issuer`` signed exactly these bytes."""
        issuer.verify(self.signature, self.signed)


def parse(data: bytes) -> Container:
    """Split a file into its parts; :class:`WatchlistFormatError` if it is not one."""
    if not data.startswith(MAGIC[:6]):
        raise WatchlistFormatError("not an edgewatch watch-list (wrong magic bytes)")
    if data[:8] != MAGIC:
        raise WatchlistFormatError(
            f"watch-list format {int.from_bytes(data[6:8], 'big')} is not supported "
            f"(this software reads format {FORMAT_VERSION})"
        )
    offset = len(MAGIC)
    if len(data) < offset + _HEADER_LEN.size + _BODY_LEN.size + SIGNATURE_SIZE:
        raise WatchlistFormatError("file is truncated")
    (header_len,) = _HEADER_LEN.unpack_from(data, offset)
    offset += _HEADER_LEN.size
    if header_len > MAX_HEADER or offset + header_len + _BODY_LEN.size > len(data):
        raise WatchlistFormatError("header length is out of range (file truncated or corrupt)")
    header_bytes = data[offset : offset + header_len]
    offset += header_len
    (body_len,) = _BODY_LEN.unpack_from(data, offset)
    offset += _BODY_LEN.size
    if offset + body_len + SIGNATURE_SIZE != len(data):
        raise WatchlistFormatError("body length does not match the file size (truncated or padded)")
    body = data[offset : offset + body_len]
    header = _validated_header(header_bytes)
    return Container(
        header=header,
        header_prefix=data[: len(MAGIC) + _HEADER_LEN.size + header_len],
        body=body,
        signed=data[: offset + body_len],
        signature=data[offset + body_len :],
    )


def _validated_header(header_bytes: bytes) -> Header:
    try:
        raw = json.loads(header_bytes)
    except (ValueError, UnicodeDecodeError):
        raise WatchlistFormatError("header is not JSON") from None
    if not isinstance(raw, dict):
        raise WatchlistFormatError("header is not a JSON object")
    return validated(Header, raw, "watch-list header is not valid", WatchlistFormatError)


class Plaintext:
    """The decrypted body, in a buffer this object owns and :meth:`wipe` overwrites."""

    def __init__(self, buffer: bytearray, header: Header) -> None:
        self._buffer = buffer
        (entries_len,) = _ENTRIES_LEN.unpack_from(buffer, 0)
        start = _ENTRIES_LEN.size
        expected = start + entries_len + header.template_count * header.dim * 4
        if entries_len > len(buffer) or len(buffer) != expected:
            raise WatchlistFormatError("decrypted body has the wrong size for its header")
        try:
            raw = json.loads(bytes(memoryview(buffer)[start : start + entries_len]))
            self.entries: list[Entry] = _Entries.model_validate(raw).entries
        except ValueError:
            raise WatchlistFormatError("decrypted entries are not valid") from None
        if len(self.entries) != header.entry_count or (
            sum(e.templates for e in self.entries) != header.template_count
        ):
            raise WatchlistFormatError("entries do not match the header's counts")
        self.templates: FloatArray = np.frombuffer(
            buffer, dtype="<f4", offset=start + entries_len
        ).reshape(header.template_count, header.dim)

    def wipe(self) -> None:
        """Overwrite the decrypted bytes; the arrays viewing them read zeros afterwards."""
        self._buffer[:] = bytes(len(self._buffer))


def open_body(container: Container, device_key: X25519PrivateKey) -> Plaintext:
    """Unseal the content key for this device and decrypt the body into memory.

    Raises ``LookupError`` if the device is not a recipient and ``InvalidTag``
    if its sealed key or the body does not decrypt.
    """
    header = container.header
    recipient = header.recipient(key_id(device_key.public_key()))
    if recipient is None:
        raise LookupError("device is not a recipient")
    sealed = b64url_decode(recipient.sealed_key, "sealed key")
    content_key = HPKE_SUITE.decrypt(
        sealed, device_key, hpke_info(header.watchlist_id, header.version)
    )
    if len(container.body) < 16:
        raise InvalidTag()
    buffer = bytearray(len(container.body) - 16)
    AESGCM(content_key).decrypt_into(NONCE, container.body, container.header_prefix, buffer)
    try:
        return Plaintext(buffer, header)
    except WatchlistFormatError:
        buffer[:] = bytes(len(buffer))
        raise


__all__ = [
    "CATEGORIES",
    "Container",
    "Deployment",
    "Entry",
    "Header",
    "HeaderFields",
    "InvalidSignature",
    "InvalidTag",
    "ModelRef",
    "Plaintext",
    "Policy",
    "WatchlistFormatError",
    "open_body",
    "parse",
    "seal",
]
