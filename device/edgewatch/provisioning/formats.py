"""The two documents that carry a unit through provisioning (docs/provisioning.md).

**The request** (``edgewatch.provisioning-request/1``), written by the unit
at first boot: its id, its two public keys and a certificate signing request
for its MQTT client certificate. It is a JWS signed with the unit's own new
Ed25519 key, and the CSR is signed with its TLS key: the back office learns
that whoever wrote it holds both private keys, and an edited request (a
swapped key, another id) no longer verifies. It does not prove *which* box
wrote it: that is the workshop's job (the technician carries the request
from the unit they just flashed), as with any first-contact enrolment.

**The bundle** (``edgewatch.bundle/1``), written by the back office: the
client certificate, the fleet CA, the broker's address, the issuer keys the
unit must obey and the control room's crop key. It carries only public
material; the unit checks that the certificate is for its own TLS key and
id, chains to the bundled CA, and that the key ids the back office
registered are its own, so a bundle made for another unit is refused.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgewatch import __version__
from edgewatch.errors import ConfigError
from edgewatch.events.payloads import timestamp
from edgewatch.security.jws import Signer, VerificationError, verify
from edgewatch.security.keys import (
    b64url_decode,
    key_id,
    public_pem,
    recipient_key_from_pem,
    verify_key_from_pem,
)
from edgewatch.transport.topics import IdentityField, PrefixField
from edgewatch.validation import describe

REQUEST: Final = "edgewatch.provisioning-request/1"
BUNDLE: Final = "edgewatch.bundle/1"


class Request(BaseModel):
    """The signed payload of a provisioning request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_: Literal["edgewatch.provisioning-request/1"] = Field(alias="schema")
    device_id: IdentityField
    signing_key: str = Field(description="Ed25519 event-signing public key, PEM.")
    watchlist_key: str = Field(description="X25519 watch-list public key, PEM.")
    csr: str = Field(description="PKCS#10 request for the MQTT client certificate, PEM.")
    created_at: str
    software_version: str


class Broker(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1)
    port: int = Field(default=8883, ge=1, le=65535)
    prefix: PrefixField = "edgewatch"


class Bundle(BaseModel):
    """What the unit installs: public material only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_: Literal["edgewatch.bundle/1"] = Field(alias="schema")
    device_id: IdentityField
    fleet: str = Field(min_length=1, max_length=64)
    broker: Broker
    ca_cert: str
    client_cert: str
    issuer_keys: list[str] = Field(min_length=1)
    crop_key: str | None = None
    signing_kid: str
    watchlist_kid: str
    issued_at: str

    def to_json(self) -> bytes:
        return (json.dumps(self.model_dump(by_alias=True), indent=1) + "\n").encode()


def signing_key_of(request: Request) -> Ed25519PublicKey:
    return verify_key_from_pem(request.signing_key.encode(), "request signing_key")


def watchlist_key_of(request: Request) -> X25519PublicKey:
    return recipient_key_from_pem(request.watchlist_key.encode(), "request watchlist_key")


def issuer_key_of(pem: str) -> Ed25519PublicKey:
    return verify_key_from_pem(pem.encode(), "bundle issuer key")


def make_request(
    device_id: str,
    signing_key: Ed25519PrivateKey,
    watchlist_key: X25519PublicKey,
    csr: x509.CertificateSigningRequest,
) -> bytes:
    """The unit's side: the request, signed with its new signing key."""
    payload = Request.model_validate(
        {
            "schema": REQUEST,
            "device_id": device_id,
            "signing_key": public_pem(signing_key.public_key()).decode(),
            "watchlist_key": public_pem(watchlist_key).decode(),
            "csr": csr.public_bytes(Encoding.PEM).decode(),
            "created_at": timestamp(datetime.now(UTC)),
            "software_version": __version__,
        }
    )
    body = json.dumps(payload.model_dump(by_alias=True), sort_keys=True).encode()
    return Signer(signing_key).sign(body, REQUEST)


def read_request(data: bytes, origin: str) -> tuple[Request, x509.CertificateSigningRequest]:
    """The back office's side: a request whose signatures and contents all check out."""
    try:
        envelope = json.loads(data)
        inner = json.loads(_payload_of(envelope))
        request = Request.model_validate(inner)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: not a provisioning request: {describe(exc)}") from None
    except (ValueError, TypeError, KeyError):
        raise ConfigError(
            f"{origin}: not a provisioning request (expected a signed JSON file)"
        ) from None
    signing = signing_key_of(request)
    watchlist_key_of(request)
    try:
        verify(data, lambda kid: signing if kid == key_id(signing) else None, REQUEST)
    except VerificationError as exc:
        raise ConfigError(
            f"{origin}: the request is not signed by the signing key it carries ({exc}): "
            "it was altered, or not written by an edgewatch unit"
        ) from None
    try:
        csr = x509.load_pem_x509_csr(request.csr.encode())
    except ValueError:
        raise ConfigError(f"{origin}: csr is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise ConfigError(f"{origin}: the certificate signing request's signature is invalid")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or names[0].value != request.device_id:
        raise ConfigError(
            f"{origin}: the certificate request's common name must be the device id "
            f"{request.device_id!r}"
        )
    return request, csr


def _payload_of(envelope: object) -> bytes:
    """The JWS payload before verification (to learn which key to verify with)."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("payload"), str):
        raise ValueError("not a JWS")
    return b64url_decode(envelope["payload"], "payload")


def parse_bundle(data: bytes, origin: str) -> Bundle:
    try:
        return Bundle.model_validate(json.loads(data))
    except ValidationError as exc:
        raise ConfigError(f"{origin}: not a provisioning bundle: {describe(exc)}") from None
    except ValueError:
        raise ConfigError(f"{origin}: not a provisioning bundle (expected JSON)") from None
