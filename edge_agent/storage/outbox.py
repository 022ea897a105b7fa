"""The durable outbox: every data message is on disk before it is sent, and stays there
until the fleet confirms it has stored it.

Why until the fleet's confirmation and not the broker's PUBACK: a PUBACK means the
broker received the message, not that it will deliver it. Mosquitto saves its queues
to disk only every ``autosave_interval``, and does not restore shared subscriptions
after a restart at all (docs/protocol.md), so a broker crash or restart can lose
messages it had acknowledged. Keeping each message until the fleet says "stored"
makes the guarantee end to end; a message sent twice overwrites itself in InfluxDB.

Each row is scheduled: ``next_send`` is when it may be sent (again). A PUBACK moves it
``confirm_timeout`` into the future, doubling with each attempt; a reconnection makes
every unconfirmed row due at once. The sequence number is the row's AUTOINCREMENT key:
the agent numbers each message from the largest key ever stored, so a number is never
reused, not even after its row is confirmed and deleted.

SQLite in WAL mode: one file, crash-safe, readers never block the writer. With
``synchronous=FULL`` a message is on disk before ``add`` returns (power-cut safe);
``NORMAL`` may lose the last messages on a power cut, never corrupts the file.

**A full disk.** Before each write the outbox measures what it occupies and what the
file system has left (the rules: ``storage/space.py``) and makes room by the overflow
policy (``storage/overflow.py``: health thinned first, then the oldest readings,
events last). Each drop is counted in the database, in the transaction that drops,
so the count survives restarts and is reported (``dropped_messages``, the
``outbox_overflow`` event) once the agent is connected again. When SQLite reports the
disk full anyway (another program took the room), the outbox gives back its reserve
file (``storage/disk.py``) and tries once more; failing that, the message is **held
in memory** (an attached in-memory table, bounded by ``memory_max_bytes`` with the
same policy), sent from there like any other, and moved to disk when room returns. A
confirmation or a send schedule that cannot be saved is kept in memory too. Opening
never fails on a full disk (``storage/database.py``).

Messages held in memory are lost if the power is cut: the price of a full disk, and
counted nowhere, as nothing survives to count them.

This module is longer than 400 lines on purpose: every method keeps one invariant
together (each number given is on disk, in memory, or counted as dropped, and the
count lands with the deletion), which is easier to check in one class than spread out.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from edge_agent.errors import StorageFull
from edge_agent.storage.database import COLUMNS, INSERT, open_database
from edge_agent.storage.disk import Reserve, disk_free, disk_trouble, file_size, file_system_size
from edge_agent.storage.overflow import Schema, victims
from edge_agent.storage.space import MIB, ROW_OVERHEAD_BYTES, Budget, Usage, deficit, headroom

log = logging.getLogger(__name__)

#: How often a degraded outbox (messages held in memory, the reserve given back, no
#: database file) tries the disk again; a confirmation (rows freed) tries at once.
RETRY_S: Final = 5.0
#: Writes between two measurements of the outbox's files (the free space on the disk
#: is asked at every write): what the estimates between them may be off by.
MEASURE_EVERY: Final = 32
#: Rows moved from memory to disk per transaction.
_MOVE_CHUNK: Final = 20
#: A row as stored: seq, topic, payload, kind, enqueued_at, attempts, next_send.
Row = tuple[int, str, bytes, str, float, int, float]
#: The outbox's files beside the database, as SQLite names them, and the reserve.
_SIDE_FILES: Final = ("-wal", "-shm", "-journal", ".reserve")


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    seq: int
    topic: str
    payload: bytes
    enqueued_at: float
    attempts: int


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits for the fleet's confirmation."""

    messages: int
    bytes: int
    oldest_age_s: float


@dataclass(frozen=True, slots=True)
class DiskUse:
    """For the health report: what the outbox takes and what the disk has left."""

    #: The outbox's files as they are on disk (database, WAL, index, reserve).
    outbox_bytes: int
    disk_free_bytes: int
    #: Messages kept in memory because the disk had no room for them.
    held_messages: int
    #: False while the database could not be opened at all (everything in memory).
    durable: bool


class Outbox:
    """A durable FIFO of (topic, payload) messages awaiting the fleet's confirmation.

    Blocking (SQLite, fsync): the agent calls it from one thread of its own
    (``edge_agent.runtime.recorder``), never from the event loop."""

    def __init__(
        self,
        path: Path,
        synchronous: Literal["full", "normal"] = "full",
        max_bytes: int = 256 * MIB,
        clock: Callable[[], float] = time.time,
        *,
        min_free_bytes: int = 0,
        memory_max_bytes: int = 16 * MIB,
        disk_free: Callable[[Path], int] = disk_free,
    ) -> None:
        self.path = path
        # On a file system smaller than the budget, the parts (WAL, reserve) scale to it.
        self.budget = Budget(min(max_bytes, file_system_size(path) or max_bytes))
        self.min_free_bytes = min_free_bytes
        self.memory_max_bytes = memory_max_bytes
        self._clock = clock
        self._disk_free = disk_free
        self._reserve = Reserve(
            path.with_name(path.name + ".reserve"),
            self.budget.reserve_bytes,
            min_free_bytes,
            disk_free,
        )
        self._synchronous = synchronous
        #: Drops not yet counted in the database (from memory, or while it was full).
        self._unsaved_drops = 0
        #: Confirmed, but the deletion could not be written: never sent again.
        self._forgotten: set[int] = set()
        #: Sent, but the new schedule could not be written: not due before this.
        self._not_before: dict[int, float] = {}
        #: Messages held in memory, and at least what they take (exact when measured).
        self._held = 0
        self._held_bytes = 0
        #: What the last measurement left: bytes to write before measuring again, the
        #: WAL's growth to come, and the writes since.
        self._headroom = 0
        self._wal_growth = 0
        self._unmeasured = 0
        self._last_retry = time.monotonic()
        self._db, self.durable = self._open()
        self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        self._saved_drops = self._counter("dropped")
        self._session = self._counter("session")
        #: The largest number stored, and the largest saved as SQLite's counter.
        self._highest_seq = self._saved_seq = self.last_seq()
        if self.durable:
            self._reserve.take()

    def _open(self) -> tuple[sqlite3.Connection, bool]:
        return open_database(
            self.path, self._synchronous, self.budget.wal_bytes, self._reserve.give_back
        )

    def close(self) -> None:
        self.retry(now=True)  # a last chance for what is held in memory
        held = self._held
        if held:
            log.error("closing with %d messages held in memory: they are lost", held)
        self._db.close()

    # --- measuring -----------------------------------------------------------------------

    def _side_file(self, suffix: str) -> int:
        return file_size(self.path.with_name(self.path.name + suffix))

    def usage(self) -> Usage:
        """What the outbox occupies now, and what the file system has left."""
        pages, free_pages = (
            int(self._db.execute(f"PRAGMA {name}").fetchone()[0])
            for name in ("page_count", "freelist_count")
        )
        return Usage(
            used_pages_bytes=(pages - free_pages) * self._page_size,
            free_pages_bytes=free_pages * self._page_size,
            side_files_bytes=sum(self._side_file(suffix) for suffix in _SIDE_FILES),
            wal_bytes=self._side_file("-wal"),
            disk_free_bytes=self._disk_free(self.path.parent),
        )

    def disk_use(self) -> DiskUse:
        files = self._side_file("") + sum(self._side_file(suffix) for suffix in _SIDE_FILES)
        return DiskUse(files, self._disk_free(self.path.parent), self._held, self.durable)

    @property
    def dropped(self) -> int:
        """Messages dropped to stay within the budget, since the outbox was created."""
        return self._saved_drops + self._unsaved_drops

    # --- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, drops: int = 0, inserts_up_to: int = 0) -> Iterator[None]:
        """One write transaction; it also saves the drop count (``drops`` more, and
        any not saved yet), so that a count and its deletions land together, and the
        largest number given (``inserts_up_to``: what its inserts save themselves)."""
        self._db.execute("BEGIN IMMEDIATE")
        pending = self._unsaved_drops + drops
        highest = self._highest_seq
        try:
            yield
            if highest > max(self._saved_seq, inserts_up_to):
                self._save_highest_seq(highest)
            if pending:
                self._db.execute(
                    "INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                    (pending,),
                )
            self._db.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (SQLITE_FULL does, at times); a
            # COMMIT that failed leaves the transaction open (SQLite's advice: roll back).
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._saved_drops += pending
        self._unsaved_drops = 0
        self._saved_seq = max(self._saved_seq, highest, inserts_up_to)

    def _save_highest_seq(self, seq: int) -> None:
        """A number given to a message that lived only in memory (held, sent,
        confirmed) is never given again: SQLite's counter is moved up to it."""
        self._db.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox', ? "
            "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox')",
            (seq,),
        )
        self._db.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'outbox'", (seq,)
        )

    def add(self, seq: int, topic: str, payload: bytes, kind: str) -> None:
        """Store one message under the sequence number it carries: on disk, or, when
        the disk has no room for it, in memory.

        The agent numbers messages itself (from :meth:`last_seq` at start), so that
        building one never waits for the disk; numbers only grow, and SQLite's
        AUTOINCREMENT remembers the largest ever stored, also once it is deleted.
        ``kind`` (reading, health, event) decides what the overflow policy drops first.
        """
        row = (seq, topic, payload, kind, self._clock(), 0, 0.0)
        self._highest_seq = max(self._highest_seq, seq)
        self.retry()
        if self.durable and not self._held:  # behind held ones: order kept
            try:
                self._on_full_disk(lambda: self._store([row]))
            except StorageFull as exc:
                log.warning("%s; keeping messages in memory", exc)
            else:
                return
        self._hold(row)

    def _store(self, rows: Sequence[Row]) -> None:
        """Write ``rows`` to disk, making room first; StorageFull if there is none."""
        need = sum(len(row[1]) + len(row[2]) + ROW_OVERHEAD_BYTES for row in rows)
        # While the reserve is given back, its room is not ours to fill.
        min_free = self.min_free_bytes + (0 if self._reserve.held else self.budget.reserve_bytes)
        # The disk is asked every time (another program may fill it); the files are
        # measured again after MEASURE_EVERY writes, or when the room they left runs out.
        if (
            need <= self._headroom
            and self._unmeasured < MEASURE_EVERY
            and self._disk_free(self.path.parent) - need - self._wal_growth >= min_free
        ):
            self._headroom -= need
            self._unmeasured += 1
        else:
            self._reserve.take()  # as soon as the disk has room for it again
            while (missing := deficit(usage := self.usage(), need, self.budget, min_free)) > 0:
                if not self._drop("main", missing + self.budget.slack_bytes):
                    raise StorageFull(f"no room for {need} bytes in {self.path}")
            self._headroom = headroom(usage, self.budget, min_free) - need
            self._wal_growth = max(0, self.budget.wal_bytes - usage.wal_bytes)
            self._unmeasured = 0
        with self._transaction(inserts_up_to=max(row[0] for row in rows)):
            self._db.executemany(INSERT.format(s="main"), rows)

    def _on_full_disk(self, write: Callable[[], object]) -> None:
        """Run ``write``; when the disk is full, give back the reserve, let the WAL
        start over, and run it once more. StorageFull when even that fails."""
        try:
            write()
        except sqlite3.Error as exc:
            if not disk_trouble(exc):
                raise
            log.warning("%s is full (%s): freeing room", self.path.parent, exc)
        else:
            return
        self._headroom = 0  # what was measured is wrong: measure again
        self._reserve.give_back()
        # RESTART, not TRUNCATE: the next transactions reuse the WAL's room from its
        # start instead of asking the full disk for it again.
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(RESTART)")
        try:
            write()
        except sqlite3.Error as exc:
            if not disk_trouble(exc):
                raise
            raise StorageFull(f"{self.path}: {exc}") from exc

    def _drop(self, schema: Schema, amount: int) -> int:
        """Drop old messages of ``schema`` worth ``amount`` bytes, by the overflow
        policy (all of them if they hold less). Returns how many went."""
        chosen = victims(self._db, schema, amount)
        if not chosen:
            return 0
        delete = f"DELETE FROM {schema}.outbox WHERE seq = ?"  # noqa: S608 - fixed names
        if schema == "main":
            with self._transaction(drops=len(chosen)):  # the count lands with them
                self._db.executemany(delete, [(seq,) for seq in chosen])
        else:  # in memory: counted now, saved with the next write to disk
            self._db.executemany(delete, [(seq,) for seq in chosen])
            self._unsaved_drops += len(chosen)
            self._held -= len(chosen)
        for seq in chosen:
            self._not_before.pop(seq, None)
        # Debug only: the recorder reports drops, at most once a minute.
        log.debug("outbox: dropped %d messages (%s) for want of room", len(chosen), schema)
        return len(chosen)

    def _hold(self, row: Row) -> None:
        self._db.execute(INSERT.format(s="held"), row)
        self._held += 1
        # An upper bound, kept without a query per message; measured when it is over.
        self._held_bytes += len(row[1]) + len(row[2])
        if self._held_bytes > self.memory_max_bytes:
            self._held_bytes = self._held_size()
            if self._held_bytes > self.memory_max_bytes:
                excess = self._held_bytes - self.memory_max_bytes
                self._drop("held", excess + self.memory_max_bytes // 16)
                self._held_bytes = self._held_size()

    def _held_size(self) -> int:
        (size,) = self._db.execute(
            "SELECT coalesce(sum(length(payload) + length(topic)), 0) FROM held.outbox"
        ).fetchone()
        return int(size)

    def retry(self, now: bool = False) -> None:
        """When degraded, try the disk again (at most every RETRY_S, or ``now``):
        reopen it, delete what was confirmed, move held messages to it, take the
        reserve back."""
        degraded = not self.durable or self._forgotten or self._held
        if not degraded and self._reserve.held:
            return
        if not now and time.monotonic() - self._last_retry < RETRY_S:
            return
        self._last_retry = time.monotonic()
        try:
            if not self.durable:
                self._reopen()
            if self.durable and self._forgotten:
                self._on_full_disk(functools.partial(self._delete_main, sorted(self._forgotten)))
                self._forgotten.clear()
            while self.durable and (rows := self._held_rows(_MOVE_CHUNK)):
                self._on_full_disk(functools.partial(self._store, rows))
                self._db.executemany(
                    "DELETE FROM held.outbox WHERE seq = ?", [(row[0],) for row in rows]
                )
                self._held -= len(rows)
            if self.durable:
                self._reserve.take()
        except StorageFull as exc:
            log.debug("still no room: %s", exc)

    def _held_rows(self, limit: int) -> list[Row]:
        return self._db.execute(
            f"SELECT {COLUMNS} FROM held.outbox ORDER BY seq LIMIT ?",  # noqa: S608 - constants
            (limit,),
        ).fetchall()

    def _reopen(self) -> None:
        """From memory to the database file, once it can be opened."""
        db, durable = self._open()
        if not durable:
            db.close()
            return
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM main.outbox UNION ALL SELECT {COLUMNS} FROM held.outbox"  # noqa: S608
        ).fetchall()
        drops, session = self._unsaved_drops, self._session
        self._db.close()
        self._db, self.durable = db, True
        self._db.executemany(INSERT.format(s="held"), rows)
        self._held = len(rows)
        self._saved_drops, self._unsaved_drops = self._counter("dropped"), drops
        self._session = max(session, self._counter("session"))
        self._saved_seq = 0  # saved with the next write
        log.info("%s is open again; moving %d messages to it", self.path, len(rows))

    # --- reading and scheduling -----------------------------------------------------------

    def _count(self, schema: Schema) -> int:
        (count,) = self._db.execute(f"SELECT count(*) FROM {schema}.outbox").fetchone()  # noqa: S608
        return int(count)

    def due(self, limit: int) -> list[OutboxEntry]:
        """The oldest ``limit`` messages that may be sent now, in sequence order."""
        now = self._clock()
        skip = self._forgotten | {seq for seq, at in self._not_before.items() if at > now}
        rows = self._db.execute(
            "SELECT seq, topic, payload, enqueued_at, attempts FROM main.outbox "
            "WHERE next_send <= ? UNION ALL "
            "SELECT seq, topic, payload, enqueued_at, attempts FROM held.outbox "
            "WHERE next_send <= ? ORDER BY seq LIMIT ?",
            (now, now, limit + len(skip)),
        ).fetchall()
        return [
            OutboxEntry(seq, topic, bytes(payload), at, attempts)
            for seq, topic, payload, at, attempts in rows
            if seq not in skip
        ][:limit]

    def next_due_in(self) -> float | None:
        """Seconds until the next message becomes due (None when the outbox is empty)."""
        (when,) = self._db.execute(
            "SELECT min(next_send) FROM (SELECT next_send FROM main.outbox "
            "UNION ALL SELECT next_send FROM held.outbox)"
        ).fetchone()
        return None if when is None else max(0.0, when - self._clock())

    def mark_sent(self, seqs: Sequence[int], confirm_timeout_s: float) -> None:
        """The broker has these: wait ``confirm_timeout_s`` (doubling) for the fleet."""
        now = self._clock()
        # 1 << min(attempts, 5): the wait doubles with each attempt, up to 32x.
        update = (
            "UPDATE {s}.outbox SET attempts = attempts + 1, "
            "next_send = ? + ? * (1 << min(attempts, 5)) WHERE seq = ?"
        )
        params = [(now, confirm_timeout_s, seq) for seq in seqs]
        if self._held:
            self._db.executemany(update.format(s="held"), params)
        try:
            with self._transaction():
                self._db.executemany(update.format(s="main"), params)
        except sqlite3.Error as exc:
            if not disk_trouble(exc):
                raise
            self._not_before.update((seq, now + confirm_timeout_s) for seq in seqs)

    def confirm(self, seqs: Sequence[int]) -> int:
        """The fleet has stored these: forget them. Returns how many were still here."""
        if not seqs:
            return 0
        params = [(seq,) for seq in seqs]
        gone = 0
        if self._held:
            gone = self._db.executemany("DELETE FROM held.outbox WHERE seq = ?", params).rowcount
            self._held -= gone
        try:
            gone += self._delete_main(seqs)
        except sqlite3.Error as exc:
            if not disk_trouble(exc):
                raise
            present = {
                seq
                for (seq,) in self._db.execute(
                    f"SELECT seq FROM main.outbox WHERE seq IN ({','.join('?' * len(seqs))})",  # noqa: S608
                    list(seqs),
                )
            }
            gone += len(present - self._forgotten)
            self._forgotten |= present
        for seq in seqs:
            self._not_before.pop(seq, None)
        self.retry(now=True)  # pages were freed: held messages may fit now
        return gone

    def _delete_main(self, seqs: Sequence[int]) -> int:
        with self._transaction():
            cursor = self._db.executemany(
                "DELETE FROM main.outbox WHERE seq = ?", [(seq,) for seq in seqs]
            )
        return cursor.rowcount

    def resend_all(self) -> None:
        """Make every unconfirmed message due now (after a reconnection)."""
        self._not_before.clear()
        if self._held:
            self._db.execute("UPDATE held.outbox SET next_send = 0 WHERE next_send > 0")
        try:
            with self._transaction():
                self._db.execute("UPDATE main.outbox SET next_send = 0 WHERE next_send > 0")
        except sqlite3.Error as exc:
            if not disk_trouble(exc):
                raise
            log.warning("disk full: messages sent before the reconnection wait their turn")

    def backlog(self) -> Backlog:
        count, size, oldest = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0), min(enqueued_at) FROM "
            "(SELECT payload, enqueued_at FROM main.outbox "
            "UNION ALL SELECT payload, enqueued_at FROM held.outbox)"
        ).fetchone()
        age = 0.0 if oldest is None else max(0.0, self._clock() - oldest)
        return Backlog(int(count) - len(self._forgotten), int(size), age)

    def __len__(self) -> int:
        return self._count("main") + self._held - len(self._forgotten)

    def last_seq(self) -> int:
        """The last sequence number ever assigned (0 before the first message)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        (held,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM held.outbox").fetchone()
        return max(0 if row is None else int(row[0]), int(held))

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def next_session(self) -> int:
        """A number that grows at every broker connection, also across restarts (on a
        full disk, across connections only)."""
        self._session += 1
        try:
            with self._transaction():
                self._db.execute(
                    "INSERT INTO counters (name, value) VALUES ('session', ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = max(value + 1, excluded.value)",
                    (self._session,),
                )
                self._session = self._counter("session")
        except sqlite3.Error as exc:
            if not disk_trouble(exc):
                raise
        return self._session
