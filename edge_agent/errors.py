"""The agent's exceptions.

::

    vigie_core.errors.VigieError
    ├── ContractError, DocumentError, TlsError, ReleaseError   shared (vigie_core.errors)
    └── AgentError                  anything the agent raises on purpose
        ├── DecodeError             permanent: bytes or text the instrument's format refuses
        ├── BleError                a BLE operation failed; transient unless ``needs_human``
        ├── ConfigRejected          permanent: a pushed configuration this agent cannot run
        ├── DownloadError           transient: a release could not be fetched (retried later)
        ├── StorageFull             transient: no room on disk for a message now (the outbox
        │                           keeps it in memory and tries again)
        └── StorageBroken           permanent: the outbox's file is not a database (or corrupt)

Each carries what an operator needs to act: the format and the reason, the device's
address, the setting at fault. bleak's, pyserial's and httpx's own exceptions are
translated where they are caught, in the driver or the downloader.
"""

from __future__ import annotations

from vigie_core.errors import VigieError


class AgentError(VigieError):
    """Base of every error the agent raises on purpose."""


class DecodeError(AgentError, ValueError):
    """Bytes or text that do not follow the format: wrong length, reserved bits set,
    bad checksum, a value out of its defined range.

    ``str(error)`` is a one-line reason fit for a log or the CLI.
    """

    def __init__(self, format_name: str, reason: str) -> None:
        super().__init__(f"{format_name}: {reason}")
        self.format_name = format_name
        self.reason = reason


class BleError(AgentError):
    """A BLE operation failed. ``needs_human``: retrying will not help (pairing
    refused, the device lacks a characteristic the profile requires)."""

    def __init__(self, message: str, *, address: str | None = None, needs_human: bool = False):
        super().__init__(message)
        self.address = address
        self.needs_human = needs_human


class ConfigRejected(AgentError, ValueError):  # noqa: N818 - reads better than ...Error
    """A desired configuration this agent cannot run: the setting and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class DownloadError(AgentError, RuntimeError):
    """A release could not be fetched (after the retries), or the server misbehaved."""


class StorageFull(AgentError, OSError):  # noqa: N818 - a state, like ConfigRejected
    """The outbox has no room on disk for a message now: its budget, the disk's last
    bytes (``outbox.min_free_bytes``) or SQLITE_FULL. The outbox catches it itself."""


class StorageBroken(AgentError):  # noqa: N818 - a state, like StorageFull
    """The outbox's file is not an SQLite database, or is corrupt. Permanent: starting
    afresh would number messages from 1 again, so a person moves it aside."""
