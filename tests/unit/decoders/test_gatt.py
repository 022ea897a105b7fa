"""GATT decoders against the specifications' layouts and other implementations' vectors.

Vectors marked "Nordic" come from NordicSemiconductor/Android-BLE-Common-Library,
ble-common/src/test/java/no/nordicsemi/android/ble/common/callback/ (the file named
next to each), whose tests build each value field by field from the specification.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders import registry
from edge_agent.instruments.decoders.gatt import short_uuid
from edge_agent.instruments.decoders.gatt.date_time import encode_current_time, encode_date_time
from edge_agent.instruments.decoders.gatt.glucose import (
    racp_report_all_records,
    racp_report_number_of_records,
    racp_report_records_from,
)
from edge_agent.instruments.decoders.gatt.ieee11073 import (
    SpecialValue,
    encode_float,
    encode_sfloat,
    float32,
    sfloat,
)
from vigie_core.contract.data import ReadingKind


def _decode(name: str, hex_text: str) -> dict[str, object]:
    return registry.decode(name, bytes.fromhex(hex_text.replace(" ", ""))).as_json()


# --- IEEE 11073-20601 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (0x0078, 120.0),  # exponent 0
        (0xF0BD, 18.9),  # exponent -1, Nordic BloodPressureMeasurementDataCallbackTest
        (0x2001, 100.0),  # exponent 2, mantissa 1
        (0x0FFD, -3.0),  # negative mantissa (two's complement 12 bits)
        (0xE7FD, 20.45),  # exponent -2, mantissa 2045 (the largest ordinary one)
        (0xE803, -20.45),  # exponent -2, mantissa -2045
    ],
)
def test_sfloat_values(raw: int, value: float) -> None:
    assert sfloat(raw).value == value
    assert sfloat(raw).special is None


@pytest.mark.parametrize(
    ("mantissa", "special"),
    [
        (0x07FF, SpecialValue.NAN),
        (0x0800, SpecialValue.NRES),
        (0x07FE, SpecialValue.POSITIVE_INFINITY),
        (0x0802, SpecialValue.NEGATIVE_INFINITY),
        (0x0801, SpecialValue.RESERVED),
    ],
)
@pytest.mark.parametrize("exponent", [0x0, 0x8, 0xF])
def test_sfloat_specials_never_become_numbers(
    mantissa: int, special: SpecialValue, exponent: int
) -> None:
    decoded = sfloat(exponent << 12 | mantissa)
    assert decoded.value is None
    assert decoded.special is special


@pytest.mark.parametrize(
    ("mantissa", "special"),
    [
        (0x7FFFFF, SpecialValue.NAN),
        (0x800000, SpecialValue.NRES),
        (0x7FFFFE, SpecialValue.POSITIVE_INFINITY),
        (0x800002, SpecialValue.NEGATIVE_INFINITY),
        (0x800001, SpecialValue.RESERVED),
    ],
)
def test_float_specials_never_become_numbers(mantissa: int, special: SpecialValue) -> None:
    for exponent in (0x00, 0x80, 0xFE):
        decoded = float32(exponent << 24 | mantissa)
        assert (decoded.value, decoded.special) == (None, special)


def test_float_values_are_exact() -> None:
    assert float32(0xFE000EB0).value == 37.6  # Nordic TemperatureMeasurementDataCallbackTest
    assert float32(0xFF00016E).value == 36.6
    assert float32(0x00FFFFFF).value == -1.0
    assert float32(0x01000005).value == 50.0


@pytest.mark.parametrize("value", ["36.6", "-40.5", "0", "2045", "-0.1"])
def test_medical_float_round_trips(value: str) -> None:
    from decimal import Decimal

    exponent = -1 if "." in value else 0
    assert sfloat(encode_sfloat(Decimal(value), exponent)).value == float(value)
    assert float32(encode_float(Decimal(value), exponent)).value == float(value)


def test_encoders_refuse_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="mantissa"):
        encode_sfloat(2046)  # would be +INF
    with pytest.raises(ValueError, match="exponent"):
        encode_sfloat(1, 8)


# --- Blood pressure -----------------------------------------------------------------------


def test_blood_pressure_full_nordic_vector() -> None:
    # Nordic bps/BloodPressureMeasurementDataCallbackTest, onBloodPressureMeasurementReceived_full:
    # the year is 0 ("not known"): the time stamp keeps the known parts, nothing made up.
    decoded = _decode("2a35", "1E 8A00 5800 7800 0000 04 11 14 29 3B 3C00 01 2700")
    assert decoded == {
        "systolic": 138.0,
        "diastolic": 88.0,
        "mean_arterial_pressure": 120.0,
        "unit": "mm[Hg]",
        "timestamp": "????-04-17T20:41:59",
        "pulse_rate": 60.0,
        "user_id": 1,
        "measurement_status": [
            "body_movement",
            "cuff_fit_loose",
            "improper_measurement_position",
            "irregular_pulse",
        ],
        "invalid": {},
    }


def test_blood_pressure_kpa_with_pulse_range_nordic_vector() -> None:
    # Nordic ..._some: kPa, pulse rate, status 0b010010 (cuff loose, pulse below range).
    decoded = _decode("2a35", "15 BDF0 0B00 9FF0 3C00 1200")
    assert (decoded["systolic"], decoded["diastolic"], decoded["mean_arterial_pressure"]) == (
        18.9,
        11.0,
        15.9,
    )
    assert decoded["unit"] == "kPa"
    assert decoded["measurement_status"] == ["cuff_fit_loose", "pulse_rate_below_lower_limit"]
    assert decoded["user_id"] is None


def test_blood_pressure_reading_has_time_units_and_quality() -> None:
    record = registry.decode("2a35", bytes.fromhex("1f780050005e00ea070b190a1e004800ff0100"))
    draft = record.reading()
    assert draft is not None
    assert draft.kind is ReadingKind.BLOOD_PRESSURE
    assert draft.device_time == datetime(2026, 11, 25, 10, 30, 0)
    assert draft.units["systolic"] == "kPa"
    assert draft.quality == ("body_movement",)
    assert record.as_json()["user_id"] is None  # 0xFF: unknown user


def test_blood_pressure_specials_are_null_with_reason() -> None:
    # Systolic NaN (0x07FF), diastolic NRes (0x0800), MAP +INF (0x07FE).
    record = registry.decode("2a35", bytes.fromhex("00 ff07 0008 fe07"))
    draft = record.reading()
    assert draft is not None
    assert dict(draft.values) == {
        "systolic": None,
        "diastolic": None,
        "mean_arterial_pressure": None,
    }
    assert dict(draft.invalid) == {
        "systolic": "nan",
        "diastolic": "nres",
        "mean_arterial_pressure": "positive_infinity",
    }


@pytest.mark.parametrize(
    ("hex_text", "reason"),
    [
        ("010203040506", "needs 7 bytes, got 6"),  # Nordic onInvalidDataReceived_toShort
        ("03020304050607", "timestamp"),  # Nordic ..._noTimestamp: flags say a time follows
        ("20 7800 5000 5e00", "reserved flag bits"),
        ("00 7800 5000 5e00 00", "trailing"),
        ("10 7800 5000 5e00 1800", "pulse rate range 3"),
        ("10 7800 5000 5e00 4000", "reserved bits"),
        ("02 7800 5000 5e00 ea07 0d01 000000", "invalid date time"),
    ],
)
def test_blood_pressure_refusals(hex_text: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        _decode("2a35", hex_text)


def test_every_truncation_of_a_full_measurement_is_refused() -> None:
    full = bytes.fromhex("1E8A00580078000000041114293B3C00012700")
    for size in range(len(full)):
        with pytest.raises(DecodeError):
            registry.decode("2a35", full[:size])


def test_intermediate_cuff_pressure_is_not_a_reading() -> None:
    record = registry.decode("2a36", bytes.fromhex("00 6e00 ff07 ff07"))
    assert record.as_json()["cuff_pressure"] == 110.0
    assert record.reading() is None


# --- Thermometer --------------------------------------------------------------------------


def test_temperature_nordic_vector() -> None:
    # Nordic ht/TemperatureMeasurementDataCallbackTest.
    record = registry.decode("2a1c", bytes.fromhex("06B00E00FEDC070C050B321B04"))
    assert record.as_json() == {
        "temperature": 37.6,
        "unit": "Cel",
        "timestamp": "2012-12-05T11:50:27",
        "temperature_type": "finger",
        "invalid": {},
    }
    draft = record.reading()
    assert draft is not None
    assert dict(draft.context) == {"temperature_type": "finger"}
    with pytest.raises(DecodeError):  # the same without its type byte (Nordic, invalid)
        registry.decode("2a1c", bytes.fromhex("06B00E00FEDC070C050B321B"))


def test_fahrenheit_and_temperature_types() -> None:
    record = registry.decode("2a1c", bytes.fromhex("01 da0300ff"))  # 986 * 10**-1 degF
    assert (record.as_json()["temperature"], record.as_json()["unit"]) == (98.6, "[degF]")
    assert registry.decode("2a1d", b"\x09").as_json() == {"temperature_type": "tympanum"}
    for code in (0, 10, 255):
        with pytest.raises(DecodeError, match="reserved"):
            registry.decode("2a1d", bytes([code]))
    assert registry.decode("2a1e", bytes.fromhex("00 6e0100ff")).reading() is None


# --- Weight -------------------------------------------------------------------------------


def test_weight_si_with_bmi_and_height() -> None:
    # 0x2260 * 0.005 kg = 44.0 kg; BMI 247 * 0.1; height 1700 * 0.001 m.
    record = registry.decode("2a9d", bytes.fromhex("0e 6022 e3070c1f0f2d00 01 f700 a406"))
    assert record.as_json() == {
        "weight": 44.0,
        "weight_unit": "kg",
        "timestamp": "2019-12-31T15:45:00",
        "user_id": 1,
        "bmi": 24.7,
        "height": 1.7,
        "height_unit": "m",
        "invalid": {},
    }


def test_weight_imperial() -> None:
    # 0x3a98 = 15000 * 0.01 lb = 150 lb; height 670 * 0.1 in = 67 in.
    record = registry.decode("2a9d", bytes.fromhex("09 983a 0101 9e02"))
    draft = record.reading()
    assert draft is not None
    assert dict(draft.values) == {"weight": 150.0, "bmi": 25.7, "height": 67.0}
    assert dict(draft.units) == {"weight": "[lb_av]", "bmi": "kg/m2", "height": "[in_i]"}


def test_unsuccessful_weighing_is_null_with_reason() -> None:
    draft = registry.decode("2a9d", bytes.fromhex("00 ffff")).reading()
    assert draft is not None
    assert dict(draft.values) == {"weight": None}
    assert dict(draft.invalid) == {"weight": "measurement_unsuccessful"}
    with pytest.raises(DecodeError, match="reserved flag"):
        registry.decode("2a9d", bytes.fromhex("10 6022"))


# --- Pulse oximetry -----------------------------------------------------------------------


def test_plx_spot_check_with_every_field() -> None:
    data = bytes.fromhex(
        "1f"  # timestamp, measurement status, device status, PAI, device clock not set
        "6100"  # SpO2 97
        "4800"  # PR 72
        "ea070b190a1e00"  # 2026-11-25 10:30:00
        "2000"  # measurement ongoing (bit 5)
        "200000"  # low perfusion (bit 5)
        "2ef0"  # PAI 4.6 %
    )
    record = registry.decode("2a5e", data)
    assert record.as_json()["measurement_status"] == ["measurement_ongoing"]
    assert record.as_json()["device_and_sensor_status"] == ["low_perfusion_detected"]
    draft = record.reading()
    assert draft is not None
    assert dict(draft.values) == {"spo2": 97.0, "pulse_rate": 72.0, "perfusion_index": 4.6}
    assert draft.device_time is None  # the device says its clock is not set
    assert draft.quality == ("low_perfusion_detected", "measurement_ongoing")


def test_plx_continuous_with_fast_and_slow() -> None:
    data = bytes.fromhex("03 6100 4800 6200 4900 6000 4700")
    record = registry.decode("2a5f", data)
    assert record.as_json()["spo2_fast"] == 98.0
    assert record.as_json()["pulse_rate_slow"] == 71.0
    assert registry.decode("2a5f", bytes.fromhex("00 ff07 4800")).reading().invalid == {  # type: ignore[union-attr]
        "spo2": "nan"
    }


@pytest.mark.parametrize("flags", range(32))
def test_plx_every_flag_combination_decodes_its_own_layout(flags: int) -> None:
    spot = bytearray([flags]) + bytes.fromhex("6100 4800")
    if flags & 0x01:
        spot += bytes.fromhex("ea070b190a1e00")
    if flags & 0x02:
        spot += bytes.fromhex("8000")  # validated data
    if flags & 0x04:
        spot += bytes.fromhex("000100")  # questionable pulse (bit 8)
    if flags & 0x08:
        spot += bytes.fromhex("2ef0")
    record = registry.decode("2a5e", bytes(spot)).as_json()
    assert (record["timestamp"] is not None) == bool(flags & 0x01)
    assert record["measurement_status"] == (["validated_data"] if flags & 0x02 else [])
    assert record["device_clock_not_set"] == bool(flags & 0x10)
    continuous = bytearray([flags]) + bytes.fromhex("6100 4800")
    for bit, extra in (
        (0x01, "6200 4900"),
        (0x02, "6000 4700"),
        (0x04, "8000"),
        (0x08, "000100"),
        (0x10, "2ef0"),
    ):
        if flags & bit:
            continuous += bytes.fromhex(extra)
    decoded = registry.decode("2a5f", bytes(continuous)).as_json()
    assert (decoded["spo2_fast"] == 98.0) == bool(flags & 0x01)
    assert (decoded["pulse_amplitude_index"] == 4.6) == bool(flags & 0x10)


# --- Glucose and RACP ---------------------------------------------------------------------


def test_glucose_nordic_vector() -> None:
    # Nordic glucose/GlucoseMeasurementDataCallbackTest: seq 1, 2019-02-27 11:10:30 with a
    # -5 min offset, 30 kg/L (SFLOAT 0x001E), capillary plasma from a finger, status 261.
    record = registry.decode("2a18", bytes.fromhex("1B0100E307021B0B0A1EFBFF1E00120501"))
    decoded = record.as_json()
    assert decoded["sequence_number"] == 1
    assert decoded["timestamp"] == "2019-02-27T11:05:30"
    assert (decoded["glucose_concentration"], decoded["unit"]) == (30.0, "kg/L")
    assert (decoded["type"], decoded["sample_location"]) == ("capillary_plasma", "finger")
    assert decoded["sensor_status_annunciation"] == [
        "device_battery_low",
        "sample_size_insufficient",
        "sensor_temperature_too_low",
    ]
    assert decoded["context_information_follows"] is True
    # Nordic's invalid case: the time offset the flags announce is missing.
    with pytest.raises(DecodeError):
        registry.decode("2a18", bytes.fromhex("1B0000E207041A0B091E1E00120501"))
    # 9999-12-31 23:59:59 plus 32767 minutes is past what a time can hold: refused.
    with pytest.raises(DecodeError, match="past year 9999"):
        registry.decode("2a18", bytes.fromhex("01 0100 0f270c1f173b3b ff7f"))


def test_glucose_reading_keeps_the_device_unit() -> None:
    # 95 mg/dL = 0.00095 kg/L: mantissa 95, exponent -5 (0xB05F).
    draft = registry.decode("2a18", bytes.fromhex("02 0700 ea070b190a1e00 5fb0 11")).reading()
    assert draft is not None
    assert dict(draft.values) == {"glucose_concentration": 0.00095}
    assert dict(draft.units) == {"glucose_concentration": "kg/L"}
    assert draft.context["sample_type"] == "capillary_whole_blood"


def test_racp_requests_and_responses() -> None:
    assert racp_report_all_records() == bytes([0x01, 0x01])
    assert racp_report_number_of_records() == bytes([0x04, 0x01])
    assert racp_report_records_from(0x0102) == bytes([0x01, 0x03, 0x01, 0x02, 0x01])
    assert registry.decode("2a52", bytes.fromhex("05 00 0a00")).as_json()["number_of_records"] == 10
    response = registry.decode("2a52", bytes.fromhex("06 00 01 06")).as_json()
    assert (response["request_op_code"], response["response_code"]) == (
        "report_stored_records",
        "no_records_found",
    )
    with pytest.raises(DecodeError, match="request"):
        registry.decode("2a52", bytes.fromhex("01 01"))


# --- Device, battery, time ----------------------------------------------------------------


def test_battery_and_device_information() -> None:
    assert registry.decode("2a19", b"\x5a").as_json() == {"battery_level": 90}
    with pytest.raises(DecodeError, match="above 100"):
        registry.decode("2a19", b"\x65")
    assert registry.decode("2a25", b"5120345\x00\x00").as_json() == {
        "characteristic": "serial_number",
        "value": "5120345",
    }
    with pytest.raises(DecodeError, match="UTF-8"):
        registry.decode("2a29", b"\xff\xfe")


def test_date_times_and_their_encoders() -> None:
    at = datetime(2026, 11, 25, 10, 30, 15, 500_000)
    assert registry.decode("2a08", encode_date_time(at)).as_json()["timestamp"] == (
        "2026-11-25T10:30:15"
    )
    current = registry.decode(
        "2a2b", encode_current_time(at, frozenset({"manual_time_update"}))
    ).as_json()
    assert current == {
        "timestamp": "2026-11-25T10:30:15",
        "day_of_week": "wednesday",
        "fractions256": 128,
        "adjust_reason": ["manual_time_update"],
        "invalid": {},
    }
    unknown = registry.decode("2a0a", bytes(8)).as_json()  # no date; hour 0 is midnight
    assert unknown["timestamp"] == "????-??-??T00:00:00"
    assert unknown["invalid"] == {"timestamp": "partial"}
    with pytest.raises(DecodeError, match="invalid date"):
        registry.decode("2a08", bytes.fromhex("ea07 021e 000000"))  # 30 February


@pytest.mark.parametrize(
    "spelling", ["2a35", "2A35", "0x2A35", "00002a35-0000-1000-8000-00805f9b34fb"]
)
def test_uuid_spellings(spelling: str) -> None:
    assert short_uuid(spelling) == "2a35"
    assert registry.resolve(spelling).name == "2a35"


def test_vendor_uuids_are_not_sig_ones() -> None:
    with pytest.raises(ValueError, match="SIG"):
        short_uuid("6e400001-b5a3-f393-e0a9-e50e24dcca9e")
