"""What the file system says, and the outbox's reserve file.

The reserve is room kept aside that the outbox can give back to the file system the
moment SQLite reports the disk full (another program filled it): deleting rows,
checkpointing the WAL and even opening the database (its WAL index is a 32 KiB file)
need room themselves. It is a real allocation (``posix_fallocate``), not a sparse
file, so that deleting it frees what it says.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

#: SQLite's primary result codes for "the disk is full" and "an I/O error" (an
#: ENOSPC while the WAL index is created reads as SQLITE_IOERR_SHMSIZE).
_SQLITE_FULL: Final = 13
_SQLITE_IOERR: Final = 10


def disk_trouble(exc: sqlite3.Error) -> bool:
    """SQLite could not write for want of room (or of a working disk)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_FULL, _SQLITE_IOERR)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def file_system_size(path: Path) -> int:
    """The size of the file system ``path`` is (or will be) on; 0 if unknown."""
    for folder in (path, *path.parents):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(folder).total
    return 0


def disk_free(path: Path) -> int:
    """Bytes free for this process where ``path`` is; 0 if it cannot be told."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def _allocate(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.write(fd, bytes(size))  # a file system without fallocate
        os.fsync(fd)


class Reserve:
    """A file of ``size`` bytes beside the outbox, given back when the disk is full and
    taken again once the disk has room for it beyond its last ``min_free_bytes``."""

    def __init__(
        self, path: Path, size: int, min_free_bytes: int, free: Callable[[Path], int]
    ) -> None:
        self.path = path
        self.size = size
        self.min_free_bytes = min_free_bytes
        self._free = free
        self._held = path.exists()  # only this object makes and removes it

    @property
    def held(self) -> bool:
        return self._held

    def take(self) -> None:
        if self.held or self._free(self.path.parent) - self.size < self.min_free_bytes:
            return
        try:
            with self.path.open("wb") as file:
                _allocate(file.fileno(), self.size)
        except OSError:
            self.path.unlink(missing_ok=True)
        else:
            self._held = True

    def give_back(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self._held = False
            log.warning("disk full: gave back the outbox's reserve of %d bytes", self.size)
