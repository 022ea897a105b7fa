"""Blood Pressure Measurement (0x2A35), Intermediate Cuff Pressure (0x2A36) and
Blood Pressure Feature (0x2A49): GSS 3.31, 3.128, 3.30; Blood Pressure Service 1.1."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from edge_agent.instruments.decoders.base import PartialTime, ReadingDraft, Record
from edge_agent.instruments.decoders.gatt.bits import check_flags, names
from edge_agent.instruments.decoders.gatt.common import medical_values
from edge_agent.instruments.decoders.gatt.date_time import draft_time
from edge_agent.instruments.decoders.gatt.ieee11073 import Medical
from edge_agent.instruments.decoders.gatt.reader import Reader
from vigie_core.contract.data import ReadingKind

#: GSS 3.31.2 Measurement Status, bits 0-2 and 5 (bits 3-4 are the pulse rate range).
STATUS_BITS: Final = {
    0: "body_movement",
    1: "cuff_fit_loose",
    2: "irregular_pulse",
    5: "improper_measurement_position",
}
PULSE_RANGE: Final = {
    0: None,
    1: "pulse_rate_exceeds_upper_limit",
    2: "pulse_rate_below_lower_limit",
}
#: GSS 3.30 Blood Pressure Feature.
FEATURE_BITS: Final = {
    0: "body_movement_detection",
    1: "cuff_fit_detection",
    2: "irregular_pulse_detection",
    3: "pulse_rate_range_detection",
    4: "measurement_position_detection",
    5: "multiple_bond",
    6: "e2e_crc",
    7: "user_data_service",
    8: "user_facing_time",
}
UNKNOWN_USER: Final = 0xFF


@dataclass(frozen=True, slots=True)
class BloodPressureMeasurement(Record):
    systolic: float | None
    diastolic: float | None
    mean_arterial_pressure: float | None
    unit: str
    timestamp: datetime | PartialTime | None
    pulse_rate: float | None
    user_id: int | None
    measurement_status: frozenset[str]
    invalid: dict[str, str]

    def reading(self) -> ReadingDraft:
        values = {
            "systolic": self.systolic,
            "diastolic": self.diastolic,
            "mean_arterial_pressure": self.mean_arterial_pressure,
        }
        units = dict.fromkeys(values, self.unit)
        if "pulse_rate" in self.invalid or self.pulse_rate is not None:
            values["pulse_rate"] = self.pulse_rate
            units["pulse_rate"] = "/min"
        device_time, timing = draft_time(self.timestamp)
        return ReadingDraft(
            kind=ReadingKind.BLOOD_PRESSURE,
            values=values,
            units=units,
            invalid=self.invalid,
            device_time=device_time,
            quality=tuple(sorted(self.measurement_status | timing)),
        )


@dataclass(frozen=True, slots=True)
class IntermediateCuffPressure(Record):
    """The cuff's pressure while it inflates: shown live, never stored as a reading."""

    cuff_pressure: float | None
    unit: str
    timestamp: datetime | PartialTime | None
    pulse_rate: float | None
    user_id: int | None
    measurement_status: frozenset[str]
    invalid: dict[str, str]


@dataclass(frozen=True, slots=True)
class BloodPressureFeature(Record):
    features: frozenset[str]


def _status(reader: Reader) -> frozenset[str]:
    raw = reader.uint(2, "measurement_status")
    range_code = raw >> 3 & 0b11
    if range_code == 3:
        raise reader.error("measurement_status: pulse rate range 3 is reserved")
    status = names(raw & ~0b11000, STATUS_BITS, reader, "measurement_status")
    pulse_range = PULSE_RANGE[range_code]
    return status | {pulse_range} if pulse_range else status


@dataclass(frozen=True, slots=True)
class _Common:
    """The layout both characteristics share (GSS 3.31 and 3.128)."""

    unit: str
    pressures: tuple[Medical, Medical, Medical]
    timestamp: datetime | PartialTime | None
    pulse: Medical | None
    user_id: int | None
    status: frozenset[str]


def _decode(reader: Reader) -> _Common:
    flags = reader.uint(1, "flags")
    check_flags(flags, 5, reader)
    pressures = (reader.sfloat("systolic"), reader.sfloat("diastolic"), reader.sfloat("map"))
    timestamp = reader.date_time() if flags & 0x02 else None
    pulse = reader.sfloat("pulse_rate") if flags & 0x04 else None
    user = reader.uint(1, "user_id") if flags & 0x08 else None
    status = _status(reader) if flags & 0x10 else frozenset()
    reader.finish()
    return _Common(
        unit="kPa" if flags & 0x01 else "mm[Hg]",
        pressures=pressures,
        timestamp=timestamp,
        pulse=pulse,
        user_id=None if user == UNKNOWN_USER else user,
        status=status,
    )


def decode_blood_pressure_measurement(data: bytes) -> BloodPressureMeasurement:
    common = _decode(Reader("2a35", data))
    systolic, diastolic, mean = common.pressures
    values, invalid = medical_values(
        systolic=systolic, diastolic=diastolic, mean_arterial_pressure=mean, pulse_rate=common.pulse
    )
    return BloodPressureMeasurement(
        systolic=values["systolic"],
        diastolic=values["diastolic"],
        mean_arterial_pressure=values["mean_arterial_pressure"],
        unit=common.unit,
        timestamp=common.timestamp,
        pulse_rate=values.get("pulse_rate"),
        user_id=common.user_id,
        measurement_status=common.status,
        invalid=invalid,
    )


def decode_intermediate_cuff_pressure(data: bytes) -> IntermediateCuffPressure:
    """GSS 3.128: the current cuff pressure travels in the systolic field; diastolic and
    mean arterial pressure are unused (sent as NaN) and not reported."""
    common = _decode(Reader("2a36", data))
    values, invalid = medical_values(cuff_pressure=common.pressures[0], pulse_rate=common.pulse)
    return IntermediateCuffPressure(
        cuff_pressure=values["cuff_pressure"],
        unit=common.unit,
        timestamp=common.timestamp,
        pulse_rate=values.get("pulse_rate"),
        user_id=common.user_id,
        measurement_status=common.status,
        invalid=invalid,
    )


def decode_blood_pressure_feature(data: bytes) -> BloodPressureFeature:
    reader = Reader("2a49", data)
    features = names(reader.uint(2, "features"), FEATURE_BITS, reader, "features")
    reader.finish()
    return BloodPressureFeature(features)
