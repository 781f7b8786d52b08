"""The published event format (docs/events.md, docs/schemas/, docs/asyncapi.yaml)
against real events: built by ``edgewatch.events.payloads``, stamped, signed by
``edgewatch.security.jws``, then checked with jsonschema and with a third-party
JOSE library (PyJWT), so the documents cannot drift from the code.
"""

from __future__ import annotations

import hashlib
import json
import re
import typing
from collections.abc import Iterator
from dataclasses import asdict, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from jsonschema import Draft202012Validator

from edgewatch.events.payloads import (
    ACCEPTED_OF_KIND,
    ALERT,
    AUDIT,
    AUDIT_ACTIONS,
    CROP_SUITE,
    SCHEMAS,
    STATUS,
    alert_body,
    audit_body,
    crop_info,
    encode,
    new_event_id,
    open_crop,
    seal_crop,
    stamp,
    status_body,
    timestamp,
)
from edgewatch.pipeline import Counters, TrackSummary
from edgewatch.security.jws import Signer, VerificationError, verify
from edgewatch.security.keys import b64url, b64url_decode
from edgewatch.transport.topics import EVENT_KINDS, event_topic
from edgewatch.watchlist.active import ActiveWatchlist, State
from edgewatch.watchlist.device import RefusalReason, WatchlistRefusedError

DOCS = Path(__file__).resolve().parents[1] / "docs"
SCHEMA_DIR = DOCS / "schemas"
SCHEMA_FILE = {ALERT: "alert.v1.json", STATUS: "status.v2.json", AUDIT: "audit.v2.json"}
KIND = {ALERT: "alert", STATUS: "status", AUDIT: "audit"}
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8 + b"\xff\xd9"
WATCHLIST_MODEL = "dlib-resnet-v1"
TRACK = TrackSummary(
    track_id=1795000000000017,
    first_seen=1795000000.25,
    frames=9,
    matching_frames=3,
    best_score=0.7123,
)


# ------------------------------------------------------------------ helpers


def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return schema


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def payload_validator(typ: str) -> Draft202012Validator:
    return validator(load_schema(SCHEMA_FILE[typ]))


def envelope_validators() -> tuple[Draft202012Validator, Draft202012Validator]:
    envelope = load_schema("envelope.v1.json")
    return validator(envelope), validator(envelope["$defs"]["protected_header"])


def errors(check: Draft202012Validator, instance: Any) -> list[str]:
    return [error.message for error in check.iter_errors(instance)]


def decode(message: bytes) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    """The envelope, its protected header and its payload, all decoded."""
    envelope = json.loads(message)
    header = json.loads(b64url_decode(envelope["protected"], "protected"))
    payload = json.loads(b64url_decode(envelope["payload"], "payload"))
    return envelope, header, payload


def compact(message: bytes) -> str:
    """The JWS compact serialisation of our flattened JSON one (RFC 7515 §7.1)."""
    envelope = json.loads(message)
    return f"{envelope['protected']}.{envelope['payload']}.{envelope['signature']}"


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object inside a schema (subschemas included)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def fake_watchlist(expires: datetime) -> SimpleNamespace:
    """What :class:`ActiveWatchlist` reads of a loaded watch-list (no real file needed)."""
    header = SimpleNamespace(
        watchlist_id="wl-city-centre",
        version=3,
        entry_count=120,
        deployment=SimpleNamespace(id="dep-2026-11", expires=expires),
    )
    return SimpleNamespace(
        header=header,
        expires=expires,
        gallery=SimpleNamespace(wipe=lambda: None),
        describe=lambda: "watch-list wl-city-centre v3 for deployment dep-2026-11",
    )


def watchlist_status(state: str) -> dict[str, Any]:
    """A real ``ActiveWatchlist.status()`` in the given state."""
    active = ActiveWatchlist(WATCHLIST_MODEL)
    expires = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    if state == "none":
        return active.status()
    if state == "refused":
        active.refuse(WatchlistRefusedError("rollback", "older than the accepted version"))
        return active.status()
    active.accept(fake_watchlist(expires))  # type: ignore[arg-type]
    if state == "expired":
        assert active.check_expiry(expires + timedelta(seconds=1)) is not None
    elif state == "ended":
        assert active.end() is not None
    elif state == "active_microseconds":
        active.accept(fake_watchlist(expires.replace(microsecond=250_000)))  # type: ignore[arg-type]
    return active.status()


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def device_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def signer(device_key: Ed25519PrivateKey) -> Signer:
    return Signer(device_key)


@pytest.fixture(scope="module")
def crop_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def counters() -> dict[str, int]:
    return asdict(
        Counters(frames=1800, faces_seen=240, faces_discarded=239, faces_rejected=31, matches=1)
    )


def make_alert(
    crop_key: X25519PrivateKey | None, *, adhoc: bool = False, **changes: Any
) -> dict[str, Any]:
    event_id = new_event_id()
    watchlist = {} if adhoc else watchlist_status("active")
    arguments: dict[str, Any] = {
        "device_id": "cam-0001",
        "sequence": 42,
        "event_id": event_id,
        "captured_at": datetime.now(UTC).timestamp() - 2.5,
        "watchlist": watchlist,
        "subject_ref": "Jane Doe" if adhoc else "case-2026-0815",
        "category": "unspecified" if adhoc else "missing-person",
        "score": 0.712345,
        "threshold": 0.6,
        "margin": 0.05,
        "model_id": WATCHLIST_MODEL,
        "track": None if adhoc else TRACK,
        "box": (412, 188, 471, 262),
        "crop": None if crop_key is None else seal_crop(JPEG, event_id, crop_key.public_key()),
    }
    arguments.update(changes)
    return alert_body(**arguments)


def make_status(state: str = "online", watchlist: str = "active") -> dict[str, Any]:
    status = watchlist_status(watchlist)
    if status["state"] == "active":  # as the emitter adds them: the deployment's totals
        status["counters"] = counters()
    return status_body(
        device_id="cam-0001",
        state=state,
        software_version="0.1.0",
        started_at=timestamp(),
        watchlist=status,
        counters=counters(),
        fps=14.8712,
        outbox={"depth": 3, "alerts_refused": 0},
    )


def make_audit(
    action: str = "started", deployment_id: str | None = "dep-2026-11"
) -> dict[str, Any]:
    return audit_body(
        device_id="cam-0001",
        sequence=43,
        deployment_id=deployment_id,
        action=action,
        detail="edgewatch 0.1.0 started",
        counters=counters(),
        deployment_counters=None if deployment_id is None else counters(),
    )


def send(body: dict[str, Any], signer: Signer) -> bytes:
    """What the publisher does to a queued body: stamp ``sent_at``, then sign."""
    return signer.sign(stamp(encode(body)), str(body["schema"]))


def check_event(message: bytes, typ: str) -> dict[str, Any]:
    """Envelope, header and payload all valid against the published schemas."""
    envelope_check, header_check = envelope_validators()
    envelope, header, payload = decode(message)
    assert errors(envelope_check, envelope) == []
    assert errors(header_check, header) == []
    assert header["typ"] == typ
    assert errors(payload_validator(typ), payload) == []
    return payload


# ------------------------------------------------------------------ the schemas themselves


@pytest.mark.parametrize("name", [*SCHEMA_FILE.values(), "envelope.v1.json"])
def test_schema_is_valid_draft_2020_12_and_strict(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    objects = [node for node in walk(schema) if node.get("type") == "object"]
    assert objects
    for node in objects:
        assert node.get("additionalProperties") is False, node.get("title", node)


def test_schema_ids_match_the_constants() -> None:
    for typ, name in SCHEMA_FILE.items():
        schema = load_schema(name)
        assert schema["properties"]["schema"] == {
            "description": schema["properties"]["schema"]["description"],
            "const": typ,
        }
        assert schema["title"] == typ
        assert "schema" in schema["required"]
    header = load_schema("envelope.v1.json")["$defs"]["protected_header"]
    accepted = sorted({typ for kind in ACCEPTED_OF_KIND.values() for typ in kind})
    assert sorted(header["properties"]["typ"]["enum"]) == accepted
    assert set(SCHEMAS) <= set(accepted)
    old_status = load_schema("status.v1.json")["properties"]["schema"]["const"]
    assert old_status in ACCEPTED_OF_KIND["status"]
    old_audit = load_schema("audit.v1.json")["properties"]["schema"]["const"]
    assert old_audit in ACCEPTED_OF_KIND["audit"]
    assert header["properties"]["alg"]["const"] == "EdDSA"


def test_schema_enums_follow_the_code() -> None:
    alert, status, audit = (load_schema(SCHEMA_FILE[t]) for t in (ALERT, STATUS, AUDIT))
    assert alert["properties"]["crop"]["properties"]["suite"]["const"] == CROP_SUITE
    assert audit["properties"]["action"]["enum"] == list(AUDIT_ACTIONS)
    watchlist = status["properties"]["watchlist"]
    assert watchlist["properties"]["state"]["enum"] == list(typing.get_args(State))
    refused = next(
        rule["then"]["properties"]["reason"]["enum"]
        for rule in watchlist["allOf"]
        if rule["if"]["properties"]["state"].get("const") == "refused"
    )
    assert refused == list(typing.get_args(RefusalReason))
    counter_fields = [f.name for f in fields(Counters)]
    for schema in (status, audit):
        assert schema["properties"]["counters"]["required"] == counter_fields
        assert list(schema["properties"]["counters"]["properties"]) == counter_fields


# ------------------------------------------------------------------ real events are valid


def test_alert_with_sealed_crop(signer: Signer, crop_key: X25519PrivateKey) -> None:
    body = make_alert(crop_key)
    payload = check_event(send(body, signer), ALERT)
    assert payload["crop"]["suite"] == CROP_SUITE
    assert open_crop(payload["crop"], payload["event_id"], crop_key) == JPEG
    assert crop_info(payload["event_id"]) == f"edgewatch crop v1|{payload['event_id']}".encode()
    assert payload["watchlist"] == {"id": "wl-city-centre", "version": 3}
    assert payload["deployment_id"] == "dep-2026-11"


def test_adhoc_alert_without_crop(signer: Signer) -> None:
    payload = check_event(send(make_alert(None, adhoc=True), signer), ALERT)
    assert "crop" not in payload
    assert payload["watchlist"] == {"id": None, "version": None}
    assert payload["deployment_id"] is None and payload["track_id"] is None


@pytest.mark.parametrize("state", ["online", "offline", "stopped"])
def test_status_states(signer: Signer, state: str) -> None:
    payload = check_event(send(make_status(state), signer), STATUS)
    assert payload["state"] == state


@pytest.mark.parametrize(
    "watchlist", ["none", "active", "active_microseconds", "refused", "expired", "ended"]
)
def test_status_watchlist_states(signer: Signer, watchlist: str) -> None:
    payload = check_event(send(make_status(watchlist=watchlist), signer), STATUS)
    assert payload["watchlist"]["state"] == watchlist.split("_")[0]


@pytest.mark.parametrize("action", AUDIT_ACTIONS)
def test_audit_actions(signer: Signer, action: str) -> None:
    check_event(send(make_audit(action), signer), AUDIT)
    check_event(send(make_audit(action, deployment_id=None), signer), AUDIT)


def test_deployment_counters_are_totals_only_and_only_while_active() -> None:
    audit = make_audit()
    audit["deployment_counters"]["last_face_box"] = 1
    assert errors(payload_validator(AUDIT), audit) != []
    status = make_status(watchlist="ended")
    status["watchlist"]["counters"] = counters()
    assert errors(payload_validator(STATUS), status) != []


# ------------------------------------------------------------------ interoperability


def all_events(signer: Signer, crop_key: X25519PrivateKey) -> list[bytes]:
    return [
        send(make_alert(crop_key), signer),
        send(make_alert(None, adhoc=True), signer),
        send(make_status(), signer),
        send(make_audit(), signer),
    ]


def test_pyjwt_verifies_our_signatures(
    signer: Signer, device_key: Ed25519PrivateKey, crop_key: X25519PrivateKey
) -> None:
    public = device_key.public_key()
    for message in all_events(signer, crop_key):
        envelope, header, payload = decode(message)
        decoded = jwt.PyJWS().decode_complete(compact(message), key=public, algorithms=["EdDSA"])
        assert decoded["header"] == header
        assert decoded["payload"] == b64url_decode(envelope["payload"], "payload")
        assert json.loads(decoded["payload"]) == payload
        assert header["typ"] == payload["schema"]


def test_kid_is_the_rfc7638_thumbprint_pyjwt_computes(
    signer: Signer, device_key: Ed25519PrivateKey
) -> None:
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(device_key.public_key()))
    members = {name: jwk[name] for name in ("crv", "kty", "x")}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    assert signer.kid == b64url(hashlib.sha256(canonical).digest())


def test_verifier_example_in_the_spec_runs(
    signer: Signer, device_key: Ed25519PrivateKey, crop_key: X25519PrivateKey
) -> None:
    """The PyJWT snippet of docs/events.md, executed as written."""
    text = (DOCS / "events.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "verify_event" in b)
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/events.md", "exec"), namespace)
    signing_key = b64url(device_key.public_key().public_bytes_raw())
    key = namespace["registry_key"](signing_key)
    message = send(make_alert(crop_key), signer)
    assert namespace["verify_event"](message, key, ALERT) == decode(message)[2]
    with pytest.raises(ValueError, match="wrong event type"):
        namespace["verify_event"](message, key, STATUS)


def test_edgewatch_verify_accepts_what_the_schemas_accept(
    signer: Signer, device_key: Ed25519PrivateKey, crop_key: X25519PrivateKey
) -> None:
    public = {signer.kid: device_key.public_key()}
    for message in all_events(signer, crop_key):
        _, header, payload = decode(message)
        verified = verify(message, public.get, header["typ"])
        assert json.loads(verified.payload) == payload
        assert verified.kid == header["kid"] == signer.kid


# ------------------------------------------------------------------ altered events fail


def test_tampered_payload_fails_the_signature(
    signer: Signer, device_key: Ed25519PrivateKey, crop_key: X25519PrivateKey
) -> None:
    """Changed after signing: still schema-valid, so only the signature can catch it."""
    message = send(make_alert(crop_key), signer)
    envelope, _, payload = decode(message)
    payload["score"] = 0.99
    envelope["payload"] = b64url(encode(payload))
    forged = json.dumps(envelope).encode()
    assert errors(payload_validator(ALERT), payload) == []
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.PyJWS().decode(compact(forged), key=device_key.public_key(), algorithms=["EdDSA"])
    with pytest.raises(VerificationError) as caught:
        verify(forged, {signer.kid: device_key.public_key()}.get, ALERT)
    assert caught.value.reason == "bad_signature"


def test_status_signature_does_not_pass_as_an_alert(
    signer: Signer, device_key: Ed25519PrivateKey
) -> None:
    message = send(make_status(), signer)
    with pytest.raises(VerificationError) as caught:
        verify(message, {signer.kid: device_key.public_key()}.get, ALERT)
    assert caught.value.reason == "wrong_type"


def test_embedding_is_rejected_by_the_schema_even_when_signed(
    signer: Signer, device_key: Ed25519PrivateKey, crop_key: X25519PrivateKey
) -> None:
    """A (buggy or hostile) unit that signs an extra field still fails the schema."""
    body = make_alert(crop_key)
    body["embedding"] = [0.0123, -0.0456] * 64
    message = send(body, signer)
    _, _, payload = decode(message)
    jwt.PyJWS().decode(compact(message), key=device_key.public_key(), algorithms=["EdDSA"])
    found = errors(payload_validator(ALERT), payload)
    assert any("embedding" in message for message in found)


def mutations() -> list[tuple[str, str, Any]]:
    """(schema, JSON path, new value or DELETE) that must each make a payload invalid."""
    return [
        (ALERT, "embedding", [0.1, 0.2]),
        (ALERT, "subject.photo", "aGVsbG8"),
        (ALERT, "crop.embedding", [0.1]),
        (ALERT, "crop.media_type", "image/png"),
        (ALERT, "crop.kid", "short"),
        (ALERT, "crop.suite", "HPKE-base(whatever)"),
        (ALERT, "watchlist.entries", 3),
        (ALERT, "sent_at", "DELETE"),
        (ALERT, "sent_at", "2026-11-22T16:30:00Z"),
        (ALERT, "captured_at", "2026-11-22 16:30:00.123+00:00"),
        (ALERT, "event_id", "not-a-uuid"),
        (ALERT, "device_id", "cam/0001"),
        (ALERT, "schema", "edgewatch.alert/2"),
        (ALERT, "sequence", 0),
        (ALERT, "score", 1.5),
        (ALERT, "box", [1, 2, 3]),
        (ALERT, "box", [1.5, 2, 3, 4]),
        (ALERT, "track_id", "17"),
        (ALERT, "subject.category", "suspect"),
        (STATUS, "state", "sleeping"),
        (STATUS, "counters.last_face_box", 3),
        (STATUS, "counters.matches", "DELETE"),
        (STATUS, "outbox.depth", -1),
        (STATUS, "watchlist.subjects", ["case-2026-0815"]),
        (STATUS, "watchlist.state", "paused"),
        (STATUS, "watchlist.reason", "why not"),
        (STATUS, "watchlist.entries", "DELETE"),
        (STATUS, "sequence", 1),
        (AUDIT, "action", "rebooted"),
        (AUDIT, "counters.face_scores", 1),
        (AUDIT, "sequence", "DELETE"),
        (AUDIT, "occurred_at", "yesterday"),
    ]


@pytest.mark.parametrize(("typ", "path", "value"), mutations())
def test_altered_payload_fails_the_schema(
    signer: Signer, crop_key: X25519PrivateKey, typ: str, path: str, value: Any
) -> None:
    body = {ALERT: lambda: make_alert(crop_key), STATUS: make_status, AUDIT: make_audit}[typ]()
    payload = json.loads(stamp(encode(body)))
    assert errors(payload_validator(typ), payload) == []
    *parents, leaf = path.split(".")
    target = payload
    for name in parents:
        target = target[name]
    if value == "DELETE":
        del target[leaf]
    else:
        target[leaf] = value
    assert errors(payload_validator(typ), payload) != []


def test_unstamped_body_is_not_a_valid_payload() -> None:
    assert errors(payload_validator(AUDIT), make_audit()) != []


@pytest.mark.parametrize(
    "change",
    [
        {"header": {"alg": "EdDSA"}},
        {"payload": "eyJ+"},
        {"signature": "AAAA"},
        {"protected": None},
    ],
)
def test_envelope_schema_rejects_other_shapes(
    signer: Signer, crop_key: X25519PrivateKey, change: dict[str, Any]
) -> None:
    envelope_check, _ = envelope_validators()
    envelope = json.loads(send(make_alert(crop_key), signer))
    envelope.update(change)
    envelope = {k: v for k, v in envelope.items() if v is not None}
    assert errors(envelope_check, envelope) != []


@pytest.mark.parametrize(
    "change",
    [
        {"alg": "none"},
        {"alg": "HS256"},
        {"typ": "JWT"},
        {"kid": "cam-0001"},
        {"jku": "https://attacker.example/keys"},
        {"crit": ["b64"]},
    ],
)
def test_protected_header_schema_rejects_other_headers(
    signer: Signer, change: dict[str, Any]
) -> None:
    _, header_check = envelope_validators()
    _, header, _ = decode(send(make_status(), signer))
    assert errors(header_check, header) == []
    assert errors(header_check, {**header, **change}) != []


# ------------------------------------------------------------------ AsyncAPI


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DOCS / "asyncapi.yaml").read_text("utf-8"))
    return document


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def pointer(document: Any, fragment: str) -> Any:
    """Resolve a JSON pointer (RFC 6901) such as ``/components/schemas/x``."""
    node = document
    if not fragment:
        return node
    for raw in fragment.removeprefix("/").split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def test_asyncapi_version_and_server(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["defaultContentType"] == "application/json"
    (server,) = asyncapi["servers"].values()
    assert server["protocol"] == "mqtts"
    assert server["host"].endswith(":8883")
    (scheme,) = (pointer(asyncapi, ref.removeprefix("#")) for ref in refs(server["security"]))
    assert scheme["type"] == "X509"


def test_asyncapi_refs_resolve(asyncapi: dict[str, Any]) -> None:
    files = set()
    for ref in refs(asyncapi):
        target, _, fragment = ref.partition("#")
        if not target:
            pointer(asyncapi, fragment)
            continue
        assert not re.match(r"^[a-z]+:", target), f"{ref}: only relative file references"
        path = (DOCS / target).resolve()
        assert path.is_relative_to(DOCS.resolve()) and path.is_file(), ref
        files.add(path.name)
        document = json.loads(path.read_text("utf-8"))
        if fragment:
            pointer(document, fragment)
        for inner in refs(document):
            assert inner.startswith("#"), f"{path.name}: {inner}"
            pointer(document, inner.removeprefix("#"))
    assert files == {*SCHEMA_FILE.values(), "envelope.v1.json"}


def test_asyncapi_channels_follow_the_topic_layout(asyncapi: dict[str, Any]) -> None:
    assert set(asyncapi["channels"]) == set(EVENT_KINDS)
    for kind in EVENT_KINDS:
        channel = asyncapi["channels"][kind]
        assert channel["address"] == event_topic("{prefix}", "{deviceId}", kind)
        placeholders = set(re.findall(r"{(\w+)}", channel["address"]))
        assert set(channel["parameters"]) == placeholders
        for parameter in channel["parameters"].values():
            pointer(asyncapi, parameter["$ref"].removeprefix("#"))
    assert asyncapi["components"]["parameters"]["prefix"]["default"] == "edgewatch"


def test_asyncapi_operations_and_messages(asyncapi: dict[str, Any]) -> None:
    operations = list(asyncapi["operations"].values())
    assert len(operations) == len(EVENT_KINDS)
    for typ in SCHEMAS:
        kind = KIND[typ]
        (operation,) = (o for o in operations if o["channel"]["$ref"] == f"#/channels/{kind}")
        assert operation["action"] == "receive"
        binding = operation["bindings"]["mqtt"]
        assert binding["qos"] == 1
        assert binding["retain"] is (kind == "status")
        (message_ref,) = operation["messages"]
        message = pointer(asyncapi, message_ref["$ref"].removeprefix("#"))
        if "$ref" in message:
            message = pointer(asyncapi, message["$ref"].removeprefix("#"))
        assert message["contentType"] == "application/json"
        assert typ in message["title"]
        payload = message["payload"]
        if "$ref" in payload:
            payload = pointer(asyncapi, payload["$ref"].removeprefix("#"))
        envelope_ref, signed = payload["allOf"]
        assert envelope_ref == {"$ref": "./schemas/envelope.v1.json"}
        inner = signed["properties"]["payload"]
        assert inner["contentEncoding"] == "base64url"
        assert inner["contentMediaType"] == "application/json"
        assert inner["contentSchema"] == {"$ref": f"./schemas/{SCHEMA_FILE[typ]}"}
    status = asyncapi["channels"]["status"]["description"].lower()
    assert "last will" in status and "offline" in status


def test_no_extension_fields(asyncapi: dict[str, Any]) -> None:
    def keys(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield key
                yield from keys(value)
        elif isinstance(node, list):
            for value in node:
                yield from keys(value)

    assert not [k for k in keys(asyncapi) if str(k).startswith("x-")]


def test_spec_names_what_the_code_uses() -> None:
    text = (DOCS / "events.md").read_text(encoding="utf-8")
    assert "Event format 1" in text
    for needle in [*SCHEMAS, *AUDIT_ACTIONS, CROP_SUITE, "edgewatch crop v1|<event_id>"]:
        assert needle in text, needle
    for name in [*SCHEMA_FILE.values(), "envelope.v1.json"]:
        assert f"schemas/{name}" in text
