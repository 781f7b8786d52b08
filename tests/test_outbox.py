"""The durable event outbox, on real SQLite files.

Includes a ``kill -9`` of a real appending process: durability is the point
of the outbox, so it is tested the way it fails in the field.
"""

from __future__ import annotations

import logging
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewatch.errors import ConfigError, EdgewatchError, InputError
from edgewatch.events.outbox import (
    SCHEMA_VERSION,
    Outbox,
    OutboxEntry,
    OutboxError,
    OutboxFull,
)
from edgewatch.transport.topics import EVENT_KINDS

ALERTS = "edgewatch/cam-1/alert"
AUDIT = "edgewatch/cam-1/audit"
STATUS = "edgewatch/cam-1/status"


def numbered(sequence: int | None) -> bytes:
    """A body that carries its own sequence number, as the real events do."""
    return b"status" if sequence is None else b"event %d" % sequence


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


@pytest.fixture
def outbox(db: Path) -> Iterator[Outbox]:
    with Outbox(db) as opened:
        yield opened


def sequences(entries: list[OutboxEntry]) -> list[int | None]:
    return [entry.sequence for entry in entries]


# -- order, sequence numbers, acknowledge ------------------------------------------------------


def test_entries_come_back_in_append_order_with_consecutive_sequences(outbox: Outbox) -> None:
    seen: list[int | None] = []

    def body(sequence: int | None) -> bytes:
        seen.append(sequence)
        return numbered(sequence)

    first = outbox.append("alert", ALERTS, body)
    audit = outbox.append("audit", AUDIT, body)
    status = outbox.append("status", STATUS, body, retain=True)
    second = outbox.append("alert", ALERTS, body)

    assert seen == [1, 2, None, 3]
    ids = [first.id, audit.id, status.id, second.id]
    assert ids == sorted(set(ids))
    assert outbox.pending() == [first, audit, status, second]
    assert (status.kind, status.retain, status.sequence) == ("status", True, None)
    assert (second.kind, second.topic, second.body, second.retain) == (
        "alert",
        ALERTS,
        b"event 3",
        False,
    )
    assert outbox.next_sequence == 4


def test_pending_pages_with_after_id_and_limit(outbox: Outbox) -> None:
    entries = [outbox.append("alert", ALERTS, numbered) for _ in range(7)]

    assert outbox.pending(limit=3) == entries[:3]
    assert outbox.pending(after_id=entries[2].id, limit=3) == entries[3:6]
    assert outbox.pending(after_id=entries[5].id, limit=3) == entries[6:]
    assert outbox.pending(after_id=entries[6].id) == []
    with pytest.raises(ValueError, match="limit"):
        outbox.pending(limit=0)


def test_sequences_continue_after_close_and_reopen(db: Path) -> None:
    with Outbox(db) as outbox:
        for _ in range(3):
            outbox.append("alert", ALERTS, numbered)
        outbox.acknowledge(outbox.pending()[-1].id)
    with Outbox(db) as outbox:
        assert outbox.next_sequence == 4
        assert outbox.append("audit", AUDIT, numbered).sequence == 4
        assert sequences(outbox.pending()) == [1, 2, 4]


def test_ids_are_never_reused_once_everything_is_acknowledged(db: Path) -> None:
    """Otherwise a publisher's ``after_id`` cursor would skip the new events."""
    with Outbox(db) as outbox:
        last = [outbox.append("alert", ALERTS, numbered) for _ in range(3)][-1]
        for entry in outbox.pending():
            outbox.acknowledge(entry.id)
    with Outbox(db) as outbox:
        assert outbox.append("alert", ALERTS, numbered).id > last.id


def test_acknowledge_removes_and_is_idempotent(outbox: Outbox) -> None:
    first, second, third = (outbox.append("alert", ALERTS, numbered) for _ in range(3))

    outbox.acknowledge(second.id)
    assert outbox.pending() == [first, third]
    outbox.acknowledge(second.id)
    outbox.acknowledge(10_000)
    assert outbox.pending() == [first, third]
    assert outbox.depth()["alert"] == 2


def test_failing_body_builder_stores_nothing_and_uses_no_sequence(outbox: Outbox) -> None:
    def broken(sequence: int | None) -> bytes:
        raise RuntimeError("signing key unavailable")

    outbox.append("alert", ALERTS, numbered)
    with pytest.raises(RuntimeError, match="signing key"):
        outbox.append("alert", ALERTS, broken)
    assert outbox.append("alert", ALERTS, numbered).sequence == 2
    assert sequences(outbox.pending()) == [1, 2]


def test_a_delivered_alert_leaves_no_trace_in_the_file(db: Path) -> None:
    """secure_delete: an acknowledged alert's bytes are zeroed on the card, not left
    in a free page (or in the write-ahead log once checkpointed)."""
    marker = b"Subject-Reference-7f3a9c"
    with Outbox(db) as outbox:
        delivered = outbox.append("alert", ALERTS, lambda sequence: marker + b" %d" % sequence)
        outbox.append("alert", ALERTS, numbered)
        outbox.acknowledge(delivered.id)
    files = [db, db.with_name(db.name + "-wal")]
    assert not any(marker in path.read_bytes() for path in files if path.exists())


def test_invalid_arguments_are_refused(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        outbox.append("match", ALERTS, numbered)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="topic"):
        outbox.append("alert", "", numbered)
    with pytest.raises(TypeError, match="bytes"):
        outbox.append("alert", ALERTS, lambda sequence: "text")  # type: ignore[arg-type,return-value]
    assert outbox.pending() == []
    assert outbox.next_sequence == 1


# -- status coalescing and depth ---------------------------------------------------------------


def test_a_new_status_replaces_the_pending_one(outbox: Outbox) -> None:
    old_status = outbox.append("status", STATUS, lambda _: b"old", retain=True)
    alert = outbox.append("alert", ALERTS, numbered)
    new_status = outbox.append("status", STATUS, lambda _: b"new", retain=True)

    assert outbox.pending() == [alert, new_status]
    assert new_status.id > alert.id
    # The publisher may still have the old one in flight: its PUBACK is harmless.
    outbox.acknowledge(old_status.id)
    assert outbox.pending() == [alert, new_status]


def test_depth_counts_pending_events_per_kind(outbox: Outbox) -> None:
    assert outbox.depth() == {"alert": 0, "status": 0, "audit": 0}
    alerts = [outbox.append("alert", ALERTS, numbered) for _ in range(3)]
    outbox.append("audit", AUDIT, numbered)
    for _ in range(4):
        outbox.append("status", STATUS, numbered, retain=True)
    assert outbox.depth() == {"alert": 3, "status": 1, "audit": 1}

    outbox.acknowledge(alerts[0].id)
    assert outbox.depth() == {"alert": 2, "status": 1, "audit": 1}


def test_depth_agrees_with_the_rows_after_a_mixed_history(db: Path) -> None:
    """``depth`` reads counters kept by triggers; they must match what is really stored."""
    rng = random.Random(3)
    refusals = 0
    with Outbox(db, capacity=50) as outbox:
        for _ in range(400):
            choice = rng.random()
            if choice < 0.75:
                kind = rng.choice(EVENT_KINDS)
                try:
                    outbox.append(kind, STATUS if kind == "status" else ALERTS, numbered)
                except OutboxFull:
                    refusals += 1
            elif pending := outbox.pending(limit=10):
                outbox.acknowledge(rng.choice(pending).id)
        depth = outbox.depth()
    raw = sqlite3.connect(db)
    try:
        rows = dict(raw.execute("SELECT kind, count(*) FROM outbox GROUP BY kind").fetchall())
    finally:
        raw.close()
    assert depth == {kind: rows.get(kind, 0) for kind in EVENT_KINDS}
    assert refusals > 0  # it did fill up, and refusals changed no count


# -- capacity ----------------------------------------------------------------------------------


def test_a_full_outbox_refuses_alerts_counts_them_and_evicts_nothing(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Outbox(db, capacity=3) as outbox:
        kept = [
            outbox.append("alert", ALERTS, numbered),
            outbox.append("audit", AUDIT, numbered),
            outbox.append("alert", ALERTS, numbered),
        ]
        with caplog.at_level(logging.ERROR, logger="edgewatch.events.outbox"):
            with pytest.raises(OutboxFull, match="1 refused so far") as refused:
                outbox.append("alert", ALERTS, numbered)
            with pytest.raises(OutboxFull, match="2 refused so far"):
                outbox.append("audit", AUDIT, numbered)
        assert isinstance(refused.value, EdgewatchError)
        assert "\n" not in str(refused.value)
        assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.ERROR]
        assert "refused" in caplog.records[0].getMessage()

        # Status never counts against capacity.
        status = outbox.append("status", STATUS, numbered, retain=True)
        assert outbox.pending() == [*kept, status]
        assert outbox.alerts_refused == 2
        assert outbox.next_sequence == 4  # a refusal uses no sequence number

    with Outbox(db, capacity=3) as outbox:
        assert outbox.alerts_refused == 2
        assert outbox.pending() == [*kept, status]
        with pytest.raises(OutboxFull):
            outbox.append("alert", ALERTS, numbered)
        assert outbox.alerts_refused == 3

        outbox.acknowledge(kept[0].id)
        assert outbox.append("alert", ALERTS, numbered).sequence == 4
        assert sequences(outbox.pending()) == [2, 3, None, 4]


def test_capacity_must_be_positive(db: Path) -> None:
    with pytest.raises(ConfigError, match="capacity"):
        Outbox(db, capacity=0)


# -- kill -9 -----------------------------------------------------------------------------------

APPENDER = """
import sys
from pathlib import Path

from edgewatch.events.outbox import Outbox

outbox = Outbox(Path(sys.argv[1]))
kinds = ("alert", "audit", "alert", "status")
count = 0
while True:
    kind = kinds[count % len(kinds)]
    count += 1
    entry = outbox.append(
        kind,
        "edgewatch/cam-1/" + kind,
        lambda s: b"status" if s is None else b"event %d" % s,
        retain=kind == "status",
    )
    if entry.sequence is not None:
        print(entry.sequence, flush=True)
"""


def append_until_killed(db: Path, stop_after: int) -> list[int]:
    """Run an appending process, SIGKILL it once it has reported ``stop_after`` appends.

    Returns every sequence number it reported, including the ones written to
    the pipe between our last read and the kill.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    reported: list[int] = []
    while len(reported) < stop_after:
        line = process.stdout.readline()
        if not line:
            process.wait()
            pytest.fail(f"appender exited early: {process.stderr.read()}")
        reported.append(int(line))
    process.send_signal(signal.SIGKILL)
    rest = process.stdout.read()
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    # Writes of a line to a pipe are atomic, but only trust complete lines anyway.
    reported.extend(int(line) for line in rest.splitlines(keepends=True) if line.endswith("\n"))
    return reported


def test_every_reported_append_survives_kill_9(db: Path) -> None:
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    reported: list[int] = []
    for round_ in range(3):
        reported += append_until_killed(db, stop_after=rng.randint(1, 400))
        context = f"seed {seed}, round {round_}"

        with Outbox(db) as outbox:
            entries = outbox.pending(limit=1_000_000)
            stored = [e.sequence for e in entries if e.sequence is not None]
            assert stored == list(range(1, len(stored) + 1)), context
            assert set(reported) <= set(stored), context
            assert len(reported) == len(set(reported)), context
            # At most the one append that committed but was killed before it could print.
            assert stored[-1] - max(reported) in (0, 1), context
            assert outbox.next_sequence == stored[-1] + 1, context
            assert all(e.body == numbered(e.sequence) for e in entries), context
            assert outbox.depth()["status"] <= 1, context


# -- threads -----------------------------------------------------------------------------------


def test_concurrent_append_and_drain_delivers_everything_once_in_order(outbox: Outbox) -> None:
    total = 2_000
    appended: list[OutboxEntry] = []
    drained: list[OutboxEntry] = []
    failures: list[BaseException] = []
    camera_done = threading.Event()

    def camera() -> None:
        try:
            for _ in range(total):
                appended.append(outbox.append("alert", ALERTS, numbered))
        except BaseException as exc:
            failures.append(exc)
        finally:
            camera_done.set()

    def publisher() -> None:
        try:
            while True:
                finished = camera_done.is_set()  # before reading, so nothing slips past
                batch = outbox.pending(limit=64)
                for entry in batch:
                    drained.append(entry)
                    outbox.acknowledge(entry.id)
                if not batch:
                    if finished:
                        return
                    camera_done.wait(0.001)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=camera), threading.Thread(target=publisher)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert drained == appended
    assert sequences(drained) == list(range(1, total + 1))
    assert all(entry.body == numbered(entry.sequence) for entry in drained)
    assert outbox.pending() == []
    assert outbox.depth() == {"alert": 0, "status": 0, "audit": 0}


# -- the file ----------------------------------------------------------------------------------


def test_files_are_private(db: Path) -> None:
    with Outbox(db) as outbox:
        outbox.append("alert", ALERTS, numbered)
        wal = db.with_name(db.name + "-wal")
        assert wal.exists()
        assert db.stat().st_mode & 0o777 == 0o600
        assert wal.stat().st_mode & 0o777 == 0o600


def test_an_existing_file_readable_by_others_is_made_private(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db.touch()
    db.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="edgewatch.events.outbox"), Outbox(db):
        assert db.stat().st_mode & 0o777 == 0o600
    assert "changed to 600" in caplog.text


def test_uses_wal_and_records_its_schema_version(db: Path, outbox: Outbox) -> None:
    outbox.append("alert", ALERTS, numbered)
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()


def test_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Outbox(tmp_path / "not-there" / "outbox.db")
    assert not (tmp_path / "not-there").exists()


def test_a_newer_schema_is_refused_and_left_alone(db: Path) -> None:
    with Outbox(db) as outbox:
        outbox.append("alert", ALERTS, numbered)
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()

    with pytest.raises(InputError, match="newer than this edgewatch supports") as refused:
        Outbox(db)
    assert "\n" not in str(refused.value)

    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert raw.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1
    finally:
        raw.close()


def test_a_file_that_is_not_sqlite_is_refused(db: Path) -> None:
    garbage = random.Random(7).randbytes(16_384)
    db.write_bytes(garbage)
    with pytest.raises(InputError, match="not an SQLite database") as refused:
        Outbox(db)
    assert "\n" not in str(refused.value)
    assert db.read_bytes() == garbage


def test_another_sqlite_database_is_refused(db: Path) -> None:
    raw = sqlite3.connect(db)
    raw.execute("CREATE TABLE watchlist (id INTEGER PRIMARY KEY)")
    raw.close()
    with pytest.raises(InputError, match="not an edgewatch event outbox"):
        Outbox(db)


def test_a_closed_outbox_says_so(outbox: Outbox) -> None:
    outbox.close()
    outbox.close()
    with pytest.raises(OutboxError, match="closed"):
        outbox.append("alert", ALERTS, numbered)
    with pytest.raises(OutboxError, match="closed"):
        outbox.pending()
