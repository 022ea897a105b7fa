"""What every decoder shares: the record base class, the reading draft, the error."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Literal, TypeAlias

from vigie_core.contract.data import ReadingKind

JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None


@dataclass(frozen=True, slots=True)
class PartialTime:
    """A device time with parts unknown, None for each (a GATT Date Time whose year,
    month or day is 0; a time of day without a date): what the device did say.

    A record keeps it so that ``edge-agent decode`` shows the known parts; it is never
    a measurement time (the draft has no ``device_time`` and says why in ``quality``).
    """

    year: int | None = None
    month: int | None = None
    day: int | None = None
    hour: int | None = None
    minute: int | None = None
    second: int | None = None

    def isoformat(self, sep: str = "T") -> str:
        """ISO 8601's layout with ``?`` for each unknown digit: ``????-??-??T12:34:56``."""
        year, month, day, hour, minute, second = (
            "?" * width if value is None else f"{value:0{width}d}"
            for value, width in (
                (self.year, 4),
                (self.month, 2),
                (self.day, 2),
                (self.hour, 2),
                (self.minute, 2),
                (self.second, 2),
            )
        )
        return f"{year}-{month}-{day}{sep}{hour}:{minute}:{second}"

    def __str__(self) -> str:
        return self.isoformat(" ")


@dataclass(frozen=True, slots=True)
class ReadingDraft:
    """What a decoded record contributes to a :class:`~vigie_core.contract.data.Reading`.

    The agent adds its own receive time, the device identity and the time checks.
    ``device_time`` is the device's clock exactly as sent: naive when the format
    carries local time without a zone (BLE and most serial instruments), aware when
    the format defines its zone (NMEA times are UTC); None when the device sent none,
    or only a :class:`PartialTime` (then ``quality`` holds ``device_time_partial``).
    ``quality`` names what the device flagged about the measurement (``motion``,
    ``unstable``...).
    """

    kind: ReadingKind
    values: Mapping[str, float | None]
    units: Mapping[str, str]
    invalid: Mapping[str, str] = field(default_factory=dict)
    device_time: datetime | None = None
    quality: tuple[str, ...] = ()
    #: Descriptive strings that qualify the reading (``temperature_type: tympanum``).
    context: Mapping[str, str] = field(default_factory=dict)


class Record:
    """Base of decoded records: frozen dataclasses whose field names follow the spec,
    in snake_case (``systolic``, ``mean_arterial_pressure``, ``user_id``).
    """

    __slots__ = ()

    def reading(self) -> ReadingDraft | None:
        """The reading this record carries, if it is one (a battery level is not)."""
        return None

    def as_json(self) -> dict[str, JsonValue]:
        """The record as JSON-able data: dates in ISO 8601, flag sets as sorted names."""
        if not dataclasses.is_dataclass(self):
            raise TypeError(f"{type(self).__name__} must be a dataclass")
        return {f.name: to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}


def to_json(value: object) -> JsonValue:  # noqa: PLR0911 - one return per JSON shape
    """Convert a record's field value to JSON-able data."""
    if isinstance(value, Record):
        return value.as_json()
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, datetime | date | time | PartialTime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, frozenset | set):
        return sorted(to_json(item) for item in value)  # type: ignore[type-var]
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot express {type(value).__name__} as JSON")


#: ``hex``: the CLI takes the input as hexadecimal bytes; ``text``: as one line of text.
InputStyle = Literal["hex", "text"]


@dataclass(frozen=True, slots=True)
class Format:
    """One decodable format, as listed by ``edge-agent decode --list``.

    ``name`` is a short GATT UUID in lower case (``2a35``) or a serial format name
    (``nonin_text``). ``decode`` takes one complete frame: a notification's value, a
    line without its terminator, or a packet as the format's framer delivers it.
    """

    name: str
    title: str
    input: InputStyle
    decode: Callable[[bytes], Record]
