"""The outbox's SQLite database, opened whatever the state of the disk.

Two tables of one shape: ``main.outbox`` in the file, and ``held.outbox``, an attached
in-memory database for messages the disk has no room for. ``counters`` keeps the
session number and the count of dropped messages.

Opening never fails for want of room: the reserve is given back and the open tried
again, then the database is opened in exclusive mode (its WAL index in this process's
memory: no ``-shm`` file to create), and only when even that fails (a new file on a
disk without a byte left) is the outbox opened in memory, to be moved to the file
once it can be (``Outbox.retry``).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal

from edge_agent.errors import StorageBroken
from edge_agent.storage.disk import disk_trouble

log = logging.getLogger(__name__)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS {s}.outbox (
    seq INTEGER PRIMARY KEY {autoincrement},
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    kind TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_send REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS {s}.outbox_due ON outbox (next_send, seq);
"""
_COUNTERS: Final = (
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
)
#: Every column, in the order rows are copied between the two tables.
COLUMNS: Final = "seq, topic, payload, kind, enqueued_at, attempts, next_send"
#: ``{s}``: ``main`` or ``held``.
INSERT: Final = (
    "INSERT INTO {s}.outbox (seq, topic, payload, kind, enqueued_at, attempts, next_send) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def open_database(
    path: Path,
    synchronous: Literal["full", "normal"],
    wal_bytes: int,
    give_back_reserve: Callable[[], None],
) -> tuple[sqlite3.Connection, bool]:
    """The outbox's database, however full the disk: (connection, durable)."""
    for give_back, exclusive in ((False, False), (True, False), (True, True)):
        if give_back:
            give_back_reserve()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return _connect(str(path), synchronous, wal_bytes, exclusive), True
        except OSError as exc:  # the folder itself could not be made
            log.error("cannot create %s: %s", path.parent, exc.strerror)  # noqa: TRY400
        except sqlite3.Error as exc:
            if not disk_trouble(exc):
                raise StorageBroken(
                    f"{path}: {exc}: not a usable outbox (move it aside to start afresh)"
                ) from exc
            log.error("cannot open %s (%s)", path, exc)  # noqa: TRY400 - the reason is enough
    log.error("no room to open %s: messages are kept in memory until there is", path)
    return _connect(":memory:", synchronous, wal_bytes, exclusive=False), False


def _connect(
    where: str, synchronous: Literal["full", "normal"], wal_bytes: int, exclusive: bool
) -> sqlite3.Connection:
    # isolation_level=None: the outbox issues BEGIN/COMMIT itself, one transaction a call.
    db = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
    try:
        if exclusive:  # no -shm file: the WAL index lives in this process's memory
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        # The WAL starts over once it holds this much, and is cut back to it.
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        db.execute(f"PRAGMA wal_autocheckpoint={max(1, wal_bytes // page_size)}")
        db.execute(f"PRAGMA journal_size_limit={wal_bytes}")
        db.executescript(_SCHEMA.format(s="main", autoincrement="AUTOINCREMENT"))
        db.execute(_COUNTERS)
        db.execute("ATTACH DATABASE ':memory:' AS held")
        db.executescript(_SCHEMA.format(s="held", autoincrement=""))
    except BaseException:
        db.close()
        raise
    return db
