"""The durable outbox: every data message is on disk before it is sent.

A message is deleted only after the broker's PUBACK, so a crash, a power cut or a lost
connection resends it instead of losing it; the fleet's writes are idempotent, so a
resend overwrites itself. The sequence number is the row's AUTOINCREMENT key: it is
assigned in the same transaction that stores the message and is never reused, even
after the rows before it are deleted.

SQLite in WAL mode: one file, crash-safe, and readers never block the writer.
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


class Outbox:
    """A FIFO of (topic, payload) that survives SIGKILL and power loss."""

    def __init__(self, path: Path, synchronous: Literal["full", "normal"] = "full") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
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
                enqueued_at REAL NOT NULL
            );
            CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            """
        )

    def close(self) -> None:
        self._db.close()

    def enqueue(self, build: Callable[[int], tuple[str, bytes]]) -> int:
        """Store the message ``build(seq)`` returns for the next sequence number.

        The payload embeds its own sequence number, so the row is inserted first to
        draw the number, then filled in, inside one transaction.
        """
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO outbox (topic, payload, enqueued_at) VALUES ('', x'', ?)",
                (time.time(),),
            )
            seq = cursor.lastrowid
            assert seq is not None  # noqa: S101 - an INSERT always sets it
            topic, payload = build(seq)
            self._db.execute(
                "UPDATE outbox SET topic = ?, payload = ? WHERE seq = ?", (topic, payload, seq)
            )
        return seq

    def peek(self, limit: int) -> list[OutboxEntry]:
        """The oldest ``limit`` messages, in sequence order."""
        rows = self._db.execute(
            "SELECT seq, topic, payload FROM outbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [OutboxEntry(seq, topic, bytes(payload)) for seq, topic, payload in rows]

    def remove(self, seqs: Sequence[int]) -> None:
        """Forget messages the broker has acknowledged."""
        if not seqs:
            return
        with self._transaction():
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in seqs])

    def __len__(self) -> int:
        (count,) = self._db.execute("SELECT count(*) FROM outbox").fetchone()
        return int(count)

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

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
