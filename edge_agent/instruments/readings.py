"""From a decoded record to a contract Reading: the device's time, checked. Pure.

Instrument clocks are often unset (a blood-pressure monitor out of its box says
2000-01-01) or drift by minutes. A reading keeps the agent's receive time always,
and the device's time whenever it sent one; it is *measured at* the device's time
only when that time is plausible.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from edge_agent.instruments.decoders.base import ReadingDraft
from vigie_core.contract.data import EARLIEST_VALID_TIME, DeviceSource, Reading
from vigie_core.contract.model import storable

#: A device time this far ahead of the agent's clock is wrong, not early.
MAX_DEVICE_AHEAD: Final = timedelta(minutes=5)
#: A *live* measurement (sent as it is taken) older than this by the device's clock
#: means the clock is wrong; stored records (a glucose meter's memory, a blood-pressure
#: monitor's backlog) may legitimately be days old and are exempt.
MAX_LIVE_LAG: Final = timedelta(hours=1)

DEVICE_CLOCK_INVALID: Final = "device_clock_invalid"
#: The device sent a time with parts unknown (a date of 0000-00-00, a time of day
#: without a date): the known parts stay in the decoded record (``edge-agent decode``),
#: the reading is timed on reception.
DEVICE_TIME_PARTIAL: Final = "device_time_partial"


@dataclass(frozen=True, slots=True)
class ReadingOrigin:
    """Where a reading comes from, besides the draft itself."""

    agent_id: str
    device_id: str
    #: None for simulated instruments without a profile.
    source: DeviceSource | None
    #: The site's time zone: device clocks show local time without a zone.
    timezone: ZoneInfo
    #: The consultation in progress (opaque id from the booth's software), if any.
    consultation_id: str | None = None


def device_time_utc(local: datetime, zone: ZoneInfo) -> datetime | None:
    """A device's time as an aware UTC time; None if it cannot exist, or cannot be
    stored (the contract refuses times outside 1677-2262: the reading keeps its values,
    flagged ``device_clock_invalid``, and is measured at its receive time).

    Naive times are the device's local time, in the site's zone; aware ones (NMEA)
    carry their own zone.
    """
    try:
        if local.tzinfo is None:
            local = local.replace(tzinfo=zone)
        utc = local.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    return utc if storable(utc) else None


def measurement_time(
    device_time: datetime | None, received_at: datetime, *, stored: bool
) -> tuple[datetime, bool]:
    """The time a reading is measured at, and whether the device's time was refused.

    ``device_time`` is aware (UTC); ``stored`` says the device sent it from memory.
    """
    if device_time is None:
        return received_at, False
    too_early = device_time < EARLIEST_VALID_TIME
    ahead = device_time > received_at + MAX_DEVICE_AHEAD
    stale = not stored and device_time < received_at - MAX_LIVE_LAG
    if too_early or ahead or stale:
        return received_at, True
    return device_time, False


def build_reading(
    draft: ReadingDraft,
    origin: ReadingOrigin,
    seq: int,
    received_at: datetime,
    *,
    stored: bool = False,
) -> Reading:
    """The contract Reading for ``draft``; raises pydantic's ValidationError if the
    draft breaks the contract (a unit the contract does not know)."""
    device_time = (
        None if draft.device_time is None else device_time_utc(draft.device_time, origin.timezone)
    )
    measured_at, refused = measurement_time(device_time, received_at, stored=stored)
    quality = list(draft.quality)
    if refused or (draft.device_time is not None and device_time is None):
        quality.append(DEVICE_CLOCK_INVALID)
    return Reading(
        agent_id=origin.agent_id,
        seq=seq,
        measured_at=measured_at,
        kind=draft.kind,
        device=origin.device_id,
        values=dict(draft.values),
        units=dict(draft.units),
        invalid=dict(draft.invalid),
        received_at=received_at,
        device_time=device_time,
        source=origin.source,
        quality=sorted(set(quality)),
        context=dict(draft.context),
        consultation_id=origin.consultation_id,
    )
