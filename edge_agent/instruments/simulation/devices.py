"""Byte-level simulated devices: a simulated sample as the bytes a real instrument
sends, so that the demo and the tests exercise the real decoders. Pure.

Serial devices' encoders give the bytes on the wire, in the form the manuals document
(line ends included, see each decoder's docstring), and :func:`frame_for` cuts them
with the format's own framer, as the serial driver does.

Each profile's main format has an encoder here; BLE devices also report their
battery level and serial number, as real ones do through the Battery and Device
Information services.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Final

from edge_agent.instruments.decoders.gatt.date_time import encode_date_time
from edge_agent.instruments.decoders.gatt.ieee11073 import SpecialValue, encode_float, encode_sfloat
from edge_agent.instruments.decoders.registry import framer_for, new_framer
from edge_agent.instruments.decoders.serial.and_scale import format_and_line
from edge_agent.instruments.decoders.serial.nmea import format_nmea
from edge_agent.instruments.decoders.serial.nonin import encode_nonin_df2_packet, format_nonin_text
from edge_agent.instruments.decoders.serial.tanita import format_tanita_record
from edge_agent.instruments.profiles import DeviceProfile
from edge_agent.instruments.simulation.instruments import SimulatedValues

Frames = list[tuple[str, bytes]]
Encoder = Callable[[SimulatedValues, datetime, random.Random], bytes]

KNOTS_PER_KMH: Final = Decimal(1) / Decimal("1.852")


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "little")


def _sfloat(value: float | None, exponent: int = 0) -> bytes:
    if value is None:
        return _u16(encode_sfloat(SpecialValue.NAN))
    return _u16(encode_sfloat(Decimal(str(value)), exponent))


def _blood_pressure(sample: SimulatedValues, at: datetime, rng: random.Random) -> bytes:
    """0x2A35 in mmHg with a time stamp and the pulse rate (flags 0x06)."""
    values = sample.values
    return (
        bytes([0x06])
        + _sfloat(values.get("systolic"))
        + _sfloat(values.get("diastolic"))
        + _sfloat(values.get("mean_arterial_pressure"), -1)
        + encode_date_time(at)
        + _sfloat(values.get("pulse_rate"))
    )


def _temperature(sample: SimulatedValues, at: datetime, rng: random.Random) -> bytes:
    """0x2A1C in Celsius with a time stamp and the type (flags 0x06): tympanum."""
    raw = encode_float(Decimal(str(sample.values["temperature"])), -1)
    return bytes([0x06]) + raw.to_bytes(4, "little") + encode_date_time(at) + bytes([9])


def _weight(sample: SimulatedValues, at: datetime, rng: random.Random) -> bytes:
    """0x2A9D in SI units (0.005 kg steps) with a time stamp (flags 0x02)."""
    weight = sample.values["weight"] or 0.0
    return bytes([0x02]) + _u16(round(weight / 0.005)) + encode_date_time(at)


def _spot_check(sample: SimulatedValues, at: datetime, rng: random.Random) -> bytes:
    """0x2A5E with a time stamp (flags 0x01)."""
    values = sample.values
    return (
        bytes([0x01])
        + _sfloat(values.get("spo2"))
        + _sfloat(values.get("pulse_rate"))
        + encode_date_time(at)
    )


def _glucose(sample: SimulatedValues, at: datetime, rng: random.Random) -> bytes:
    """0x2A18 in kg/L (flags 0x02), capillary whole blood from a finger; the meter's
    record number follows its clock, as a meter's memory does."""
    mg_dl = round(sample.values["glucose_concentration"] or 0.0)
    sequence = int(at.timestamp()) // 60 & 0xFFFF
    concentration = _u16(encode_sfloat(Decimal(mg_dl).scaleb(-5), -5))  # 1 mg/dL = 1e-5 kg/L
    return bytes([0x02]) + _u16(sequence) + encode_date_time(at) + concentration + bytes([0x11])


def _nonin_df2(sample: SimulatedValues, at: datetime, rng: random.Random) -> bytes:
    spo2, pulse = sample.values.get("spo2"), sample.values.get("pulse_rate")
    return encode_nonin_df2_packet(
        None if spo2 is None else round(spo2), None if pulse is None else round(pulse)
    )


def _nonin_text(sample: SimulatedValues, at: datetime, rng: random.Random) -> bytes:
    """A Nonin 2500 / Avant 9600 line: ``SPO2=097 HR=072`` CR LF (no clock, no marker)."""
    spo2, pulse = sample.values.get("spo2"), sample.values.get("pulse_rate")
    return format_nonin_text(
        None if spo2 is None else round(spo2), None if pulse is None else round(pulse)
    )


def _and_scale(sample: SimulatedValues, at: datetime, rng: random.Random) -> bytes:
    """A stable weight in kg, as a scale set to print on stability sends it, CR LF."""
    return format_and_line(sample.values["weight"] or 0.0)


def _tanita(sample: SimulatedValues, at: datetime, rng: random.Random) -> bytes:
    """An SC-240 record in kg/cm mode, standard body type: the items and their order
    of the manual's table ("Connection with a personal computer"), and what the
    analyser says about the person (gender, age), which the decoder must drop. The
    SC-240 has no clock: no date or time."""
    v = {name: value or 0.0 for name, value in sample.values.items()}
    bone = round(v["fat_free_mass"] * 0.048, 1)
    ideal = round(22 * (v["height"] / 100) ** 2, 1)
    kilojoules = round(v["basal_metabolic_rate"])
    pairs = [
        ("MO", '"SC-240"'),
        ("SN", '"00000002"'),
        ("Bt", "0"),
        ("GE", str(rng.randint(1, 2))),
        ("AG", str(rng.randint(18, 90))),
        ("Hm", f"{v['height']:g}"),
        ("Pt", "0.0"),
        ("Wk", f"{v['weight']:.1f}"),
        ("FW", f"{v['body_fat_percentage']:.1f}"),
        ("fW", f"{v['fat_mass']:.1f}"),
        ("MW", f"{v['fat_free_mass']:.1f}"),
        ("mW", f"{v['fat_free_mass'] - bone:.1f}"),
        ("sW", str(rng.randint(1, 24))),
        ("bW", f"{bone:.1f}"),
        ("wW", f"{v['total_body_water']:.1f}"),
        ("ww", f"{v['total_body_water'] / v['weight'] * 100:.1f}"),
        ("MI", f"{v['bmi']:.1f}"),
        ("Sw", f"{ideal:.1f}"),
        ("OV", f"{(v['weight'] - ideal) / ideal * 100:.1f}"),
        ("IF", str(rng.randint(1, 30))),
        ("rb", str(kilojoules)),
        ("rB", str(round(kilojoules / 4.184))),
        ("rJ", str(rng.randint(1, 24))),
        ("rA", str(rng.randint(12, 90))),
        ("ZF", f"{v['impedance']:.1f}"),
    ]
    return format_tanita_record(pairs)


def _nmea(sample: SimulatedValues, at: datetime, rng: random.Random) -> bytes:
    """An RMC sentence: position, speed, course and the UTC date and time, CR LF."""
    utc = at
    lat, lon = sample.values["latitude"] or 0.0, sample.values["longitude"] or 0.0
    knots = Decimal(str(sample.values.get("speed") or 0.0)) * KNOTS_PER_KMH
    lat_text = f"{int(abs(lat)):02d}{(abs(lat) % 1) * 60:07.4f},{'N' if lat >= 0 else 'S'}"
    lon_text = f"{int(abs(lon)):03d}{(abs(lon) % 1) * 60:07.4f},{'E' if lon >= 0 else 'W'}"
    body = (
        f"GPRMC,{utc:%H%M%S}.00,A,{lat_text},{lon_text},{knots:.1f},"
        f"{rng.uniform(0, 359.9):.1f},{utc:%d%m%y},,,A"
    )
    return f"{format_nmea(body)}\r\n".encode("ascii")  # NMEA 0183: CR LF ends a sentence


ENCODERS: Final[dict[str, Encoder]] = {
    "2a35": _blood_pressure,
    "2a1c": _temperature,
    "2a9d": _weight,
    "2a5e": _spot_check,
    "2a18": _glucose,
    "nonin_df2": _nonin_df2,
    "nonin_text": _nonin_text,
    "and_standard": _and_scale,
    "tanita": _tanita,
    "nmea": _nmea,
}
#: Formats whose times are UTC rather than the device's local time.
_UTC_FORMATS: Final = frozenset({"nmea"})


def frame_for(
    profile: DeviceProfile,
    device_id: str,
    sample: SimulatedValues,
    local: datetime,
    utc: datetime,
    rng: random.Random,
) -> Frames:
    """The frames a device of ``profile`` would send for ``sample`` at ``local`` time
    (naive, the site's), as (format, bytes); battery and serial number first for BLE."""
    format_name = next(name for name in profile.decoders if name in ENCODERS)
    at = utc.replace(tzinfo=None) if format_name in _UTC_FORMATS else local
    frames: Frames = []
    if profile.ble is not None:
        serial = f"SIM{zlib.crc32(device_id.encode()):08X}"
        frames += [("2a25", serial.encode("ascii")), ("2a19", bytes([rng.randint(20, 100)]))]
    data = ENCODERS[format_name](sample, at, rng)
    if framer_for(format_name) is None:
        frames.append((format_name, data))
    else:
        # The bytes on the wire, through the framer the serial driver uses.
        framed = new_framer(format_name).feed(data)
        frames += [(format_name, frame) for frame in framed if isinstance(frame, bytes)]
    return frames


def encodable(profile: DeviceProfile) -> bool:
    """Whether a simulated device can speak this profile's main format."""
    return any(name in ENCODERS for name in profile.decoders)
