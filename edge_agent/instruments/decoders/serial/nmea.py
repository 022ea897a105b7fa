"""NMEA 0183 GGA and RMC sentences from the bus's GPS receiver (NMEA 0183 v4.11,
sections "GGA - Global Positioning System Fix Data" and "RMC - Recommended Minimum
Specific GNSS Data"). Times in NMEA are UTC, so device times here are aware.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Final

from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders.base import ReadingDraft, Record
from edge_agent.instruments.decoders.serial.text import ascii_line, number
from vigie_core.contract.data import ReadingKind

FORMAT: Final = "nmea"
_SENTENCE_RE: Final = re.compile(r"^\$([A-Z]{2})([A-Z]{3}),([^*$]*)\*([0-9A-Fa-f]{2})$")
#: GGA fix quality (NMEA 0183 v4.11): 0 means no fix.
FIX_QUALITY: Final = {
    0: "invalid",
    1: "gps",
    2: "dgps",
    3: "pps",
    4: "rtk",
    5: "float_rtk",
    6: "estimated",
    7: "manual",
    8: "simulation",
}
#: RMC mode indicator (v2.3+); N means the data are not valid.
RMC_MODES: Final = {
    "A": "autonomous",
    "D": "differential",
    "E": "estimated",
    "F": "float_rtk",
    "M": "manual",
    "N": "not_valid",
    "P": "precise",
    "R": "rtk",
    "S": "simulator",
}


@dataclass(frozen=True, slots=True)
class NmeaPosition(Record):
    talker: str
    sentence: str
    utc_time: time | None
    utc_date: date | None
    fix_valid: bool
    fix_quality: str | None
    latitude: float | None
    longitude: float | None
    altitude: float | None = None
    satellites: int | None = None
    hdop: float | None = None
    speed: float | None = None
    course: float | None = None
    mode: str | None = None
    invalid: dict[str, str] = field(default_factory=dict)

    def reading(self) -> ReadingDraft:
        values: dict[str, float | None] = {"latitude": self.latitude, "longitude": self.longitude}
        units = {"latitude": "deg", "longitude": "deg"}
        optional = {
            "altitude": (self.altitude, "m"),
            "satellites": (None if self.satellites is None else float(self.satellites), "1"),
            "hdop": (self.hdop, "1"),
            "speed": (self.speed, "[kn_i]"),
            "course": (self.course, "deg"),
        }
        for name, (value, unit) in optional.items():
            if value is not None:
                values[name], units[name] = value, unit
        device_time = None
        if self.utc_time is not None and self.utc_date is not None:
            device_time = datetime.combine(self.utc_date, self.utc_time, tzinfo=UTC)
        return ReadingDraft(
            kind=ReadingKind.POSITION,
            values=values,
            units=units,
            invalid={k: v for k, v in self.invalid.items() if k in values},
            device_time=device_time,
            quality=() if self.fix_valid else ("no_fix",),
        )


def checksum(body: str) -> int:
    """XOR of every character between ``$`` and ``*``."""
    value = 0
    for char in body:
        value ^= ord(char)
    return value


def format_nmea(body: str) -> str:
    """``$`` + body + ``*hh``: a sentence with its checksum (for simulators and tests)."""
    return f"${body}*{checksum(body):02X}"


def _error(reason: str) -> DecodeError:
    return DecodeError(FORMAT, reason)


def _utc_time(text: str) -> time | None:
    if not text:
        return None
    match = re.fullmatch(r"(\d\d)(\d\d)(\d\d)(?:\.(\d{1,3}))?", text)
    if match is None:
        raise _error(f"time {text!r} is not hhmmss[.sss]")
    hours, minutes, seconds = int(match[1]), int(match[2]), int(match[3])
    if hours > 23 or minutes > 59 or seconds > 60:
        raise _error(f"time {text!r} out of range")
    micro = int((match[4] or "0").ljust(6, "0"))
    return time(hours, minutes, min(seconds, 59), micro)  # a leap second shows as :59


def _utc_date(text: str) -> date | None:
    if not text:
        return None
    match = re.fullmatch(r"(\d\d)(\d\d)(\d\d)", text)
    if match is None:
        raise _error(f"date {text!r} is not ddmmyy")
    # Two-digit years: receivers of this century; 80-99 are the 1980s-90s of old logs.
    year = int(match[3]) + (1900 if int(match[3]) >= 80 else 2000)
    try:
        return date(year, int(match[2]), int(match[1]))
    except ValueError:
        raise _error(f"date {text!r} does not exist") from None


def _coordinate(value: str, hemisphere: str, degree_digits: int, axis: str) -> float | None:
    """ddmm.mmmm (latitude) or dddmm.mmmm (longitude) and N/S/E/W to signed degrees."""
    if not value and not hemisphere:
        return None
    signs = {"latitude": {"N": 1, "S": -1}, "longitude": {"E": 1, "W": -1}}[axis]
    if hemisphere not in signs:
        raise _error(f"{axis}: hemisphere {hemisphere!r}")
    if not re.fullmatch(rf"\d{{{degree_digits}}}\d\d(\.\d+)?", value):
        raise _error(f"{axis}: {value!r} is not {'d' * degree_digits}mm.mmmm")
    degrees = int(value[:degree_digits])
    minutes = number(FORMAT, axis, value[degree_digits:])
    limit = 90 if axis == "latitude" else 180
    if minutes >= 60 or degrees + minutes / 60 > limit:
        raise _error(f"{axis}: {value!r} out of range")
    return round(signs[hemisphere] * (degrees + minutes / 60), 7)


def _optional_number(field_name: str, text: str) -> float | None:
    return number(FORMAT, field_name, text) if text else None


def decode_nmea(frame: bytes) -> NmeaPosition:
    line = ascii_line(FORMAT, frame).strip()
    match = _SENTENCE_RE.match(line)
    if match is None:
        raise _error("not an NMEA sentence ($ttsss,...*hh)")
    talker, sentence, fields_text, given = match[1], match[2], match[3], int(match[4], 16)
    expected = checksum(f"{talker}{sentence},{fields_text}")
    if given != expected:
        raise _error(f"checksum {given:02X}, expected {expected:02X}")
    fields = fields_text.split(",")
    if sentence == "GGA":
        return _gga(talker, fields)
    if sentence == "RMC":
        return _rmc(talker, fields)
    raise _error(f"unsupported sentence {sentence}")


def _position(fields: list[str], at: int) -> tuple[float | None, float | None]:
    return (
        _coordinate(fields[at], fields[at + 1], 2, "latitude"),
        _coordinate(fields[at + 2], fields[at + 3], 3, "longitude"),
    )


def _no_fix_reasons(valid: bool, latitude: float | None, longitude: float | None) -> dict[str, str]:
    reasons = {}
    for name, value in (("latitude", latitude), ("longitude", longitude)):
        if not valid or value is None:
            reasons[name] = "no_fix" if not valid else "missing"
    return reasons


def _gga(talker: str, fields: list[str]) -> NmeaPosition:
    if len(fields) < 14:
        raise _error(f"GGA has {len(fields)} fields, expected 14")
    latitude, longitude = _position(fields, 1)
    quality_text = fields[5]
    if quality_text not in {str(code) for code in FIX_QUALITY}:
        raise _error(f"GGA fix quality {quality_text!r}")
    quality = FIX_QUALITY[int(quality_text)]
    valid = quality != "invalid" and latitude is not None and longitude is not None
    satellites = fields[6]
    if satellites and not satellites.isdigit():
        raise _error(f"GGA satellites {satellites!r}")
    if fields[8] and fields[9] != "M":
        raise _error(f"GGA altitude unit {fields[9]!r}, expected M")
    return NmeaPosition(
        talker=talker,
        sentence="GGA",
        utc_time=_utc_time(fields[0]),
        utc_date=None,  # GGA carries no date: no device time
        fix_valid=valid,
        fix_quality=quality,
        latitude=latitude if valid else None,
        longitude=longitude if valid else None,
        altitude=_optional_number("altitude", fields[8]) if valid else None,
        satellites=int(satellites) if satellites else None,
        hdop=_optional_number("hdop", fields[7]) if valid else None,
        invalid=_no_fix_reasons(valid, latitude, longitude),
    )


def _rmc(talker: str, fields: list[str]) -> NmeaPosition:
    if len(fields) < 11:
        raise _error(f"RMC has {len(fields)} fields, expected at least 11")
    status = fields[1]
    if status not in ("A", "V"):
        raise _error(f"RMC status {status!r}")
    mode = fields[11] if len(fields) > 11 and fields[11] else None
    if mode is not None and mode not in RMC_MODES:
        raise _error(f"RMC mode {mode!r}")
    latitude, longitude = _position(fields, 2)
    valid = status == "A" and mode != "N" and latitude is not None and longitude is not None
    return NmeaPosition(
        talker=talker,
        sentence="RMC",
        utc_time=_utc_time(fields[0]),
        utc_date=_utc_date(fields[8]),
        fix_valid=valid,
        fix_quality=None,
        latitude=latitude if valid else None,
        longitude=longitude if valid else None,
        speed=_optional_number("speed", fields[6]) if valid else None,
        course=_optional_number("course", fields[7]) if valid else None,
        mode=None if mode is None else RMC_MODES[mode],
        invalid=_no_fix_reasons(valid, latitude, longitude),
    )
