"""The overflow policy: which messages make way when the outbox has no room.

Health reports are thinned first (every other one of the oldest half: recent health
stays dense, and each new overflow thins the old ones again), then the oldest readings
go, then the remaining health reports, and events last (they are rare, small, and
among them is the report of this very overflow). The same policy serves the disk and
the memory that holds messages when the disk is full.

On disk, thinning frees whole pages only as SQLite merges the pages it leaves half
empty, so when health and readings are interleaved the oldest readings follow soon:
the budget is enforced on the pages, never on an estimate.
"""

from __future__ import annotations

import sqlite3
from typing import Final, Literal

Schema = Literal["main", "held"]

#: Each step's candidates, oldest first.
_STEPS: Final = (
    "SELECT seq, size FROM (SELECT seq, length(payload) + length(topic) AS size, "
    "row_number() OVER (ORDER BY seq) AS n, count(*) OVER () AS total "
    "FROM {s}.outbox WHERE kind = 'health') WHERE n % 2 = 0 AND n <= total / 2 ORDER BY seq",
    "SELECT seq, length(payload) + length(topic) FROM {s}.outbox "
    "WHERE kind = 'reading' ORDER BY seq",
    "SELECT seq, length(payload) + length(topic) FROM {s}.outbox "
    "WHERE kind = 'health' ORDER BY seq",
    "SELECT seq, length(payload) + length(topic) FROM {s}.outbox ORDER BY seq",
)


def victims(db: sqlite3.Connection, schema: Schema, amount: int) -> list[int]:
    """The messages of ``schema`` to drop, by the policy, to free ``amount`` bytes
    (all of them if they hold less)."""
    chosen: list[int] = []
    seen: set[int] = set()
    freed = 0
    for step in _STEPS:
        for seq, size in db.execute(step.format(s=schema)):
            if freed >= amount:
                return chosen
            if seq not in seen:
                seen.add(seq)
                chosen.append(seq)
                freed += size
    return chosen
