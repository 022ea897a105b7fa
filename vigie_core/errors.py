"""The shared exceptions; each program's own tree hangs under :class:`VigieError`.

::

    VigieError                    anything Vigie raises on purpose
    ├── ContractError             permanent: a topic or payload that breaks the contract
    ├── DocumentError             permanent: a configuration document that does not validate
    ├── TlsError                  permanent: a certificate, key or secret file is unusable
    ├── ReleaseError              permanent: a release that must not be published or installed
    ├── edge_agent.errors.AgentError    the agent's tree
    └── fleet.errors.FleetError         the fleet's tree

The shared errors are also ``ValueError``s: they all say "this input is wrong",
and callers that validate input may catch them as such. None is worth retrying with
the same input.
"""

from __future__ import annotations

import enum


class VigieError(Exception):
    """Base of every error Vigie raises on purpose."""


class RejectReason(enum.StrEnum):
    """Why the fleet refused a message; each reason is counted and dead-lettered
    (the ``reason`` tag of the ``dead_letter`` measurement, docs/protocol.md)."""

    OVERSIZED = "oversized"
    BAD_TOPIC = "bad_topic"
    NOT_JSON = "not_json"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    INVALID_PAYLOAD = "invalid_payload"
    AGENT_MISMATCH = "agent_mismatch"


class ContractError(VigieError, ValueError):
    """A topic or payload that does not follow the contract. Permanent: never retry it."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class DocumentError(VigieError, ValueError):
    """A configuration document (a file, or pushed settings) that does not validate.

    The message names the source, the field and the reason, one line per problem;
    ``source`` is the file (or what stands for it).
    """

    def __init__(self, message: str, *, source: str = "") -> None:
        super().__init__(message)
        self.source = source


class TlsError(VigieError, ValueError):
    """A certificate, key or password file is missing, unreadable or does not match."""


class ReleaseError(VigieError, ValueError):
    """A release that must not be installed (or a key that cannot sign one), and why,
    in one line: agents put it in their report."""
