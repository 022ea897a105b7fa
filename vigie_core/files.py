"""Writing a file so that a crash or a power cut leaves either the old content or the
new, never half of it: a temporary file beside it, synced, renamed over it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``; the file has ``mode`` from its first byte (a key
    written 0600 is never readable by others, not even for an instant)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)  # noqa: PTH101 - the umask may have narrowed it
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_dir(path.parent)


def write_private(path: Path, data: bytes) -> None:
    """A secret: readable by its owner only."""
    write_atomically(path, data, 0o600)


def write_public(path: Path, data: bytes) -> None:
    write_atomically(path, data, 0o644)


def sync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
