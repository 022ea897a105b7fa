"""Presence: who an agent is and whether it is connected (birth and Last Will), and
the opening hours that decide whether an offline booth is down or just closed."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, StringConstraints, field_validator, model_validator

from vigie_core.contract.data import ReadingKind
from vigie_core.contract.identifiers import AgentKind, Identifier
from vigie_core.contract.model import (
    SCHEMA_VERSION,
    ContractModel,
    Count,
    SchemaVersion,
    UtcDatetime,
)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: Final[tuple[Weekday, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE_RE: Final = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")


class OpeningHours(ContractModel):
    """A site's weekly opening hours in its own time zone.

    ``week`` maps a weekday to ranges such as ``"08:30-16:45"``; a day that is absent
    is closed. An empty week means "always open" is *not* implied: a site with no
    hours is always closed, so an offline agent there shows as ``closed``.
    """

    timezone: str = "Europe/Paris"
    week: dict[Weekday, list[str]] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("week")
    @classmethod
    def _valid_ranges(cls, value: dict[Weekday, list[str]]) -> dict[Weekday, list[str]]:
        for day, ranges in value.items():
            for text in ranges:
                match = _RANGE_RE.match(text)
                if match is None:
                    raise ValueError(f"{day}: {text!r} is not HH:MM-HH:MM")
                start = int(match[1]) * 60 + int(match[2])
                end = int(match[3]) * 60 + int(match[4])
                if not start < end <= 24 * 60:
                    raise ValueError(f"{day}: {text!r} ends before it starts")
        return value

    @classmethod
    def always(cls, timezone: str = "Europe/Paris") -> OpeningHours:
        """Open around the clock (hospitals, test fleets)."""
        return cls(timezone=timezone, week={day: ["00:00-24:00"] for day in WEEKDAYS})

    def is_open(self, at: datetime) -> bool:
        """Whether the site is open at the aware instant ``at``."""
        local = at.astimezone(ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        for text in self.week.get(WEEKDAYS[local.weekday()], []):
            start_text, end_text = text.split("-")
            if _minutes(start_text) <= minute < _minutes(end_text):
                return True
        return False


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class DeviceInfo(ContractModel):
    """One instrument the agent is configured to read."""

    id: Identifier
    kind: ReadingKind
    model: Annotated[str, StringConstraints(max_length=100)] = "simulated"


class Birth(ContractModel):
    """What an agent says about itself when it connects."""

    agent_version: Annotated[str, StringConstraints(max_length=40)]
    site_id: Identifier
    site_name: Annotated[str, StringConstraints(max_length=200)]
    kind: AgentKind
    opening_hours: OpeningHours
    devices: list[DeviceInfo] = Field(max_length=64)
    #: Free labels the fleet selects agents by (``fleet config push --target tag:...``).
    tags: list[Identifier] = Field(default_factory=list, max_length=16)


class AgentState(ContractModel):
    """Retained presence: a birth (``online``) or the Last Will (``online`` false).

    ``session`` increases at every connection of the agent, so a late Last Will from
    an earlier connection can be recognised and ignored.
    """

    schema_version: SchemaVersion = SCHEMA_VERSION
    agent_id: Identifier
    online: bool
    session: Count
    since: UtcDatetime | None = None
    birth: Birth | None = None

    @model_validator(mode="after")
    def _birth_when_online(self) -> AgentState:
        if self.online and self.birth is None:
            raise ValueError("an online state must carry the birth details")
        return self


class InstanceClaim(ContractModel):
    """Which process holds a fleet instance's identity (retained, on the instance's own
    topic): a claim by another process after this one's means it took the session over
    (``fleet.link.InstanceGuard``). Fleet-internal: no agent sees it."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    #: A random id the process draws at start.
    instance: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    since: UtcDatetime
