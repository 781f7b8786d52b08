"""Watch-lists: sealing and loading, every refusal with its own reason, issuing from photos."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edgewatch.accuracy.budget import issuing_threshold
from edgewatch.appliance import VisionParts, embedder_model_ref, load_vision
from edgewatch.config import parse_vision_config
from edgewatch.security.keys import key_id
from edgewatch.vision.models import ModelManifest
from edgewatch.watchlist.active import ActiveWatchlist
from edgewatch.watchlist.device import (
    AcceptedVersions,
    DeviceTrust,
    WatchlistRefusedError,
    load_watchlist,
)
from edgewatch.watchlist.format import (
    Deployment,
    Entry,
    HeaderFields,
    ModelRef,
    Policy,
    parse,
    seal,
)
from edgewatch.watchlist.issue import EntryRow, issue_templates, read_entries

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
MODEL = ModelRef(id="dlib-resnet-v1", sha256="ab" * 32)
MANIFEST = ModelManifest.default()
ISSUER = Ed25519PrivateKey.generate()
DEVICE = X25519PrivateKey.generate()
OTHER_DEVICE = X25519PrivateKey.generate()


def deployment(**changes: object) -> Deployment:
    values: dict[str, object] = {
        "id": "op-1",
        "purpose": "test",
        "location": "bench",
        "authorised_by": "Insp. Test",
        "not_before": NOW - timedelta(days=1),
        "expires": NOW + timedelta(days=1),
        "max_entries": 20_000,
    }
    values.update(changes)
    return Deployment.model_validate(values)


def synthetic(count: int, dim: int = 128, seed: int = 0) -> tuple[list[Entry], np.ndarray]:
    rng = np.random.default_rng(seed)
    templates = rng.standard_normal((count, dim)).astype(np.float32)
    entries = [Entry(ref=f"case-{i:05d}", category="wanted", templates=1) for i in range(count)]
    return entries, templates


def within_budget(templates: int) -> Policy:
    """The policy an issuer would give a list of this size for the shipped dlib model."""
    threshold = issuing_threshold(MANIFEST, "dlib-resnet-v1", templates, 0.926, 1e-3)
    return Policy(threshold=threshold, margin=0.01)


def sealed(
    count: int = 3,
    version: int = 1,
    recipients: tuple[X25519PrivateKey, ...] = (DEVICE,),
    model: ModelRef = MODEL,
    issuer: Ed25519PrivateKey = ISSUER,
    policy: Policy | None = None,
    **deployment_changes: object,
) -> bytes:
    entries, templates = synthetic(count)
    fields = HeaderFields(
        watchlist_id="list-1",
        version=version,
        deployment=deployment(**deployment_changes),
        model=model,
        policy=policy or within_budget(count),
    )
    return seal(fields, entries, templates, [r.public_key() for r in recipients], issuer)


def trust(
    device: X25519PrivateKey = DEVICE, state: Path | None = None, model: ModelRef = MODEL
) -> DeviceTrust:
    return DeviceTrust(
        issuers={key_id(ISSUER.public_key()): ISSUER.public_key()},
        device_key=device,
        model=model,
        accepted=AcceptedVersions(state),
        manifest=MANIFEST,
    )


def refusal(data: bytes, device_trust: DeviceTrust | None = None, now: datetime = NOW) -> str:
    with pytest.raises(WatchlistRefusedError) as refused:
        load_watchlist(data, device_trust or trust(), now)
    return refused.value.reason


def test_round_trip_restores_entries_and_templates() -> None:
    entries, templates = synthetic(5)
    loaded = load_watchlist(sealed(5), trust(), NOW)
    assert [s.reference for s in loaded.gallery.subjects] == [e.ref for e in entries]
    unit = templates / np.linalg.norm(templates, axis=1, keepdims=True)
    scores = loaded.gallery.subject_scores(unit)
    assert np.allclose(np.diag(scores), 1.0, atol=1e-5)
    assert loaded.header.entry_count == 5
    assert loaded.header.policy == within_budget(5)


def test_every_flipped_byte_is_refused() -> None:
    data = sealed(2)
    reasons = set()
    for position in range(len(data)):
        altered = bytearray(data)
        altered[position] ^= 0x01
        reasons.add(refusal(bytes(altered)))
    assert reasons <= {"malformed", "bad_signature", "unknown_issuer"}
    assert "bad_signature" in reasons


def test_truncated_or_extended_file_is_malformed() -> None:
    data = sealed()
    assert refusal(data[:-1]) == "malformed"
    assert refusal(data + b"\x00") == "malformed"
    assert refusal(b"") == "malformed"
    assert refusal(b"not a watch-list at all") == "malformed"


def test_wrong_device_is_not_a_recipient() -> None:
    assert refusal(sealed(), trust(device=OTHER_DEVICE)) == "not_recipient"


def test_several_recipients_each_open_it() -> None:
    data = sealed(recipients=(DEVICE, OTHER_DEVICE))
    for device in (DEVICE, OTHER_DEVICE):
        assert len(load_watchlist(data, trust(device=device), NOW).gallery) == 3


def test_swapped_recipient_entry_does_not_decrypt() -> None:
    """Re-labelling another unit's sealed key as ours breaks the issuer's signature."""
    data = sealed(recipients=(DEVICE, OTHER_DEVICE))
    header = parse(data).header
    mine, theirs = header.recipients[0].kid, header.recipients[1].kid
    swapped = data.replace(mine.encode(), b"X" * 43).replace(theirs.encode(), mine.encode())
    swapped = swapped.replace(b"X" * 43, theirs.encode())
    assert refusal(swapped) == "bad_signature"


def test_validity_window() -> None:
    data = sealed()
    assert refusal(data, now=NOW + timedelta(days=1)) == "expired"
    assert refusal(data, now=NOW - timedelta(days=1, seconds=1)) == "not_yet_valid"


def test_model_mismatch_by_id_or_hash() -> None:
    assert refusal(sealed(), trust(model=MODEL.model_copy(update={"id": "other"}))) == (
        "model_mismatch"
    )
    assert refusal(sealed(), trust(model=MODEL.model_copy(update={"sha256": "cd" * 32}))) == (
        "model_mismatch"
    )


def test_unknown_issuer() -> None:
    assert refusal(sealed(issuer=Ed25519PrivateKey.generate())) == "unknown_issuer"


def test_rollback_refused_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "versions.json"
    load_watchlist(sealed(version=2), trust(state=state), NOW)
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    load_watchlist(sealed(version=2), trust(state=state), NOW)  # the same version reloads
    assert refusal(sealed(version=1), trust(state=state)) == "rollback"
    load_watchlist(sealed(version=3), trust(state=state), NOW)
    assert refusal(sealed(version=2), trust(state=state)) == "rollback"
    # another deployment has its own versions
    load_watchlist(sealed(version=1, id="op-2"), trust(state=state), NOW)


def test_refusals_have_distinct_reasons() -> None:
    good = sealed()
    cases = {
        "bad_signature": good[:-1] + bytes([good[-1] ^ 1]),
        "not_recipient": sealed(recipients=(OTHER_DEVICE,)),
        "model_mismatch": sealed(model=ModelRef(id="x", sha256="00" * 32)),
        "unknown_issuer": sealed(issuer=Ed25519PrivateKey.generate()),
        "expired": sealed(not_before=NOW - timedelta(days=3), expires=NOW - timedelta(days=2)),
        "not_yet_valid": sealed(
            not_before=NOW + timedelta(days=2), expires=NOW + timedelta(days=3)
        ),
    }
    assert {reason: refusal(data) for reason, data in cases.items()} == {r: r for r in cases}


def test_expiry_and_end_of_deployment_wipe_the_templates() -> None:
    loaded = load_watchlist(sealed(), trust(), NOW)
    matrix = loaded.gallery._matrix
    active = ActiveWatchlist("dlib-resnet-v1")
    active.accept(loaded)
    assert active.status()["state"] == "active" and len(active.gallery) == 3
    assert active.check_expiry(NOW) is None
    change = active.check_expiry(NOW + timedelta(days=1))
    assert change is not None and change.state == "expired"
    assert not matrix.any(), "templates must be overwritten, not just dropped"
    assert len(active.gallery) == 0
    assert active.status()["state"] == "expired" and "watchlist_id" not in active.status()

    again = ActiveWatchlist("dlib-resnet-v1")
    again.accept(load_watchlist(sealed(), trust(), NOW))
    ended = again.end()
    assert ended is not None and ended.state == "ended" and len(again.gallery) == 0


def test_header_names_nobody() -> None:
    data = sealed(3)
    header_bytes = parse(data).header_prefix
    assert b"case-0" not in data, "entry references must only exist encrypted"
    assert b"case-0" not in header_bytes


def test_ten_thousand_entries_load(tmp_path: Path) -> None:
    data = sealed(10_000)
    assert len(data) > 10_000 * 128 * 4
    loaded = load_watchlist(data, trust(), NOW)
    assert len(loaded.gallery) == 10_000 and loaded.gallery.template_count == 10_000


@pytest.fixture(scope="module")
def vision() -> VisionParts:
    return load_vision(parse_vision_config({}, "test"))


def row(path: Path, ref: str = "person", line: int = 2, category: str = "wanted") -> EntryRow:
    return EntryRow(line, ref, category, path, "test", "tester")


def test_issuing_refuses_unusable_photos_with_reasons(
    vision: VisionParts, faces_dir: Path, tmp_path: Path
) -> None:
    import cv2

    examples = faces_dir / "examples"
    blurred = tmp_path / "blurred.png"
    cv2.imwrite(str(blurred), cv2.GaussianBlur(cv2.imread(str(examples / "obama.jpg")), (0, 0), 5))
    rows = [
        row(examples / "obama.jpg", "obama", 2),
        row(examples / "two_people.jpg", "two", 3),
        row(examples / "obama-240p.jpg", "small", 4),
        row(blurred, "blurred", 5),
        row(tmp_path / "missing.jpg", "missing", 6),
        row(examples / "obama2.jpg", "obama", 7, category="missing-person"),
    ]
    issued = issue_templates(rows, vision.encoder)
    problems = {o.row.subject_ref + str(o.row.line): o.problem for o in issued.outcomes}
    assert problems["obama2"] is None
    assert "2 faces found" in str(problems["two3"])
    assert "too small" in str(problems["small4"])
    assert "blurred" in str(problems["blurred5"])
    assert "not found" in str(problems["missing6"]) or "missing.jpg" in str(problems["missing6"])
    assert "contradicts" in str(problems["obama7"])
    assert [e.ref for e in issued.entries] == ["obama"]
    assert issued.templates.shape == (1, 128)


def test_issued_templates_match_the_device(vision: VisionParts, faces_dir: Path) -> None:
    examples = faces_dir / "examples"
    issued = issue_templates(
        [row(examples / "obama.jpg", "obama"), row(examples / "biden.jpg", "biden", 3)],
        vision.encoder,
    )
    fields = HeaderFields("real", 1, deployment(), embedder_model_ref(vision), within_budget(4))
    data = seal(fields, issued.entries, issued.templates, [DEVICE.public_key()], ISSUER)
    loaded = load_watchlist(data, trust(model=embedder_model_ref(vision)), NOW)
    probe = vision.encoder.encode(
        __import__("edgewatch.imaging", fromlist=["load_image"]).load_image(
            examples / "knn_examples" / "test" / "obama1.jpg"
        )
    )
    scores = loaded.gallery.subject_scores(probe.embeddings)
    probe.scrub()
    assert scores[0, 0] > within_budget(4).threshold > scores[0, 1]


def test_entries_csv_errors_name_the_line(tmp_path: Path) -> None:
    from edgewatch.errors import ConfigError

    bad = tmp_path / "entries.csv"
    bad.write_text("subject_ref,category,image\na,wanted,a.jpg\nb,pirate,b.jpg\n")
    with pytest.raises(ConfigError, match=r"entries.csv:3: category 'pirate'"):
        read_entries(bad)
    bad.write_text("subject_ref,image\na,a.jpg\n")
    with pytest.raises(ConfigError, match="missing column"):
        read_entries(bad)
    with pytest.raises(ConfigError, match="file not found"):
        read_entries(tmp_path / "nope.csv")


def test_a_list_too_large_for_its_threshold_is_refused_by_the_unit() -> None:
    """The unit recomputes the budget: an issuing tool that skipped it is caught here."""
    assert len(load_watchlist(sealed(2_000), trust(), NOW).gallery) == 2_000
    too_low = Policy(threshold=within_budget(20).threshold, margin=0.01)
    with pytest.raises(WatchlistRefusedError) as refused:
        load_watchlist(sealed(2_000, policy=too_low), trust(), NOW)
    assert refused.value.reason == "accuracy_budget"
    assert "2,000 templates" in str(refused.value) and "need threshold" in str(refused.value)
    with pytest.raises(WatchlistRefusedError, match="below the calibrated floor"):
        load_watchlist(sealed(1, policy=Policy(threshold=0.9, margin=0.01)), trust(), NOW)
