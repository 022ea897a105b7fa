"""Tanita body-composition analysers and scales: the record sent to a PC after each
measurement.

Manuals followed:

- Tanita SC-240 instruction manual, "Connection with a personal computer", "(2) Output
  data items": the kg/cm mode table and its output sample (the sample is a test vector);
- Tanita SC-330 and BC-420MA instruction manuals, "Connection with a personal computer",
  "Transmit data" (same items, plus ``ID``, ``Da``, ``TI``; terminator CR LF);
- Tanita MC-980MA "Output data format" and MC-780 (same structure, more items);
- Tanita WB-3000 instruction manual, "Output data" (kg mode ``Wk``/``Hm``, lb mode
  ``Wp``/``Hf``; control data reserved for expansion, to be ignored; "an irrelevant
  signal approximately 0.1 second after data output", to be ignored).

The record is comma-separated pairs ``key,value`` from ``{0,16`` (control data) to
``CS,hh``, then CR LF, with no closing brace::

    {0,16,~0,1,~1,1,~2,1,MO,"SC-240",SN,"00000002",...,Wk,82.7,...,ZF,369.4,CS,FD

Strings are in double quotes. ``hh`` is the sum of the bytes from ``{`` through the
comma before ``CS``, modulo 256, as two uppercase hex digits; it is checked on the bytes
as received. The manuals typeset a space after each comma (devices send none): such
spaces are tolerated, and counted in the sum like any byte received. A few bytes before
``{`` (the WB-3000's stray signal, which the line framer joins to the next record) are
skipped; the checksum covers the record from ``{`` on.

The record also carries who was measured (ID, gender, age, date of birth, body type):
privacy by design, only the documented body measurements below are kept; every other
key is dropped unread, personal ones without even their name, and no refusal quotes a
value the record carries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Final

from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders.base import ReadingDraft, Record
from edge_agent.instruments.decoders.serial.text import ascii_line, number
from edge_agent.instruments.readings import DEVICE_CLOCK_INVALID, DEVICE_TIME_PARTIAL
from vigie_core.contract.data import ReadingKind

FORMAT: Final = "tanita"
#: Tanita key -> (reading field, contract unit), in order of preference: a field sent in
#: two units (the BMR in kJ and kcal) is read from the first key here.
MEASUREMENTS: Final = {
    "Wk": ("weight", "kg"),
    "Wp": ("weight", "[lb_av]"),
    "Hm": ("height", "cm"),
    "MI": ("bmi", "kg/m2"),
    "FW": ("body_fat_percentage", "%"),
    "fW": ("fat_mass", "kg"),
    "MW": ("fat_free_mass", "kg"),
    "wW": ("total_body_water", "kg"),
    "rb": ("basal_metabolic_rate", "kJ"),
    "rB": ("basal_metabolic_rate", "kcal"),
    "ZF": ("impedance", "Ohm"),
}
#: Documented body measurements the contract has no field for (or the second unit of
#: one): kept in the record, which ``edge-agent decode`` shows, not in the reading.
RESULTS: Final = {
    "rB": "basal_metabolic_rate_kcal",
    "Wp": "weight_lb",
    "mW": "muscle_mass_kg",
    "bW": "bone_mass_kg",
    "ww": "total_body_water_percentage",
    "IF": "visceral_fat_rating",
    "Pt": "preset_tare_kg",
}
#: Keys that identify or describe the person: dropped without a trace.
PERSONAL: Final = frozenset({"ID", "GE", "AG", "DB", "Bt", "NA"})
#: Control data, "for expansion" (WB-3000 manual): ignored whatever their value.
CONTROL: Final = frozenset({"{0", "~0", "~1", "~2"})
#: Bytes tolerated before ``{``: the WB-3000's stray signal after each record.
MAX_LEADING_BYTES: Final = 8
_KEY_RE: Final = re.compile(r"[{~]?[A-Za-z0-9]{1,3}")
_CHECKSUM_RE: Final = re.compile(r", *CS, *([^ ,]*)$")
_DATE_RE: Final = re.compile(r"(\d{2})/(\d{2})/(\d{4})")
_TIME_RE: Final = re.compile(r"(\d{2}):(\d{2})")


@dataclass(frozen=True, slots=True)
class TanitaRecord(Record):
    model: str | None
    serial_number: str | None
    timestamp: datetime | None
    measurements: dict[str, float]
    units: dict[str, str]
    #: Other documented measurements, by name (``muscle_mass_kg``).
    results: dict[str, float] = field(default_factory=dict)
    #: Names of the keys dropped unread (never personal ones, never values).
    ignored: tuple[str, ...] = ()
    #: ``device_time_partial`` (a date or a time missing) or ``device_clock_invalid``
    #: (an impossible date: an unset clock): the reading is then timed on reception.
    clock_quality: tuple[str, ...] = ()

    def reading(self) -> ReadingDraft:
        return ReadingDraft(
            kind=ReadingKind.BODY_COMPOSITION,
            values=dict(self.measurements),
            units=dict(self.units),
            device_time=self.timestamp,
            quality=self.clock_quality,
        )


def tanita_checksum(data: bytes) -> str:
    """The sum of ``data`` modulo 256 in two uppercase hex digits."""
    return f"{sum(data) & 0xFF:02X}"


def format_tanita_record(pairs: Sequence[tuple[str, str]]) -> bytes:
    """A record as an analyser sends it, control data first, checksum and CR LF last
    (for simulators and tests); string values are given with their quotes."""
    body = "{0,16,~0,1,~1,1,~2,1," + "".join(f"{key},{value}," for key, value in pairs)
    return f"{body}CS,{tanita_checksum(body.encode('ascii'))}\r\n".encode("ascii")


def _error(reason: str) -> DecodeError:
    return DecodeError(FORMAT, reason)


def _checked_body(frame: bytes) -> str:
    """The record from ``{`` through the comma before ``CS``, its checksum verified."""
    start = frame.find(b"{")
    if start < 0:
        raise _error("no '{': not a Tanita record {0,16,...,CS,hh")
    if start > MAX_LEADING_BYTES:
        raise _error(f"{start} bytes before the record's '{{'")
    line = ascii_line(FORMAT, frame[start:]).rstrip(" ")
    if line.endswith("}"):
        raise _error("ends with '}': a Tanita record ends with CS,hh and no brace")
    match = _CHECKSUM_RE.search(line)
    if match is None:
        raise _error("no checksum CS,hh at the end (a truncated record?)")
    given = match[1]
    if not re.fullmatch(r"[0-9A-F]{2}", given):  # the manuals: two uppercase hex digits
        raise _error(f"checksum {given[:8]!r} is not two uppercase hex digits")
    body = line[: match.start() + 1]
    expected = tanita_checksum(body.encode("ascii"))
    if given != expected:
        if given == tanita_checksum(re.sub(r", +", ",", body).encode("ascii")):
            # The manuals' samples typeset spaces the device never sends.
            raise _error(
                f"checksum {given} is that of the record without its spaces after commas "
                f"(computed {expected} with them): a device sends none"
            )
        raise _error(f"checksum {given}, computed {expected}: the record is damaged")
    return body


def _pairs(body: str) -> list[tuple[str, str]]:
    """The key/value pairs, quotes removed; refusals name positions, never content."""
    items = [item.strip(" ") for item in body[:-1].split(",")]
    if len(items) % 2:
        raise _error("a key without a value")
    pairs: list[tuple[str, str]] = []
    for index in range(0, len(items), 2):
        key, value = items[index], items[index + 1]
        if not _KEY_RE.fullmatch(key):
            raise _error(f"item {index + 1} is not a key")
        if value.startswith('"') or value.endswith('"'):
            if len(value) < 2 or not (value.startswith('"') and value.endswith('"')):
                raise _error(f"item {index + 2}: unbalanced quotes")
            value = value[1:-1]
        pairs.append((key, value))
    if not pairs or pairs[0][0] != "{0":
        raise _error("the record does not start with the {0 control data")
    return pairs


def _device_time(
    date_text: str | None, time_text: str | None
) -> tuple[datetime | None, tuple[str, ...]]:
    """``Da`` (dd/mm/yyyy) and ``TI`` (hh:mm), the device's local time. A clock that
    gives an impossible date (an unset one) keeps the reading, flagged."""
    if date_text is None and time_text is None:
        return None, ()
    day = _DATE_RE.fullmatch(date_text) if date_text is not None else None
    clock = _TIME_RE.fullmatch(time_text) if time_text is not None else None
    if date_text is not None and day is None:
        raise _error("Da is not dd/mm/yyyy")
    if time_text is not None and clock is None:
        raise _error("TI is not hh:mm")
    if day is None or clock is None:
        return None, (DEVICE_TIME_PARTIAL,)
    try:
        when = date(int(day[3]), int(day[2]), int(day[1]))
        at = time(int(clock[1]), int(clock[2]))
    except ValueError:
        return None, (DEVICE_CLOCK_INVALID,)
    return datetime.combine(when, at), ()


def decode_tanita(frame: bytes) -> TanitaRecord:
    values: dict[str, str] = {}
    for key, value in _pairs(_checked_body(frame)):
        if key in CONTROL or key in PERSONAL:
            continue
        if key in values:
            raise _error(f"key {key} sent twice" if key in MEASUREMENTS else "a key sent twice")
        values[key] = value
    measurements: dict[str, float] = {}
    units: dict[str, str] = {}
    used: set[str] = set()
    for key, (name, unit) in MEASUREMENTS.items():
        if key in values and name not in measurements:
            measurements[name] = number(FORMAT, key, values[key])
            units[name] = unit
            used.add(key)
    if "weight" not in measurements:
        raise _error("no weight (Wk or Wp) in the record")
    results: dict[str, float] = {}
    ignored: list[str] = []
    for key, text in values.items():
        if key in used or key in ("MO", "SN", "Da", "TI"):
            continue
        if key in RESULTS:
            results[RESULTS[key]] = number(FORMAT, key, text)
        else:
            ignored.append(key)
    timestamp, clock_quality = _device_time(values.get("Da"), values.get("TI"))
    return TanitaRecord(
        model=values.get("MO"),
        serial_number=values.get("SN"),
        timestamp=timestamp,
        measurements=measurements,
        units=units,
        results=results,
        ignored=tuple(ignored),
        clock_quality=clock_quality,
    )
