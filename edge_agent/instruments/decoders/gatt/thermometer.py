"""Temperature Measurement (0x2A1C), Intermediate Temperature (0x2A1E) and Temperature
Type (0x2A1D): GSS 3.216, 3.130, 3.218; Health Thermometer Service 1.0."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from edge_agent.instruments.decoders.base import PartialTime, ReadingDraft, Record
from edge_agent.instruments.decoders.gatt.bits import check_flags
from edge_agent.instruments.decoders.gatt.common import medical_values
from edge_agent.instruments.decoders.gatt.date_time import draft_time
from edge_agent.instruments.decoders.gatt.reader import Reader
from vigie_core.contract.data import ReadingKind

#: GSS 3.218 Temperature Type; 0 and 10-255 are reserved.
TEMPERATURE_TYPES: Final = {
    1: "armpit",
    2: "body_general",
    3: "ear",
    4: "finger",
    5: "gastrointestinal",
    6: "mouth",
    7: "rectum",
    8: "toe",
    9: "tympanum",
}


@dataclass(frozen=True, slots=True)
class TemperatureMeasurement(Record):
    temperature: float | None
    unit: str
    timestamp: datetime | PartialTime | None
    temperature_type: str | None
    invalid: dict[str, str]

    def reading(self) -> ReadingDraft:
        device_time, timing = draft_time(self.timestamp)
        return ReadingDraft(
            kind=ReadingKind.BODY_TEMPERATURE,
            values={"temperature": self.temperature},
            units={"temperature": self.unit},
            invalid=self.invalid,
            device_time=device_time,
            quality=tuple(sorted(timing)),
            context={"temperature_type": self.temperature_type} if self.temperature_type else {},
        )


@dataclass(frozen=True, slots=True)
class IntermediateTemperature(Record):
    """A value while the thermometer is still measuring: shown, never stored."""

    temperature: float | None
    unit: str
    timestamp: datetime | PartialTime | None
    temperature_type: str | None
    invalid: dict[str, str]


@dataclass(frozen=True, slots=True)
class TemperatureType(Record):
    temperature_type: str


def _temperature_type(reader: Reader) -> str:
    code = reader.uint(1, "temperature_type")
    if code not in TEMPERATURE_TYPES:
        raise reader.error(f"temperature_type {code} is reserved")
    return TEMPERATURE_TYPES[code]


def _decode(format_name: str, data: bytes) -> TemperatureMeasurement:
    reader = Reader(format_name, data)
    flags = reader.uint(1, "flags")
    check_flags(flags, 3, reader)
    temperature = reader.float32("temperature")
    timestamp = reader.date_time() if flags & 0x02 else None
    kind = _temperature_type(reader) if flags & 0x04 else None
    reader.finish()
    values, invalid = medical_values(temperature=temperature)
    return TemperatureMeasurement(
        temperature=values["temperature"],
        unit="[degF]" if flags & 0x01 else "Cel",
        timestamp=timestamp,
        temperature_type=kind,
        invalid=invalid,
    )


def decode_temperature_measurement(data: bytes) -> TemperatureMeasurement:
    return _decode("2a1c", data)


def decode_intermediate_temperature(data: bytes) -> IntermediateTemperature:
    m = _decode("2a1e", data)
    return IntermediateTemperature(
        m.temperature, m.unit, m.timestamp, m.temperature_type, m.invalid
    )


def decode_temperature_type(data: bytes) -> TemperatureType:
    reader = Reader("2a1d", data)
    kind = _temperature_type(reader)
    reader.finish()
    return TemperatureType(kind)
