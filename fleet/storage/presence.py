"""Who is online, from births and Last Wills. Pure.

Presence comes only from the agent's own state messages, never from traffic: a
keep-alive is not a sign of life an operator can rely on. Several fleet instances may
record the same agent's states in any order, so records are ordered by the agent's
``session`` number (it grows at every connection) and never by arrival time: a late
Last Will from an earlier session cannot mark a reconnected agent offline. Within one
session, "offline" is final: an agent goes online once per session.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from vigie_core.contract.presence import OpeningHours


class AgentStatus(enum.StrEnum):
    """What an operator sees for an agent."""

    ONLINE = "online"
    OFFLINE = "offline"
    #: Offline outside its site's opening hours: expected, not a fault.
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class PresenceRecord:
    """One stored state message of one agent."""

    online: bool
    session: int
    received_at: datetime
    #: The birth's details (site, kind, version, devices, opening hours), when present.
    birth: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Presence:
    """An agent's current state, with the details of its latest birth."""

    online: bool
    session: int
    changed_at: datetime
    birth: dict[str, str] | None


def current_presence(records: Iterable[PresenceRecord]) -> Presence | None:
    """Fold an agent's state records into its current presence (None if there are none)."""
    best: PresenceRecord | None = None
    latest_birth: PresenceRecord | None = None
    for record in records:
        if record.birth is not None and (
            latest_birth is None or record.session > latest_birth.session
        ):
            latest_birth = record
        if best is None or (record.session, not record.online) > (best.session, not best.online):
            best = record
    if best is None:
        return None
    return Presence(
        online=best.online,
        session=best.session,
        changed_at=best.received_at,
        birth=latest_birth.birth if latest_birth is not None else None,
    )


def agent_status(online: bool, hours: OpeningHours | None, now: datetime) -> AgentStatus:
    """Online, offline, or closed (offline while its site is closed)."""
    if online:
        return AgentStatus.ONLINE
    if hours is not None and not hours.is_open(now):
        return AgentStatus.CLOSED
    return AgentStatus.OFFLINE
