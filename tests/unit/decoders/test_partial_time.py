"""Date Times with parts "not known", alone and inside the measurements that embed one.

GSS 3.70 Date Time, 7 octets, least significant first: Year uint16 (1582..9999, 0 "year
is not known"), Month uint8 (1..12, 0 "month is not known"), Day uint8 (1..31, 0 "day
of month is not known"), Hours uint8 0..23, Minutes uint8 0..59, Seconds uint8 0..59.
The known parts stay in the record; a reading so timed is timed on reception, with
``device_time_partial`` in its quality. Every frame here is built field by field.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from edge_agent.cli import app
from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders import registry
from edge_agent.instruments.decoders.base import PartialTime, ReadingDraft, Record
from edge_agent.instruments.decoders.gatt.blood_pressure import decode_blood_pressure_measurement
from edge_agent.instruments.decoders.gatt.date_time import decode_date_time
from edge_agent.instruments.readings import (
    DEVICE_CLOCK_INVALID,
    DEVICE_TIME_PARTIAL,
    ReadingOrigin,
    build_reading,
)
from vigie_core.contract.data import DeviceSource

#: Date Time: year 0 ("not known"), month 0, day 0; 12:34:56.
UNKNOWN_DATE = bytes(
    [
        0x00, 0x00,  # year: 0, not known (uint16, LSO first)
        0x00,  # month: 0, not known
        0x00,  # day: 0, not known
        0x0C,  # hours: 12
        0x22,  # minutes: 34
        0x38,  # seconds: 56
    ]
)  # fmt: skip
AT_12_34_56 = PartialTime(hour=12, minute=34, second=56)
RECEIVED = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
ORIGIN = ReadingOrigin(
    agent_id="a1",
    device_id="d1",
    source=DeviceSource(profile="p", address="x"),
    timezone=ZoneInfo("Europe/Paris"),
)


def _decode(name: str, data: bytes) -> Record:
    return registry.decode(name, data)


def _draft(name: str, data: bytes) -> ReadingDraft:
    draft = _decode(name, data).reading()
    assert draft is not None
    return draft


# --- The representation ------------------------------------------------------------------


def test_a_partial_time_reads_like_a_time_with_question_marks() -> None:
    assert str(AT_12_34_56) == "????-??-?? 12:34:56"
    assert AT_12_34_56.isoformat() == "????-??-??T12:34:56"
    assert str(PartialTime(2026, None, 25, 8, 0, 5)) == "2026-??-25 08:00:05"


# --- Date Time alone (0x2A08) ------------------------------------------------------------


def test_date_time_with_an_unknown_date_keeps_the_time_of_day() -> None:
    record = decode_date_time(UNKNOWN_DATE)
    assert record.timestamp == AT_12_34_56
    assert record.as_json() == {
        "timestamp": "????-??-??T12:34:56",
        "invalid": {"timestamp": "partial"},
    }


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # year 2026 (0x07EA), month 0 (not known), day 25, 08:00:05
        (bytes([0xEA, 0x07, 0x00, 0x19, 0x08, 0x00, 0x05]), PartialTime(2026, None, 25, 8, 0, 5)),
        # year 0 (not known), month 2, day 29 (a leap year's day: the year may be one)
        (bytes([0x00, 0x00, 0x02, 0x1D, 0x17, 0x3B, 0x3B]), PartialTime(None, 2, 29, 23, 59, 59)),
        # year 2026, month 11, day 0 (not known), 00:00:00 (midnight, a known time)
        (bytes([0xEA, 0x07, 0x0B, 0x00, 0x00, 0x00, 0x00]), PartialTime(2026, 11, None, 0, 0, 0)),
    ],
)
def test_each_date_part_may_be_unknown_alone(data: bytes, expected: PartialTime) -> None:
    assert decode_date_time(data).timestamp == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        # year 0, month 13: out of range, not "not known"
        (bytes([0x00, 0x00, 0x0D, 0x00, 0x0C, 0x22, 0x38]), "invalid date time"),
        # year 0, month 0, day 32
        (bytes([0x00, 0x00, 0x00, 0x20, 0x0C, 0x22, 0x38]), "invalid date time"),
        # year 0, month 0, day 0, hours 24
        (bytes([0x00, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00]), "invalid date time"),
        # year 1581 (0x062D): before the Gregorian range, month and day not known
        (bytes([0x2D, 0x06, 0x00, 0x00, 0x0C, 0x22, 0x38]), "outside 1582..9999"),
        # year 0, month 2, day 30: no February has one
        (bytes([0x00, 0x00, 0x02, 0x1E, 0x0C, 0x22, 0x38]), r"invalid date \?\?\?\?-02-30"),
        # year 2026, month 4, day 31, minutes 60
        (bytes([0xEA, 0x07, 0x04, 0x1F, 0x0C, 0x3C, 0x38]), "invalid date time"),
    ],
)
def test_out_of_range_parts_are_still_refused(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        _decode("2a08", data)


# --- Blood Pressure Measurement (0x2A35) and Intermediate Cuff Pressure (0x2A36) ---------

#: Blood Pressure Measurement: flags 0x12 = units mmHg (bit 0 clear), Time Stamp present
#: (bit 1), Measurement Status present (bit 4); then the compound value, the time stamp,
#: the status.
BLOOD_PRESSURE = (
    bytes([0x12])  # flags
    + bytes([0x78, 0x00])  # systolic: SFLOAT 120, exponent 0
    + bytes([0x50, 0x00])  # diastolic: SFLOAT 80
    + bytes([0x5D, 0x00])  # mean arterial pressure: SFLOAT 93
    + UNKNOWN_DATE  # time stamp: Date Time
    + bytes([0x01, 0x00])  # measurement status: bit 0, body movement
)


def test_blood_pressure_with_an_unknown_date() -> None:
    record = decode_blood_pressure_measurement(BLOOD_PRESSURE)
    assert record.timestamp == AT_12_34_56
    assert record.as_json()["timestamp"] == "????-??-??T12:34:56"
    draft = _draft("2a35", BLOOD_PRESSURE)
    assert draft.device_time is None
    assert draft.quality == ("body_movement", DEVICE_TIME_PARTIAL)
    assert draft.values["systolic"] == 120.0
    assert draft.invalid == {}


def test_intermediate_cuff_pressure_with_an_unknown_date() -> None:
    data = (
        bytes([0x02])  # flags: mmHg, Time Stamp present
        + bytes([0x96, 0x00])  # current cuff pressure (the systolic field): SFLOAT 150
        + bytes([0xFF, 0x07])  # diastolic: unused, NaN (0x07FF)
        + bytes([0xFF, 0x07])  # mean arterial pressure: unused, NaN
        + UNKNOWN_DATE  # time stamp
    )
    record = _decode("2a36", data)
    assert record.as_json()["timestamp"] == "????-??-??T12:34:56"
    assert record.as_json()["cuff_pressure"] == 150.0
    assert record.reading() is None  # shown live, never stored


def test_a_full_time_stamp_behaves_as_before() -> None:
    full = BLOOD_PRESSURE.replace(
        UNKNOWN_DATE,
        bytes([0xEA, 0x07, 0x0B, 0x19, 0x0A, 0x1E, 0x00]),  # 2026-11-25 10:30:00
    )
    draft = _draft("2a35", full)
    assert draft.device_time == datetime(2026, 11, 25, 10, 30)
    assert draft.quality == ("body_movement",)


# --- Other measurements that embed a Date Time -------------------------------------------


def test_temperature_with_an_unknown_month_and_day() -> None:
    data = (
        bytes([0x02])  # flags: Celsius, Time Stamp present
        + bytes([0x6E, 0x01, 0x00, 0xFF])  # temperature: FLOAT 366 x 10^-1 = 36.6
        + bytes([0xEA, 0x07, 0x00, 0x00, 0x08, 0x00, 0x00])  # 2026, month 0, day 0, 08:00:00
    )
    record = _decode("2a1c", data)
    assert record.as_json()["timestamp"] == "2026-??-??T08:00:00"
    draft = _draft("2a1c", data)
    assert (draft.device_time, draft.quality) == (None, (DEVICE_TIME_PARTIAL,))


def test_weight_with_an_unknown_date() -> None:
    data = (
        bytes([0x02])  # flags: SI, Time Stamp present
        + bytes([0xB0, 0x36])  # weight: uint16 14000 x 0.005 kg = 70 kg
        + UNKNOWN_DATE  # time stamp
    )
    draft = _draft("2a9d", data)
    assert (draft.device_time, draft.quality) == (None, (DEVICE_TIME_PARTIAL,))
    assert draft.values["weight"] == 70.0


def test_glucose_with_an_unknown_base_date() -> None:
    data = (
        bytes([0x03])  # flags: time offset present, concentration and type present, kg/L
        + bytes([0x01, 0x00])  # sequence number 1
        + UNKNOWN_DATE  # base time: Date Time
        + bytes([0x05, 0x00])  # time offset: sint16, +5 minutes
        + bytes([0x5F, 0xB0])  # concentration: SFLOAT 95 x 10^-5 kg/L
        + bytes([0x11])  # type 1 (capillary whole blood), sample location 1 (finger)
    )
    record = _decode("2a18", data).as_json()
    assert record["base_time"] == "????-??-??T12:34:56"
    assert record["time_offset"] == 5
    assert record["timestamp"] is None  # the day the offset lands on is not known
    draft = _draft("2a18", data)
    assert (draft.device_time, draft.quality) == (None, (DEVICE_TIME_PARTIAL,))
    # Without an offset, the measurement's time stamp is the partial base time itself.
    no_offset = bytes([0x02]) + data[1:10] + data[12:]
    assert _decode("2a18", no_offset).as_json()["timestamp"] == "????-??-??T12:34:56"


def test_plx_spot_check_with_an_unknown_date() -> None:
    def spot_check(flags: int) -> bytes:
        return (
            bytes([flags])  # flags: bit 0 Timestamp present, bit 4 device clock not set
            + bytes([0x62, 0x00])  # SpO2: SFLOAT 98
            + bytes([0x48, 0x00])  # pulse rate: SFLOAT 72
            + UNKNOWN_DATE  # timestamp
        )

    draft = _draft("2a5e", spot_check(0x01))
    assert (draft.device_time, draft.quality) == (None, (DEVICE_TIME_PARTIAL,))
    # A device that says its clock is not set: its time is not a partial one, just none.
    unset = _draft("2a5e", spot_check(0x11))
    assert (unset.device_time, unset.quality) == (None, ())


# --- The reading, and the CLI ------------------------------------------------------------


def test_a_partial_time_is_timed_on_reception_and_says_why() -> None:
    reading = build_reading(_draft("2a35", BLOOD_PRESSURE), ORIGIN, 1, RECEIVED)
    assert reading.measured_at == reading.received_at == RECEIVED
    assert reading.device_time is None
    assert DEVICE_TIME_PARTIAL in reading.quality
    assert DEVICE_CLOCK_INVALID not in reading.quality  # the clock said nothing wrong


runner = CliRunner()


@pytest.mark.parametrize(
    ("name", "data"), [("2a08", UNKNOWN_DATE), ("2a35", BLOOD_PRESSURE)], ids=["alone", "2a35"]
)
def test_decode_command_shows_the_known_parts(name: str, data: bytes) -> None:
    result = runner.invoke(app, ["decode", name, data.hex(" ")])
    assert result.exit_code == 0, result.output
    decoded = json.loads(result.output)
    assert decoded["format"] == name
    assert decoded["timestamp"] == "????-??-??T12:34:56"
