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

Disk budget: past ``max_bytes`` of payload, health reports are thinned first (every
other one of the oldest half goes), then the oldest readings are dropped, and events
last. What was dropped is counted, so that it can be reported.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


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


class Outbox:
    """A durable FIFO of (topic, payload) messages awaiting the fleet's confirmation.

    Blocking (SQLite, fsync): the agent calls it from one thread of its own
    (``edge_agent.runtime.recorder``), never from the event loop."""

    def __init__(
        self,
        path: Path,
        synchronous: Literal["full", "normal"] = "full",
        max_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.dropped = 0
        self._clock = clock
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per call.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                topic TEXT NOT NULL,
                payload BLOB NOT NULL,
                kind TEXT NOT NULL,
                enqueued_at REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_send REAL NOT NULL DEFAULT 0
            );
            CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_send, seq);
            CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            """
        )
        (stored,) = self._db.execute(
            "SELECT coalesce(sum(length(payload)), 0) FROM outbox"
        ).fetchone()
        self._bytes = int(stored)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def add(self, seq: int, topic: str, payload: bytes, kind: str) -> None:
        """Store one message under the sequence number it carries.

        The agent numbers messages itself (from :meth:`last_seq` at start), so that
        building one never waits for the disk; numbers only grow, and SQLite's
        AUTOINCREMENT remembers the largest ever stored, also once it is deleted.
        ``kind`` (reading, health, event) decides what the disk budget thins first.
        """
        with self._transaction():
            self._db.execute(
                "INSERT INTO outbox (seq, topic, payload, kind, enqueued_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (seq, topic, payload, kind, self._clock()),
            )
            self._bytes += len(payload)
            if self._bytes > self.max_bytes:
                self._make_room()

    def _delete(self, where: str, params: Sequence[object] = ()) -> int:
        freed = self._db.execute(
            f"DELETE FROM outbox WHERE {where} RETURNING length(payload)",  # noqa: S608
            params,
        ).fetchall()
        self._bytes -= sum(size for (size,) in freed)
        return len(freed)

    def _make_room(self) -> None:
        # Thin health reports first: every other one of the oldest half goes.
        while self._bytes > self.max_bytes:
            (health,) = self._db.execute(
                "SELECT count(*) FROM outbox WHERE kind = 'health'"
            ).fetchone()
            if health < 2:
                break
            self.dropped += self._delete(
                "seq IN (SELECT seq FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS n "
                "FROM outbox WHERE kind = 'health' ORDER BY seq LIMIT ?) WHERE n % 2 = 0)",
                (health // 2,),
            )
        # Then the oldest readings, a slice at a time; events (rare, small, and among them
        # the report of this very overflow) only when nothing else is left.
        for any_kind in (False, True):
            while self._bytes > self.max_bytes:
                dropped = self._delete(
                    "seq IN (SELECT seq FROM outbox WHERE kind = 'reading' OR ? "
                    "ORDER BY seq LIMIT 64)",
                    (any_kind,),
                )
                if not dropped:
                    break
                self.dropped += dropped

    def due(self, limit: int) -> list[OutboxEntry]:
        """The oldest ``limit`` messages that may be sent now, in sequence order."""
        rows = self._db.execute(
            "SELECT seq, topic, payload, enqueued_at, attempts FROM outbox "
            "WHERE next_send <= ? ORDER BY seq LIMIT ?",
            (self._clock(), limit),
        ).fetchall()
        return [
            OutboxEntry(seq, topic, bytes(payload), at, attempts)
            for seq, topic, payload, at, attempts in rows
        ]

    def next_due_in(self) -> float | None:
        """Seconds until the next message becomes due (None when the outbox is empty)."""
        (when,) = self._db.execute("SELECT min(next_send) FROM outbox").fetchone()
        return None if when is None else max(0.0, when - self._clock())

    def mark_sent(self, seqs: Sequence[int], confirm_timeout_s: float) -> None:
        """The broker has these: wait ``confirm_timeout_s`` (doubling) for the fleet."""
        with self._transaction():
            self._db.executemany(
                # 1 << min(attempts, 5): the wait doubles with each attempt, up to 32x.
                "UPDATE outbox SET attempts = attempts + 1, "
                "next_send = ? + ? * (1 << min(attempts, 5)) WHERE seq = ?",
                [(self._clock(), confirm_timeout_s, seq) for seq in seqs],
            )

    def confirm(self, seqs: Sequence[int]) -> int:
        """The fleet has stored these: forget them. Returns how many were still here."""
        if not seqs:
            return 0
        with self._transaction():
            return sum(self._delete("seq = ?", (seq,)) for seq in seqs)

    def resend_all(self) -> None:
        """Make every unconfirmed message due now (after a reconnection)."""
        with self._transaction():
            self._db.execute("UPDATE outbox SET next_send = 0 WHERE next_send > 0")

    def backlog(self) -> Backlog:
        count, oldest = self._db.execute("SELECT count(*), min(enqueued_at) FROM outbox").fetchone()
        age = 0.0 if oldest is None else max(0.0, self._clock() - oldest)
        return Backlog(int(count), self._bytes, age)

    def __len__(self) -> int:
        (count,) = self._db.execute("SELECT count(*) FROM outbox").fetchone()
        return int(count)

    def last_seq(self) -> int:
        """The last sequence number ever assigned (0 before the first message)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return 0 if row is None else int(row[0])

    def next_session(self) -> int:
        """A number that grows at every broker connection, also across restarts."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES ('session', 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1"
            )
            (value,) = self._db.execute(
                "SELECT value FROM counters WHERE name = 'session'"
            ).fetchone()
        return int(value)
