"""The durable event outbox: events wait here, on disk, until the broker has them.

The camera loop appends events; a separate publisher thread reads the pending
ones in order, publishes them over MQTT with QoS 1 and acknowledges each one
when the broker's PUBACK arrives. Only then is the event deleted. So an event
survives a broker outage, a network outage and a ``kill -9`` of the appliance,
and delivery resumes in the original order after a reconnect. The outbox stores
opaque bytes: the publisher stamps the send time and signs at publish time, so
nothing here knows the event format.

Storage is one SQLite file in WAL mode with ``synchronous=FULL``: every append
and every acknowledge is fsynced before it returns, because losing power on a
pole is a normal event, not an accident. (``kill -9`` alone would be survived
with ``synchronous=NORMAL`` too; only a power cut tells them apart.) The file
is created with mode 0600. ``PRAGMA application_id`` marks the file as an
outbox and ``PRAGMA user_version`` holds the schema version; a file that is
not an outbox, or that a newer edgewatch wrote, is refused and left untouched,
since it may hold undelivered events.

Sequence numbers
    Alerts and audit events are *sequenced*: each gets the next value of one
    per-device counter (1, 2, 3, ... shared by both kinds), stored in the same
    database and allocated in the same transaction as the insert. A crash
    therefore never yields a gap or a duplicate, and the numbers keep
    increasing across restarts, so the control room can detect a missing event.
    Status events are not sequenced.

Status coalescing
    A status event is retained by the broker and supersedes the previous one,
    so only the newest pending status is worth sending: appending a status
    deletes every older pending status in the same transaction. At most one
    status is ever pending.

Capacity policy (what happens when the broker is unreachable for too long)
    ``capacity`` counts pending alert and audit events only; the single
    pending status never counts. While ``capacity`` alerts and audit events
    are pending, a new alert or audit event is refused, never silently
    dropped: in one transaction the persisted ``alerts_refused`` counter
    (alerts and audit events together) is incremented and nothing else
    changes, then an ERROR is logged and :class:`OutboxFull` is raised. The
    caller catches it and keeps running; the counter goes into every signed
    status event, so the control room learns that alerts were refused and how
    many. A refused event consumes no sequence number: the sequence stays
    contiguous and a gap still means loss. Queued events are never evicted to
    make room: the oldest alerts are the ones the control room has been
    missing the longest.

Threads
    ``append`` (camera thread) and ``pending``/``acknowledge`` (publisher
    thread) may run concurrently. One connection is shared, guarded by a lock
    that lets a waiting append go first, so an append waits for at most one
    other operation (one fsynced acknowledge) even while the publisher drains
    a backlog. (A plain lock let the publisher re-take it for a whole batch of
    acknowledges: append p99 6.6-11.5 ms in the measurement below.)
    A connection per thread was measured too (throwaway script, not kept; one
    thread appending 2,000 alerts while another drains them, synchronous=FULL,
    ext4 on a 2-core VM, medians of 10 interleaved runs, three sessions): it
    drained 15-25 % more events per second (1474-1738 vs 1222-1406) and its
    append p99 was a little lower (0.6-0.7 vs 0.8-1.1 ms), but its slowest
    append was far slower (11-82 ms vs 4.4-4.9 ms), because a blocked writer
    waits in SQLite's busy handler, which sleeps in steps of milliseconds and
    can end in "database is locked". Both sides write (an acknowledge is a
    delete), so separate connections buy little; the publisher is limited by
    the broker's round trips, not by this; and the camera's worst case is what
    matters. Hence the shared connection. ``bench/outbox_speed.py`` measures
    the cost of ``synchronous=FULL``.

``append`` waits on the disk but never on the network. Many threads appending
without pause could starve the publisher; the appliance has one camera thread.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self

from edgewatch.errors import ConfigError, EdgewatchError, InputError
from edgewatch.transport.topics import EVENT_KINDS, EventKind

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
"""Stored in ``PRAGMA user_version``; bump it and add a migration when the schema changes."""

APPLICATION_ID: Final = 0x45574F42
"""``PRAGMA application_id`` of an outbox file ("EWOB"): tells it from any other SQLite file."""

DEFAULT_CAPACITY: Final = 100_000

SEQUENCED_KINDS: Final[frozenset[EventKind]] = frozenset({"alert", "audit"})

Synchronous = Literal["FULL", "NORMAL"]

_SCHEMA: Final = (
    # AUTOINCREMENT: ids are never reused, even once every row has been acknowledged,
    # so a publisher's ``after_id`` cursor can never skip a newer event.
    """
    CREATE TABLE outbox (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        kind     TEXT    NOT NULL CHECK (kind IN ('alert', 'status', 'audit')),
        topic    TEXT    NOT NULL,
        body     BLOB    NOT NULL,
        sequence INTEGER UNIQUE,
        retain   INTEGER NOT NULL CHECK (retain IN (0, 1)),
        created  REAL    NOT NULL,
        CHECK ((kind = 'status') = (sequence IS NULL))
    )
    """,
    # Tiny (at most one row): lets coalescing find the pending status without a table scan.
    "CREATE INDEX outbox_status ON outbox (id) WHERE kind = 'status'",
    """
    CREATE TABLE outbox_state (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        next_sequence  INTEGER NOT NULL CHECK (next_sequence >= 1),
        alerts_refused INTEGER NOT NULL CHECK (alerts_refused >= 0),
        pending_alert  INTEGER NOT NULL CHECK (pending_alert >= 0),
        pending_status INTEGER NOT NULL CHECK (pending_status >= 0),
        pending_audit  INTEGER NOT NULL CHECK (pending_audit >= 0)
    )
    """,
    "INSERT INTO outbox_state VALUES (1, 1, 0, 0, 0, 0)",
    # Every append checks the capacity and every status event reports the depth: with
    # 100,000 events pending a count(*) takes over 100 ms, long enough to stall the camera.
    # The triggers keep the counts in the same transaction as the insert or delete.
    """
    CREATE TRIGGER outbox_added AFTER INSERT ON outbox BEGIN
        UPDATE outbox_state SET
            pending_alert = pending_alert + (NEW.kind = 'alert'),
            pending_status = pending_status + (NEW.kind = 'status'),
            pending_audit = pending_audit + (NEW.kind = 'audit');
    END
    """,
    """
    CREATE TRIGGER outbox_removed AFTER DELETE ON outbox BEGIN
        UPDATE outbox_state SET
            pending_alert = pending_alert - (OLD.kind = 'alert'),
            pending_status = pending_status - (OLD.kind = 'status'),
            pending_audit = pending_audit - (OLD.kind = 'audit');
    END
    """,
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

_KINDS: Final[dict[str, EventKind]] = {kind: kind for kind in EVENT_KINDS}


class OutboxError(EdgewatchError):
    """The outbox database failed while in use (disk full, I/O error, closed)."""


class OutboxFull(OutboxError):  # noqa: N818 - the name in the outbox API contract
    """An alert or audit event was refused because ``capacity`` events are already pending."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One pending event, as stored."""

    id: int
    """Row id: strictly increasing, never reused; ascending id is delivery order."""
    kind: EventKind
    topic: str
    body: bytes = field(repr=False)
    """The event as the camera loop built it; kept out of repr, which can end up in a log."""
    sequence: int | None
    """Per-device sequence number of an alert or audit event; None for a status."""
    retain: bool
    created: float
    """Unix time of the append."""


def _entry(row: tuple[object, ...]) -> OutboxEntry:
    entry_id, kind, topic, body, sequence, retain, created = row
    assert isinstance(entry_id, int) and isinstance(topic, str) and isinstance(body, bytes)
    assert sequence is None or isinstance(sequence, int)
    assert isinstance(created, float)
    return OutboxEntry(
        id=entry_id,
        kind=_KINDS[str(kind)],
        topic=topic,
        body=body,
        sequence=sequence,
        retain=bool(retain),
        created=created,
    )


def _create_private_file(path: Path) -> None:
    """Create the database file with mode 0600 before SQLite opens it.

    SQLite would create it with the umask's mode; it gives the ``-wal`` and
    ``-shm`` files the mode of the database file, so creating this one right
    covers all three. Files left by an earlier, laxer setup are tightened.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        for existing in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
            try:
                mode = existing.stat().st_mode & 0o777
                if mode & 0o077:
                    existing.chmod(0o600)
                    log.warning("outbox file %s had mode %o: changed to 600", existing, mode)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ConfigError(
                    f"cannot make outbox file {existing} private (mode 600): {exc.strerror}"
                ) from None
        return
    except OSError as exc:
        raise ConfigError(f"cannot create outbox {path}: {exc.strerror}") from None
    os.close(fd)


class _AppendFirstLock:
    """A mutex that serves waiting appends before anything else.

    A plain :class:`threading.Lock` is not fair: a publisher acknowledging a
    backlog releases it and takes it again before the woken camera thread
    runs, so an append can wait for a whole batch of acknowledges. Here a
    waiting append goes next, so it waits for at most one other operation.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._held = False
        self._appends_waiting = 0

    @contextmanager
    def hold(self, *, append: bool) -> Iterator[None]:
        with self._condition:
            if append:
                self._appends_waiting += 1
                try:
                    self._condition.wait_for(lambda: not self._held)
                finally:
                    self._appends_waiting -= 1
            else:
                self._condition.wait_for(lambda: not self._held and not self._appends_waiting)
            self._held = True
        try:
            yield
        finally:
            with self._condition:
                self._held = False
                self._condition.notify_all()


class Outbox:
    """Events waiting for the broker's acknowledgement, in one SQLite file.

    Thread-safe: one connection, one lock (see the module docstring).
    """

    def __init__(
        self,
        path: Path,
        capacity: int = DEFAULT_CAPACITY,
        *,
        synchronous: Synchronous = "FULL",
    ) -> None:
        """Open ``path``, creating the outbox if the file does not exist yet.

        The directory must exist: creating it here would hide a wrong path (or
        a missing data partition) until the events are gone with the reboot.
        ``synchronous="NORMAL"`` exists for the benchmark and for a device with
        a battery-backed supply; it survives ``kill -9`` but may lose the last
        events on power loss.
        """
        if capacity < 1:
            raise ConfigError(f"outbox capacity must be at least 1, not {capacity}")
        if synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(f"outbox synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = path
        self.capacity = capacity
        self._lock = _AppendFirstLock()
        self._closed = False
        if not path.parent.is_dir():
            raise ConfigError(
                f"outbox directory {path.parent} does not exist: create it "
                "(owned by the edgewatch user, mode 700)"
            )
        if path.is_dir():
            raise ConfigError(f"outbox path {path} is a directory: give a file name")
        _create_private_file(path)
        try:
            # isolation_level=None: this class issues BEGIN/COMMIT itself, never implicitly.
            self._conn = sqlite3.connect(
                path, timeout=5.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise InputError(f"cannot open outbox {path}: {exc}") from None
        try:
            self._prepare(synchronous)
        except BaseException:
            self._conn.close()
            self._closed = True
            raise

    def _prepare(self, synchronous: Synchronous) -> None:
        """Check what the file is, switch to WAL and create the schema if the file is new."""
        conn = self._conn
        try:
            application_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            objects = int(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise InputError(
                f"{self.path} is not an edgewatch event outbox (not an SQLite database: {exc})"
            ) from None
        fresh = application_id == 0 and version == 0 and objects == 0
        if not fresh:
            self._check_header(application_id, version)
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            # A delivered alert's bytes are overwritten with zeros, not left in a
            # free page of the file (docs/privacy.md). Debian builds SQLite with
            # this on; say so rather than depend on the build.
            conn.execute("PRAGMA secure_delete = ON")
            if mode.lower() != "wal":
                raise ConfigError(
                    f"outbox {self.path}: the file system does not support SQLite's WAL mode "
                    f"(journal mode stayed {mode}); put the outbox on a local disk"
                )
            if fresh:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Re-check under the write lock: another process may have created it meanwhile.
                    if int(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]) == 0:
                        for statement in _SCHEMA:
                            conn.execute(statement)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.rollback()
                    raise
                self._check_header(
                    int(conn.execute("PRAGMA application_id").fetchone()[0]),
                    int(conn.execute("PRAGMA user_version").fetchone()[0]),
                )
                log.info("created event outbox %s", self.path)
            row = conn.execute("SELECT next_sequence FROM outbox_state WHERE id = 1").fetchone()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"outbox {self.path} is damaged or unreadable: {exc}") from None
        if row is None:
            raise InputError(f"outbox {self.path} is damaged: its state row is missing")

    def _check_header(self, application_id: int, version: int) -> None:
        if application_id != APPLICATION_ID:
            raise InputError(
                f"{self.path} is not an edgewatch event outbox (another SQLite database): "
                "choose another path"
            )
        if version > SCHEMA_VERSION:
            raise InputError(
                f"outbox {self.path} has schema version {version}, newer than this edgewatch "
                f"supports ({SCHEMA_VERSION}): upgrade edgewatch (the file may hold undelivered "
                "events, keep it)"
            )
        if version < 1:
            raise InputError(f"outbox {self.path} is damaged: schema version {version}")

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _connection(self, *, append: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock; storage failures become :class:`OutboxError`.

        Integrity and programming errors are left alone: they are bugs.
        """
        with self._lock.hold(append=append):
            if self._closed:
                raise OutboxError(f"outbox {self.path} is closed")
            try:
                yield self._conn
            except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
                raise
            except sqlite3.DatabaseError as exc:
                raise OutboxError(f"outbox {self.path}: {exc}") from None

    @contextmanager
    def _transaction(self, *, append: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed if the block ends normally, rolled back otherwise.

        IMMEDIATE takes the write lock at BEGIN, so no statement inside can fail
        half-way with "database is locked".
        """
        with self._connection(append=append) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise

    # -- the API ------------------------------------------------------------------------------

    def append(
        self,
        kind: EventKind,
        topic: str,
        build_body: Callable[[int | None], bytes],
        *,
        retain: bool = False,
    ) -> OutboxEntry:
        """Store one event and return it as stored.

        ``build_body`` receives the sequence number (None for a status) and
        returns the body; it runs inside the transaction, so that the number
        written into the body is the number stored, and must be quick (the
        publisher waits for it). If it raises, nothing is stored and no
        number is used. Raises :class:`OutboxFull` (see the capacity policy)
        for an alert or audit event while ``capacity`` of them are pending.
        """
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}: expected one of {EVENT_KINDS}")
        if not topic:
            raise ValueError("an event needs a topic")
        sequenced = kind in SEQUENCED_KINDS
        stored: OutboxEntry | None = None
        with self._transaction(append=True) as conn:
            next_sequence, pending, refused = conn.execute(
                "SELECT next_sequence, pending_alert + pending_audit, alerts_refused"
                " FROM outbox_state"
            ).fetchone()
            if sequenced and pending >= self.capacity:
                conn.execute("UPDATE outbox_state SET alerts_refused = alerts_refused + 1")
                refused += 1
            else:
                stored = self._insert(
                    conn, kind, topic, build_body, int(next_sequence) if sequenced else None, retain
                )
        if stored is None:
            log.error(
                "event outbox full (%d alert and audit events awaiting the broker): "
                "refused a new %s event, %d refused so far",
                self.capacity,
                kind,
                refused,
            )
            raise OutboxFull(
                f"event outbox full ({self.capacity} alert and audit events awaiting the "
                f"broker): {kind} event refused, {refused} refused so far"
            )
        return stored

    @staticmethod
    def _insert(
        conn: sqlite3.Connection,
        kind: EventKind,
        topic: str,
        build_body: Callable[[int | None], bytes],
        sequence: int | None,
        retain: bool,
    ) -> OutboxEntry:
        """The insert half of :meth:`append`, inside its transaction."""
        created = time.time()
        body = build_body(sequence)
        if not isinstance(body, bytes):
            raise TypeError(f"build_body must return bytes, not {type(body).__name__}")
        if sequence is None:
            conn.execute("DELETE FROM outbox WHERE kind = 'status'")
        else:
            conn.execute("UPDATE outbox_state SET next_sequence = ?", (sequence + 1,))
        cursor = conn.execute(
            "INSERT INTO outbox (kind, topic, body, sequence, retain, created)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (kind, topic, body, sequence, int(retain), created),
        )
        assert cursor.lastrowid is not None
        return OutboxEntry(cursor.lastrowid, kind, topic, body, sequence, retain, created)

    def pending(self, after_id: int = 0, limit: int = 100) -> list[OutboxEntry]:
        """Up to ``limit`` pending events with an id above ``after_id``, in delivery order.

        ``after_id`` lets the publisher fetch what follows the events it has
        already sent and is still waiting to see acknowledged.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT id, kind, topic, body, sequence, retain, created FROM outbox"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [_entry(row) for row in rows]

    def acknowledge(self, entry_id: int) -> None:
        """Delete an event the broker has acknowledged.

        Idempotent: an id that is already gone (acknowledged twice, or a status
        superseded while it was in flight) is not an error.
        """
        with self._transaction() as conn:
            conn.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))

    def depth(self) -> dict[str, int]:
        """Pending events per kind, every kind present (for status events and logs)."""
        with self._connection() as conn:
            alert, status, audit = conn.execute(
                "SELECT pending_alert, pending_status, pending_audit FROM outbox_state"
            ).fetchone()
        return {"alert": int(alert), "status": int(status), "audit": int(audit)}

    @property
    def next_sequence(self) -> int:
        """The number the next alert or audit event will get."""
        return self._state("SELECT next_sequence FROM outbox_state")

    @property
    def alerts_refused(self) -> int:
        """Alert and audit events refused because the outbox was full, over its whole life."""
        return self._state("SELECT alerts_refused FROM outbox_state")

    def _state(self, query: str) -> int:
        with self._connection() as conn:
            return int(conn.execute(query).fetchone()[0])

    def close(self) -> None:
        """Close the database; idempotent. Other methods then raise :class:`OutboxError`."""
        with self._lock.hold(append=False):
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
