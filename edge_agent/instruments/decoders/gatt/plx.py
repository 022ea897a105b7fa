"""PLX Spot-Check Measurement (0x2A5E), PLX Continuous Measurement (0x2A5F) and PLX
Features (0x2A60): GSS 3.168, 3.167, 3.169; Pulse Oximeter Service 1.0."""

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

#: GSS 3.168.2 Measurement Status (bits 0-4 reserved).
MEASUREMENT_STATUS: Final = {
    5: "measurement_ongoing",
    6: "early_estimated_data",
    7: "validated_data",
    8: "fully_qualified_data",
    9: "data_from_measurement_storage",
    10: "data_for_demonstration",
    11: "data_for_testing",
    12: "calibration_ongoing",
    13: "measurement_unavailable",
    14: "questionable_measurement_detected",
    15: "invalid_measurement_detected",
}
#: GSS 3.168.3 Device and Sensor Status (bits 16-23 reserved).
DEVICE_AND_SENSOR_STATUS: Final = {
    0: "extended_display_update_ongoing",
    1: "equipment_malfunction_detected",
    2: "signal_processing_irregularity_detected",
    3: "inadequate_signal_detected",
    4: "poor_signal_detected",
    5: "low_perfusion_detected",
    6: "erratic_signal_detected",
    7: "nonpulsatile_signal_detected",
    8: "questionable_pulse_detected",
    9: "signal_analysis_ongoing",
    10: "sensor_interference_detected",
    11: "sensor_unconnected_to_user",
    12: "unknown_sensor_connected",
    13: "sensor_displaced",
    14: "sensor_malfunctioning",
    15: "sensor_disconnected",
}
#: GSS 3.169 PLX Features.
FEATURES: Final = {
    0: "measurement_status_support",
    1: "device_and_sensor_status_support",
    2: "measurement_storage_for_spot_check",
    3: "timestamp_for_spot_check",
    4: "spo2pr_fast",
    5: "spo2pr_slow",
    6: "pulse_amplitude_index",
    7: "multiple_bonds",
}
#: Statuses that describe the data (not a problem with it): kept in the record only.
_INFORMATIVE: Final = frozenset(
    {"validated_data", "fully_qualified_data", "data_from_measurement_storage"}
)


@dataclass(frozen=True, slots=True)
class PlxSpotCheck(Record):
    spo2: float | None
    pulse_rate: float | None
    timestamp: datetime | PartialTime | None
    measurement_status: frozenset[str]
    device_and_sensor_status: frozenset[str]
    pulse_amplitude_index: float | None
    device_clock_not_set: bool
    invalid: dict[str, str]

    def reading(self) -> ReadingDraft:
        return _draft(self, None if self.device_clock_not_set else self.timestamp)


@dataclass(frozen=True, slots=True)
class PlxContinuous(Record):
    spo2: float | None
    pulse_rate: float | None
    spo2_fast: float | None
    pulse_rate_fast: float | None
    spo2_slow: float | None
    pulse_rate_slow: float | None
    measurement_status: frozenset[str]
    device_and_sensor_status: frozenset[str]
    pulse_amplitude_index: float | None
    invalid: dict[str, str]

    def reading(self) -> ReadingDraft:
        return _draft(self, None)


@dataclass(frozen=True, slots=True)
class PlxFeatures(Record):
    features: frozenset[str]
    measurement_status_support: frozenset[str]
    device_and_sensor_status_support: frozenset[str]


def _draft(
    record: PlxSpotCheck | PlxContinuous, timestamp: datetime | PartialTime | None
) -> ReadingDraft:
    names_ = ("spo2", "pulse_rate", "pulse_amplitude_index")
    values = {"spo2": record.spo2, "pulse_rate": record.pulse_rate}
    units = {"spo2": "%", "pulse_rate": "/min"}
    if record.pulse_amplitude_index is not None or "pulse_amplitude_index" in record.invalid:
        # The Pulse Amplitude Index is the perfusion index, in percent (GSS 3.168.4).
        values["perfusion_index"] = record.pulse_amplitude_index
        units["perfusion_index"] = "%"
    invalid = {
        ("perfusion_index" if name == "pulse_amplitude_index" else name): reason
        for name, reason in record.invalid.items()
        if name in names_
    }
    flags = (record.measurement_status - _INFORMATIVE) | record.device_and_sensor_status
    device_time, timing = draft_time(timestamp)
    return ReadingDraft(
        kind=ReadingKind.PULSE_OXIMETRY,
        values=values,
        units=units,
        invalid=invalid,
        device_time=device_time,
        quality=tuple(sorted(flags | timing)),
    )


def _statuses(reader: Reader, measurement: bool, device: bool) -> tuple[frozenset[str], ...]:
    status = (
        names(
            reader.uint(2, "measurement_status"), MEASUREMENT_STATUS, reader, "measurement_status"
        )
        if measurement
        else frozenset()
    )
    sensor = (
        names(
            reader.uint(3, "device_and_sensor_status"),
            DEVICE_AND_SENSOR_STATUS,
            reader,
            "device_and_sensor_status",
        )
        if device
        else frozenset()
    )
    return status, sensor


def decode_plx_spot_check(data: bytes) -> PlxSpotCheck:
    reader = Reader("2a5e", data)
    flags = reader.uint(1, "flags")
    check_flags(flags, 5, reader)
    spo2, pulse = reader.sfloat("spo2"), reader.sfloat("pulse_rate")
    timestamp = reader.date_time() if flags & 0x01 else None
    status, sensor = _statuses(reader, bool(flags & 0x02), bool(flags & 0x04))
    pai = reader.sfloat("pulse_amplitude_index") if flags & 0x08 else None
    reader.finish()
    values, invalid = medical_values(spo2=spo2, pulse_rate=pulse, pulse_amplitude_index=pai)
    return PlxSpotCheck(
        spo2=values["spo2"],
        pulse_rate=values["pulse_rate"],
        timestamp=timestamp,
        measurement_status=status,
        device_and_sensor_status=sensor,
        pulse_amplitude_index=values.get("pulse_amplitude_index"),
        device_clock_not_set=bool(flags & 0x10),
        invalid=invalid,
    )


def decode_plx_continuous(data: bytes) -> PlxContinuous:
    reader = Reader("2a5f", data)
    flags = reader.uint(1, "flags")
    check_flags(flags, 5, reader)
    normal = reader.sfloat("spo2"), reader.sfloat("pulse_rate")
    none: tuple[Medical | None, Medical | None] = (None, None)
    fast = (reader.sfloat("spo2_fast"), reader.sfloat("pulse_rate_fast")) if flags & 0x01 else none
    slow = (reader.sfloat("spo2_slow"), reader.sfloat("pulse_rate_slow")) if flags & 0x02 else none
    status, sensor = _statuses(reader, bool(flags & 0x04), bool(flags & 0x08))
    pai = reader.sfloat("pulse_amplitude_index") if flags & 0x10 else None
    reader.finish()
    values, invalid = medical_values(
        spo2=normal[0],
        pulse_rate=normal[1],
        spo2_fast=fast[0],
        pulse_rate_fast=fast[1],
        spo2_slow=slow[0],
        pulse_rate_slow=slow[1],
        pulse_amplitude_index=pai,
    )
    return PlxContinuous(
        spo2=values["spo2"],
        pulse_rate=values["pulse_rate"],
        spo2_fast=values.get("spo2_fast"),
        pulse_rate_fast=values.get("pulse_rate_fast"),
        spo2_slow=values.get("spo2_slow"),
        pulse_rate_slow=values.get("pulse_rate_slow"),
        measurement_status=status,
        device_and_sensor_status=sensor,
        pulse_amplitude_index=values.get("pulse_amplitude_index"),
        invalid=invalid,
    )


def decode_plx_features(data: bytes) -> PlxFeatures:
    """GSS 3.169: the feature bits, then the supported status bits when announced."""
    reader = Reader("2a60", data)
    raw = reader.uint(2, "features")
    features = names(raw, FEATURES, reader, "features")
    status = frozenset[str]()
    sensor = frozenset[str]()
    if raw & 0x01:
        status = names(
            reader.uint(2, "measurement_status_support"), MEASUREMENT_STATUS, reader, "support"
        )
    if raw & 0x02:
        sensor = names(
            reader.uint(3, "device_and_sensor_status_support"),
            DEVICE_AND_SENSOR_STATUS,
            reader,
            "support",
        )
    reader.finish()
    return PlxFeatures(features, status, sensor)
