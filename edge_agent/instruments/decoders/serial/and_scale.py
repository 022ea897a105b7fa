"""A&D standard format: the line A&D balances, scales and weighing indicators send
(A&D instruction manuals, "Data format: A&D standard format", e.g. GX-A/GF-A 9.3,
FX-i 10.4): a 2-letter header, a comma, a 9-character signed value, a 3-character
unit, CR LF. ``ST,+00075.40 kg`` is a stable 75.40 kg.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders.base import ReadingDraft, Record
from edge_agent.instruments.decoders.serial.text import ascii_line, number
from vigie_core.contract.data import ReadingKind

FORMAT: Final = "and_standard"
HEADERS: Final = {"ST": "stable", "US": "unstable", "OL": "overload", "QT": "counting"}
#: Units a body-weight reading can carry, as the scale prints them (right-aligned).
UNITS: Final = {"kg": "kg", "lb": "[lb_av]"}
_LINE_RE: Final = re.compile(r"^(ST|US|OL|QT),([+-][0-9. E+-]{8})(.{3})?$")


@dataclass(frozen=True, slots=True)
class AndWeight(Record):
    header: str
    weight: float | None
    unit: str | None
    invalid: dict[str, str] = field(default_factory=dict)

    def reading(self) -> ReadingDraft:
        # An overload is worth storing as a null with its reason: an operator sees
        # that somebody stepped on a scale that could not weigh them.
        return ReadingDraft(
            kind=ReadingKind.BODY_WEIGHT,
            values={"weight": self.weight},
            units={"weight": self.unit} if self.unit else {},
            invalid=self.invalid,
            quality=("unstable",) if self.header == "unstable" else (),
        )


def format_and_line(weight: float, unit: str = "kg", *, stable: bool = True) -> str:
    """A standard-format line (for simulators and tests), without CR LF."""
    value = f"{weight:+09.2f}"
    return f"{'ST' if stable else 'US'},{value}{unit:>3}"


def decode_and_standard(frame: bytes) -> AndWeight:
    line = ascii_line(FORMAT, frame)
    match = _LINE_RE.match(line)
    if match is None:
        raise DecodeError(FORMAT, f"{line[:20]!r} is not HH,+dddddd.dd unit")
    header, value, unit_text = HEADERS[match[1]], match[2], (match[3] or "").strip()
    if header == "overload":
        # The value is a placeholder (+9999999E+19 in A&D manuals): never a weight.
        return AndWeight(header, None, UNITS.get(unit_text), {"weight": "overload"})
    if header == "counting":
        raise DecodeError(FORMAT, "counting data (QT), not a weight")
    if unit_text not in UNITS:
        raise DecodeError(FORMAT, f"unit {unit_text!r} is not a body-weight unit (kg, lb)")
    return AndWeight(header, number(FORMAT, "weight", value), UNITS[unit_text])
