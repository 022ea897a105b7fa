"""A bounds-checked little-endian cursor over one characteristic value.

Every read past the end raises DecodeError naming the field, so no decoder can leak
an IndexError or struct.error; ``finish`` refuses trailing bytes that the flags did
not announce (the SIG characteristics define no padding).
"""

from __future__ import annotations

import calendar
from datetime import datetime

from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders.base import PartialTime
from edge_agent.instruments.decoders.gatt.ieee11073 import Medical, float32, sfloat


class Reader:
    def __init__(self, format_name: str, data: bytes) -> None:
        self.format_name = format_name
        self.data = data
        self.offset = 0

    def error(self, reason: str) -> DecodeError:
        return DecodeError(self.format_name, reason)

    def _take(self, size: int, field: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise self.error(
                f"{field}: needs {end} bytes, got {len(self.data)}"
                if self.offset
                else f"expected at least {size} bytes, got {len(self.data)}"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self._take(size, field), "little")

    def sint(self, size: int, field: str) -> int:
        return int.from_bytes(self._take(size, field), "little", signed=True)

    def sfloat(self, field: str) -> Medical:
        return sfloat(self.uint(2, field))

    def float32(self, field: str) -> Medical:
        return float32(self.uint(4, field))

    def date_time(self, field: str = "timestamp") -> datetime | PartialTime:
        """A 7-byte Date Time (GSS 3.70): a PartialTime when the year, month or day is
        0 ("not known")."""
        year = self.uint(2, field)
        month, day, hours, minutes, seconds = self._take(5, field)
        return date_time_value(self, year, month, day, hours, minutes, seconds)

    def rest(self) -> bytes:
        chunk = self.data[self.offset :]
        self.offset = len(self.data)
        return chunk

    def finish(self) -> None:
        extra = len(self.data) - self.offset
        if extra:
            raise self.error(f"{extra} unexpected trailing byte(s)")


def date_time_value(
    reader: Reader, year: int, month: int, day: int, hours: int, minutes: int, seconds: int
) -> datetime | PartialTime:
    """Check a Date Time's fields (GSS 3.70: year 1582..9999 or 0, month 1..12 or 0,
    day 1..31 or 0, hours 0..23, minutes and seconds 0..59; 0 is "not known" for the
    year, month and day, a value like any other for the time of day)."""
    if year and not 1582 <= year <= 9999:
        raise reader.error(f"year {year} outside 1582..9999")
    if month > 12 or day > 31 or hours > 23 or minutes > 59 or seconds > 59:
        raise reader.error(
            f"invalid date time {year:04d}-{month:02d}-{day:02d} "
            f"{hours:02d}:{minutes:02d}:{seconds:02d}"
        )
    if not (year and month and day):
        # A part is "not known": keep what is known rather than make the rest up, and
        # still refuse a day the month never has (any year, a leap one, if it is 0).
        partial = PartialTime(year or None, month or None, day or None, hours, minutes, seconds)
        if month and day > calendar.monthrange(year or 2000, month)[1]:
            raise reader.error(f"invalid date {partial.isoformat()[:10]}")
        return partial
    try:
        return datetime(year, month, day, hours, minutes, seconds)  # noqa: DTZ001 - device local time
    except ValueError as exc:  # 31 February
        raise reader.error(f"invalid date {year:04d}-{month:02d}-{day:02d}: {exc}") from None
