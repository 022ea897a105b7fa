"""Glucose Measurement (0x2A18) and Record Access Control Point (0x2A52):
GSS 3.102 and 3.185; Glucose Service 1.0, 3.1 and 3.3.3 (RACP procedures)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from edge_agent.instruments.decoders.base import PartialTime, ReadingDraft, Record
from edge_agent.instruments.decoders.gatt.bits import check_flags, names
from edge_agent.instruments.decoders.gatt.common import medical_values
from edge_agent.instruments.decoders.gatt.date_time import draft_time
from edge_agent.instruments.decoders.gatt.reader import Reader
from vigie_core.contract.data import ReadingKind

#: GSS 3.102.2 Type (low nibble); 0 and 11-15 reserved.
SAMPLE_TYPES: Final = {
    1: "capillary_whole_blood",
    2: "capillary_plasma",
    3: "venous_whole_blood",
    4: "venous_plasma",
    5: "arterial_whole_blood",
    6: "arterial_plasma",
    7: "undetermined_whole_blood",
    8: "undetermined_plasma",
    9: "interstitial_fluid",
    10: "control_solution",
}
#: GSS 3.102.3 Sample Location (high nibble); 0 and 5-14 reserved.
SAMPLE_LOCATIONS: Final = {
    1: "finger",
    2: "alternate_site_test",
    3: "earlobe",
    4: "control_solution",
    15: "not_available",
}
#: GSS 3.102.4 Sensor Status Annunciation (bits 12-15 reserved).
SENSOR_STATUS: Final = {
    0: "device_battery_low",
    1: "sensor_malfunction",
    2: "sample_size_insufficient",
    3: "strip_insertion_error",
    4: "strip_type_incorrect",
    5: "result_too_high",
    6: "result_too_low",
    7: "sensor_temperature_too_high",
    8: "sensor_temperature_too_low",
    9: "sensor_read_interrupted",
    10: "general_device_fault",
    11: "time_fault",
}


@dataclass(frozen=True, slots=True)
class GlucoseMeasurement(Record):
    sequence_number: int
    base_time: datetime | PartialTime
    time_offset: int | None
    #: Base time plus offset; None when a partial base time has an offset (the date
    #: the offset lands on is not known).
    timestamp: datetime | PartialTime | None
    glucose_concentration: float | None
    unit: str | None
    type: str | None
    sample_location: str | None
    sensor_status_annunciation: frozenset[str]
    context_information_follows: bool
    invalid: dict[str, str]

    def reading(self) -> ReadingDraft | None:
        if self.unit is None:
            return None  # a record without a concentration (GSS allows it): nothing to store
        context = {"sequence_number": str(self.sequence_number)}
        if self.type:
            context["sample_type"] = self.type
        if self.sample_location:
            context["sample_location"] = self.sample_location
        device_time, timing = draft_time(
            self.base_time if self.timestamp is None else self.timestamp
        )
        quality = set(self.sensor_status_annunciation | timing)
        if self.type == "control_solution" or self.sample_location == "control_solution":
            quality.add("control_solution")  # a meter check, not a person
        return ReadingDraft(
            kind=ReadingKind.BLOOD_GLUCOSE,
            values={"glucose_concentration": self.glucose_concentration},
            units={"glucose_concentration": self.unit},
            invalid=self.invalid,
            device_time=device_time,
            quality=tuple(sorted(quality)),
            context=context,
        )


def decode_glucose_measurement(data: bytes) -> GlucoseMeasurement:
    reader = Reader("2a18", data)
    flags = reader.uint(1, "flags")
    check_flags(flags, 5, reader)
    sequence = reader.uint(2, "sequence_number")
    base_time = reader.date_time("base_time")
    offset = reader.sint(2, "time_offset") if flags & 0x01 else None
    concentration = sample_type = location = unit = None
    if flags & 0x02:
        concentration = reader.sfloat("glucose_concentration")
        unit = "mol/L" if flags & 0x04 else "kg/L"
        packed = reader.uint(1, "type_sample_location")
        if packed & 0x0F not in SAMPLE_TYPES:
            raise reader.error(f"type {packed & 0x0F} is reserved")
        if packed >> 4 not in SAMPLE_LOCATIONS:
            raise reader.error(f"sample location {packed >> 4} is reserved")
        sample_type, location = SAMPLE_TYPES[packed & 0x0F], SAMPLE_LOCATIONS[packed >> 4]
    elif flags & 0x04:
        raise reader.error("a concentration unit flag without a concentration")
    status = (
        names(reader.uint(2, "sensor_status"), SENSOR_STATUS, reader, "sensor_status")
        if flags & 0x08
        else frozenset()
    )
    reader.finish()
    values, invalid = medical_values(glucose_concentration=concentration)
    timestamp: datetime | PartialTime | None = base_time
    if offset:
        timestamp = _offset(reader, base_time, offset)
    return GlucoseMeasurement(
        sequence_number=sequence,
        base_time=base_time,
        time_offset=offset,
        timestamp=timestamp,
        glucose_concentration=values.get("glucose_concentration"),
        unit=unit,
        type=sample_type,
        sample_location=location,
        sensor_status_annunciation=status,
        context_information_follows=bool(flags & 0x10),
        invalid=invalid,
    )


def _offset(reader: Reader, base_time: datetime | PartialTime, offset: int) -> datetime | None:
    if isinstance(base_time, PartialTime):
        return None
    try:
        return base_time + timedelta(minutes=offset)
    except OverflowError:  # 9999-12-31 plus minutes
        raise reader.error(f"time_offset {offset} takes the base time past year 9999") from None


# --- Record Access Control Point ------------------------------------------------------

#: Glucose Service 1.0, 3.3.3: op codes and operators.
REPORT_STORED_RECORDS: Final = 0x01
DELETE_STORED_RECORDS: Final = 0x02
ABORT_OPERATION: Final = 0x03
REPORT_NUMBER_OF_RECORDS: Final = 0x04
NUMBER_OF_RECORDS_RESPONSE: Final = 0x05
RESPONSE_CODE: Final = 0x06
OP_CODES: Final = {
    REPORT_STORED_RECORDS: "report_stored_records",
    DELETE_STORED_RECORDS: "delete_stored_records",
    ABORT_OPERATION: "abort_operation",
    REPORT_NUMBER_OF_RECORDS: "report_number_of_stored_records",
    NUMBER_OF_RECORDS_RESPONSE: "number_of_stored_records_response",
    RESPONSE_CODE: "response_code",
}
OPERATOR_NULL: Final = 0x00
OPERATOR_ALL: Final = 0x01
OPERATOR_GREATER_OR_EQUAL: Final = 0x03
FILTER_SEQUENCE_NUMBER: Final = 0x01
RESPONSE_VALUES: Final = {
    0x01: "success",
    0x02: "op_code_not_supported",
    0x03: "invalid_operator",
    0x04: "operator_not_supported",
    0x05: "invalid_operand",
    0x06: "no_records_found",
    0x07: "abort_unsuccessful",
    0x08: "procedure_not_completed",
    0x09: "operand_not_supported",
}


@dataclass(frozen=True, slots=True)
class RacpResponse(Record):
    """A RACP indication: a number of stored records, or the outcome of a request."""

    op_code: str
    number_of_records: int | None = None
    request_op_code: str | None = None
    response_code: str | None = None


def racp_report_all_records() -> bytes:
    return bytes([REPORT_STORED_RECORDS, OPERATOR_ALL])


def racp_report_number_of_records() -> bytes:
    return bytes([REPORT_NUMBER_OF_RECORDS, OPERATOR_ALL])


def racp_report_records_from(sequence_number: int) -> bytes:
    """Records whose sequence number is at least ``sequence_number``: only the new ones."""
    operand = sequence_number.to_bytes(2, "little")
    return (
        bytes([REPORT_STORED_RECORDS, OPERATOR_GREATER_OR_EQUAL, FILTER_SEQUENCE_NUMBER]) + operand
    )


def decode_racp(data: bytes) -> RacpResponse:
    reader = Reader("2a52", data)
    op_code = reader.uint(1, "op_code")
    operator = reader.uint(1, "operator")
    if op_code not in (NUMBER_OF_RECORDS_RESPONSE, RESPONSE_CODE):
        name = OP_CODES.get(op_code, f"reserved op code {op_code}")
        raise reader.error(f"{name} is a request, not an indication from the device")
    if operator != OPERATOR_NULL:
        raise reader.error(f"a response carries the null operator, not {operator}")
    if op_code == NUMBER_OF_RECORDS_RESPONSE:
        count = reader.uint(2, "number_of_records")
        reader.finish()
        return RacpResponse(OP_CODES[op_code], number_of_records=count)
    request, value = reader.uint(1, "request_op_code"), reader.uint(1, "response_code")
    reader.finish()
    if request not in OP_CODES or value not in RESPONSE_VALUES:
        raise reader.error(f"reserved request op code {request} or response code {value}")
    return RacpResponse(
        OP_CODES[op_code], request_op_code=OP_CODES[request], response_code=RESPONSE_VALUES[value]
    )
