"""The fleet's durable spill: where batches wait while InfluxDB is unreachable.

Without a spill the fleet simply holds its MQTT acknowledgements and the broker keeps
the messages; that is enough for short outages but fills the broker's queues in a
long one. With a spill, a batch InfluxDB cannot take is written here (line protocol,
SQLite, ``synchronous=FULL``): it is then as safe as in InfluxDB, so the fleet
acknowledges it and confirms it to its agents, and drains the spill, oldest first,
once InfluxDB answers again. Writes are idempotent, so the order does not matter.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path


class Spill:
    """A durable FIFO of line-protocol bodies, with a size budget."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # the ingest writer and the drainer share it
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spill (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "body BLOB NOT NULL)"
        )
        (size,) = self._db.execute("SELECT coalesce(sum(length(body)), 0) FROM spill").fetchone()
        self._bytes = int(size)

    def put(self, body: bytes) -> bool:
        """Keep ``body``; False when the budget is spent (the caller must hold on to it)."""
        with self._lock:
            if self._bytes + len(body) > self.max_bytes:
                return False
            self._db.execute("INSERT INTO spill (body) VALUES (?)", (body,))
            self._bytes += len(body)
            return True

    @contextlib.contextmanager
    def oldest(self) -> Iterator[bytes | None]:
        """The oldest body, removed only if the ``with`` block completes."""
        with self._lock:
            row = self._db.execute("SELECT id, body FROM spill ORDER BY id LIMIT 1").fetchone()
        if row is None:
            yield None
            return
        yield bytes(row[1])
        with self._lock:
            self._db.execute("DELETE FROM spill WHERE id = ?", (row[0],))
            self._bytes -= len(row[1])

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM spill").fetchone()
        return int(count)

    @property
    def bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        with self._lock:
            self._db.close()
