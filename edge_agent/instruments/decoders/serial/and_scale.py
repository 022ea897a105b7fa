"""A&D standard format: the line A&D scales, balances and weighing indicators send.

Manuals followed: A&D EK-L series instruction manual, 9-2 "Data format"; A&D GX-A/GF-A
and FX-i manuals, "A&D standard format"; A&D GC series manual, 16.2 "Communication
Mode", "A&D Standard Format". The line is 15 characters and CR LF::

    ST,+001234.5  g      header, comma, 9-character value, 3-character unit
    OL,+9999999E+19      overload, the value a placeholder (GX-A), or
    OL,+999999.9  g      overload with the unit (EK-L)

Headers: ``ST`` stable weight (or percentage), ``US`` unstable, ``OL`` out of range,
``QT`` stable count. The value is the sign and 8 characters, zero-padded, including the
decimal point (``+`` for zero). The unit is right-aligned, spaces in front: ``  g``,
`` kg``, `` lb``, `` oz``, ``ozt``, `` tl`` (EK-L), and on balances ``PC``, ``%``,
``ct``, ``mom``, ``dwt``, ``GN``, ``N``, ``t``, ``DS``.

A body weight may be in kg or lb as sent; grams (a paediatric scale) become kilograms
and decimal ounces pounds, exactly (a decimal shift, a division by 16), with
``device_unit`` in the reading's context. Counts, percentages, jeweller's units and
force are refused with the unit named. Trailing spaces are tolerated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders.base import ReadingDraft, Record
from edge_agent.instruments.decoders.serial.text import ascii_line, number
from vigie_core.contract.data import ReadingKind

FORMAT: Final = "and_standard"
HEADERS: Final = {"ST": "stable", "US": "unstable", "OL": "overload", "QT": "counting"}
#: Body-weight units as the scale prints them -> (contract unit, divisor to it).
UNITS: Final = {
    "kg": ("kg", 1),
    "g": ("kg", 1000),
    "lb": ("[lb_av]", 1),
    "oz": ("[lb_av]", 16),
}
#: Units of the format that are not a body weight, for a refusal that says what they are.
OTHER_UNITS: Final = {
    "PC": "counting data",
    "%": "percentage data",
    "ozt": "troy ounces",
    "tl": "taels",
    "ct": "carats",
    "mom": "mommes",
    "dwt": "pennyweights",
    "GN": "grains",
    "t": "tolas",
    "N": "force data (newtons)",
    "DS": "density data",
}
_LINE_RE: Final = re.compile(r"(ST|US|OL|QT),([+-][0-9.]{8})(.{3})")
_PLACEHOLDER_RE: Final = re.compile(r"OL,[+-]9{7}E\+19")


@dataclass(frozen=True, slots=True)
class AndWeight(Record):
    header: str
    weight: float | None
    unit: str | None
    invalid: dict[str, str] = field(default_factory=dict)
    #: The unit the scale printed, when the weight was converted from it (``g``).
    device_unit: str | None = None

    def reading(self) -> ReadingDraft:
        # An overload is worth storing as a null with its reason: an operator sees
        # that somebody stepped on a scale that could not weigh them.
        return ReadingDraft(
            kind=ReadingKind.BODY_WEIGHT,
            values={"weight": self.weight},
            units={"weight": self.unit} if self.unit else {},
            invalid=self.invalid,
            quality=("unstable",) if self.header == "unstable" else (),
            context={"device_unit": self.device_unit} if self.device_unit else {},
        )


def format_and_line(
    value: float, unit: str = "kg", *, decimals: int = 2, stable: bool = True
) -> bytes:
    """A standard-format line as a scale sends it, CR LF included (for simulators and
    tests): ``value`` in ``unit`` with ``decimals`` places."""
    text = f"{value:+09.{decimals}f}"
    return f"{'ST' if stable else 'US'},{text}{unit:>3}\r\n".encode("ascii")


def _body_weight_unit(unit_text: str) -> tuple[str, int]:
    if unit_text in UNITS:
        return UNITS[unit_text]
    what = OTHER_UNITS.get(unit_text)
    if what is not None:
        raise DecodeError(FORMAT, f"unit {unit_text!r} ({what}) is not a body weight")
    raise DecodeError(FORMAT, f"unit {unit_text!r} is unknown (body-weight units: kg, g, lb, oz)")


def decode_and_standard(frame: bytes) -> AndWeight:
    line = ascii_line(FORMAT, frame).rstrip(" ")
    if _PLACEHOLDER_RE.fullmatch(line):
        # The value is a placeholder, never a weight.
        return AndWeight("overload", None, None, {"weight": "overload"})
    match = _LINE_RE.fullmatch(line)
    if match is None:
        raise DecodeError(FORMAT, f"{line[:20]!r} is not HH,+dddddd.dd unit (15 characters)")
    header, value, unit_text = HEADERS[match[1]], match[2], match[3].strip(" ")
    if header == "counting":
        raise DecodeError(FORMAT, "counting data (QT), not a weight")
    unit, divisor = _body_weight_unit(unit_text)
    device_unit = unit_text if divisor != 1 else None
    if header == "overload":
        return AndWeight(header, None, unit, {"weight": "overload"}, device_unit)
    number(FORMAT, "weight", value)  # refuses what is not a plain decimal
    weight = float(Decimal(value) / divisor)
    return AndWeight(header, weight, unit, device_unit=device_unit)
