"""Tanita body-composition analysers' data output (BC-418, MC-780 and kin): one record
per measurement, ``{0,16,~0,1,...,Wk,78.6,FW,27.0,...,CS,5A}``: comma-separated
key/value pairs, strings in double quotes, ending with a checksum ``CS``: two hex
digits, the XOR of every byte from the opening brace up to and including the comma
before ``CS`` (Tanita's "data output" description for PC software).

The record also carries who was measured (ID, gender, age, date of birth): those keys
are dropped here, before anything else sees them. Only body measurements leave.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders.base import ReadingDraft, Record
from edge_agent.instruments.decoders.serial.text import ascii_line, number
from vigie_core.contract.data import ReadingKind

FORMAT: Final = "tanita"
#: Tanita key -> (reading field, unit).
MEASUREMENTS: Final = {
    "Wk": ("weight", "kg"),
    "Hm": ("height", "cm"),
    "MI": ("bmi", "kg/m2"),
    "FW": ("body_fat_percentage", "%"),
    "fW": ("fat_mass", "kg"),
    "MW": ("fat_free_mass", "kg"),
    "wW": ("total_body_water", "kg"),
    "rB": ("basal_metabolic_rate", "kJ"),
    "rb": ("basal_metabolic_rate", "kcal"),
    "Rw": ("impedance", "Ohm"),
}
#: Keys that identify or describe the person: never kept (privacy by design).
PERSONAL: Final = frozenset({"ID", "GE", "AG", "DB", "Bt", "NA"})
_PAIR_KEY_RE: Final = re.compile(r"^[~A-Za-z0-9]{1,4}$")


@dataclass(frozen=True, slots=True)
class TanitaRecord(Record):
    model: str | None
    timestamp: datetime | None
    measurements: dict[str, float]
    units: dict[str, str]
    other: dict[str, str] = field(default_factory=dict)

    def reading(self) -> ReadingDraft:
        return ReadingDraft(
            kind=ReadingKind.BODY_COMPOSITION,
            values=dict(self.measurements),
            units=self.units,
            device_time=self.timestamp,
        )


def tanita_checksum(body: str) -> str:
    value = 0
    for char in body.encode("ascii"):
        value ^= char
    return f"{value:02X}"


def format_tanita_record(pairs: list[tuple[str, str]]) -> str:
    """A record with its checksum (for simulators and tests)."""
    body = "{0,16,~0,1,~1,1,~2,1," + "".join(f"{key},{value}," for key, value in pairs)
    return f"{body}CS,{tanita_checksum(body)}}}"


def _error(reason: str) -> DecodeError:
    return DecodeError(FORMAT, reason)


def _timestamp(date_text: str | None, time_text: str | None) -> datetime | None:
    if not date_text or not time_text:
        return None
    try:
        return datetime.strptime(f"{date_text} {time_text}", "%d/%m/%Y %H:%M")  # noqa: DTZ007 - device local time
    except ValueError:
        raise _error(f"date/time {date_text!r} {time_text!r} is not dd/mm/yyyy hh:mm") from None


def decode_tanita(frame: bytes) -> TanitaRecord:
    line = ascii_line(FORMAT, frame).strip()
    match = re.fullmatch(r"(\{.*,)CS,([0-9A-Fa-f]{2})\}", line)
    if match is None:
        raise _error("not a Tanita record {...,CS,hh}")
    body, given = match[1], match[2].upper()
    expected = tanita_checksum(body)
    if given != expected:
        raise _error(f"checksum {given}, expected {expected}")
    items = body[1:-1].split(",")
    # The header ("0,16,~0,1,~1,1,~2,1") precedes the key/value pairs.
    if items[:2] != ["0", "16"]:
        raise _error("record does not start with the 0,16 header")
    pairs = items[2:]
    if len(pairs) % 2:
        raise _error("a key without a value")
    values: dict[str, str] = {}
    for key, value in zip(pairs[::2], pairs[1::2], strict=True):
        if not _PAIR_KEY_RE.match(key):
            raise _error(f"{key[:8]!r} is not a key")
        if key in PERSONAL:
            continue
        values[key] = value.strip('"')
    measurements: dict[str, float] = {}
    units: dict[str, str] = {}
    for key, (name, unit) in MEASUREMENTS.items():
        if key in values and name not in measurements:
            measurements[name] = number(FORMAT, key, values[key])
            units[name] = unit
    if "weight" not in measurements:
        raise _error("no weight (Wk) in the record")
    other = {
        key: value
        for key, value in values.items()
        if key not in MEASUREMENTS and not key.startswith("~") and key not in ("MO", "Da", "TI")
    }
    return TanitaRecord(
        model=values.get("MO"),
        timestamp=_timestamp(values.get("Da"), values.get("TI")),
        measurements=measurements,
        units=units,
        other=other,
    )
