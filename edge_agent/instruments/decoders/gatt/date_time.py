"""Date Time (0x2A08), Day Date Time (0x2A0A) and Current Time (0x2A2B), with encoders.

GATT Specification Supplement (GSS) 3.70 Date Time, 3.74 Day Date Time, 3.62 Current
Time (Exact Time 256 + Adjust Reason). Times are the device's local time, no zone.
A year, month or day of 0 is "not known": the record keeps the known parts as a
:class:`PartialTime`, and a reading so timed is timed on reception instead
(:func:`draft_time`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from edge_agent.instruments.decoders.base import PartialTime, Record
from edge_agent.instruments.decoders.gatt.bits import names
from edge_agent.instruments.decoders.gatt.reader import Reader
from edge_agent.instruments.readings import DEVICE_TIME_PARTIAL

#: GSS 3.73 Day of Week: 0 is "unknown".
WEEKDAYS: Final = (
    "unknown",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
#: GSS 3.62.2 Adjust Reason.
ADJUST_REASONS: Final = {
    0: "manual_time_update",
    1: "external_reference_time_update",
    2: "change_of_time_zone",
    3: "change_of_dst",
}


@dataclass(frozen=True, slots=True)
class DateTimeRecord(Record):
    timestamp: datetime | PartialTime
    invalid: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DayDateTimeRecord(Record):
    timestamp: datetime | PartialTime
    day_of_week: str
    invalid: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CurrentTimeRecord(Record):
    timestamp: datetime | PartialTime
    day_of_week: str
    fractions256: int
    adjust_reason: frozenset[str]
    invalid: dict[str, str] = field(default_factory=dict)


def draft_time(timestamp: datetime | PartialTime | None) -> tuple[datetime | None, frozenset[str]]:
    """A record's time as a draft takes it: ``device_time`` and what to add to ``quality``.

    A partial time is no measurement time: the reading is timed on reception, and
    says so with ``device_time_partial``.
    """
    if isinstance(timestamp, PartialTime):
        return None, frozenset({DEVICE_TIME_PARTIAL})
    return timestamp, frozenset()


def _partial(timestamp: datetime | PartialTime) -> dict[str, str]:
    return {"timestamp": "partial"} if isinstance(timestamp, PartialTime) else {}


def _day_of_week(reader: Reader) -> str:
    day = reader.uint(1, "day_of_week")
    if day >= len(WEEKDAYS):
        raise reader.error(f"day_of_week {day} outside 0..7")
    return WEEKDAYS[day]


def decode_date_time(data: bytes) -> DateTimeRecord:
    reader = Reader("2a08", data)
    timestamp = reader.date_time()
    reader.finish()
    return DateTimeRecord(timestamp, _partial(timestamp))


def decode_day_date_time(data: bytes) -> DayDateTimeRecord:
    reader = Reader("2a0a", data)
    timestamp = reader.date_time()
    day = _day_of_week(reader)
    reader.finish()
    return DayDateTimeRecord(timestamp, day, _partial(timestamp))


def decode_current_time(data: bytes) -> CurrentTimeRecord:
    reader = Reader("2a2b", data)
    timestamp = reader.date_time()
    day = _day_of_week(reader)
    fractions = reader.uint(1, "fractions256")
    reason = names(reader.uint(1, "adjust_reason"), ADJUST_REASONS, reader, "adjust_reason")
    reader.finish()
    return CurrentTimeRecord(timestamp, day, fractions, reason, _partial(timestamp))


def encode_date_time(at: datetime) -> bytes:
    """The 7-byte Date Time of ``at``'s wall-clock fields (give it in the device's zone)."""
    return at.year.to_bytes(2, "little") + bytes([at.month, at.day, at.hour, at.minute, at.second])


def encode_current_time(at: datetime, adjust_reason: frozenset[str] = frozenset()) -> bytes:
    """The 10-byte Current Time: Date Time, day of week (Monday 1), fractions of a
    second in 1/256, adjust reason (``manual_time_update``...)."""
    bits = 0
    for bit, name in ADJUST_REASONS.items():
        if name in adjust_reason:
            bits |= 1 << bit
    fractions = at.microsecond * 256 // 1_000_000
    return encode_date_time(at) + bytes([at.isoweekday(), fractions, bits])
