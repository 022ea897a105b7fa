"""How much disk the outbox may take, and how much it must give back before a write.

Pure arithmetic over what the outbox measures (``Outbox.usage``), so that the rules
can be read, and tested, without a file system:

- the **budget** (``outbox.max_bytes``) bounds what the outbox really occupies: the
  SQLite file's used pages, its WAL, its WAL index, any rollback journal, and the
  reserve file; pages freed by deleted rows are not counted (SQLite reuses them);
- the **disk's last bytes** (``outbox.min_free_bytes``) are never taken: when the file
  system is that short, a new message must fit in pages the outbox already owns, so
  older messages make way for it (by the overflow policy);
- a **reserve file** keeps a little room that the outbox can give back to the file
  system at once, when SQLite reports the disk full anyway (another program filled
  it): deleting rows, checkpointing the WAL and even opening the database (its WAL
  index is a 32 KiB file) need room themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

KIB: Final = 1024
MIB: Final = 1024 * KIB

#: The smallest budget that leaves room for messages once the fixed parts are paid
#: (WAL index 32 KiB, reserve 128 KiB, WAL 64 KiB, the schema's pages).
MIN_BUDGET_BYTES: Final = 1 * MIB

#: What a row costs beyond its topic and payload (record header, index entry): an
#: estimate; the budget is enforced on the pages SQLite reports, not on estimates.
ROW_OVERHEAD_BYTES: Final = 64


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


@dataclass(frozen=True, slots=True)
class Budget:
    """The outbox's share of the disk, split among its parts."""

    max_bytes: int

    @property
    def reserve_bytes(self) -> int:
        """The reserve file: room to give back when the disk is full."""
        return _clamp(self.max_bytes // 32, 128 * KIB, 4 * MIB)

    @property
    def wal_bytes(self) -> int:
        """The WAL's size between checkpoints (SQLite's ``wal_autocheckpoint``)."""
        return _clamp(self.max_bytes // 16, 64 * KIB, 4 * MIB)

    @property
    def slack_bytes(self) -> int:
        """Freed beyond what one write needs, so that the next writes find room
        without another round of deletions."""
        return _clamp(self.max_bytes // 50, 16 * KIB, 1 * MIB)


@dataclass(frozen=True, slots=True)
class Usage:
    """What the outbox occupies and what the file system has left."""

    #: Bytes of the database's pages in use (page size times used pages).
    used_pages_bytes: int
    #: Bytes of pages freed by deleted rows, that new rows will reuse.
    free_pages_bytes: int
    #: The WAL, its index, a rollback journal and the reserve file, as on disk.
    side_files_bytes: int
    wal_bytes: int
    #: Free on the file system, for this process.
    disk_free_bytes: int

    @property
    def occupied_bytes(self) -> int:
        """What counts against the budget."""
        return self.used_pages_bytes + self.side_files_bytes


def deficit(usage: Usage, need: int, budget: Budget, min_free_bytes: int) -> int:
    """Bytes of old messages to delete before a write of ``need`` bytes (0: none).

    Over the budget, the excess. On a file system with less than ``min_free_bytes``
    left once the files have grown (the new row, and the WAL up to its size between
    checkpoints), the row must fit in freed pages: what is missing of them.
    """
    over = usage.occupied_bytes + need - budget.max_bytes
    growth = need + max(0, budget.wal_bytes - usage.wal_bytes)
    if usage.disk_free_bytes - growth < min_free_bytes:
        over = max(over, need - usage.free_pages_bytes)
    return max(0, over)


def headroom(usage: Usage, budget: Budget, min_free_bytes: int) -> int:
    """Bytes that may still be written with no deficit (the room :func:`deficit` sees)."""
    wal_growth = max(0, budget.wal_bytes - usage.wal_bytes)
    on_disk = max(usage.disk_free_bytes - wal_growth - min_free_bytes, usage.free_pages_bytes)
    return min(budget.max_bytes - usage.occupied_bytes, on_disk)
