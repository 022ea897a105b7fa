"""Nonin pulse oximeters over serial: the ASCII line output and binary Data Format 2.

Manuals followed:

- Data Format 2: Nonin OEM III module specification, "Data Format #2": 5-byte frames
  ``01 STATUS PLETH BYTE4 CHK`` with CHK the sum of the first four bytes modulo 256;
  25 frames make a packet (3 a second), the first with the SYNC bit. BYTE4 carries, by
  frame position, the heart rate (9 bits over two frames), SpO2, the firmware revision,
  and display-averaged (-D) and extended (E-) values. A heart rate of 511 and an SpO2
  of 127 mean "no value".
- ASCII output, one line a second, CR LF (Avant 9600 operator's manual, 5.3 "Real-Time
  Patient Data Output"): ``SPO2=XXX HR=YYY``, three digits each, ``---`` when there is
  no value (2500 PalmSAT and 8500 manuals, "Communications", "Serial Output"). Avant
  4000/4100 and 9600 ("Real-Time Patient Data Output"): `` F`` appended when DIP
  switch 8 selects the fast-responding values, ``*`` for an operator's event marker.
  9847 ("Communications", "Real-Time Serial Output") and 8600V ("Real-Time Data
  Output"): the line starts with the oximeter's clock, ``HH:MM:SS SPO2=XXX HR=YYY``;
  ``*`` marks an event, ``B`` a breath detected in the interval. At power-up a header
  (format, date and time) precedes the data: it is not a data line and is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time
from typing import Final

from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders.base import ReadingDraft, Record
from edge_agent.instruments.decoders.serial.framing import (
    DF2_FRAME,
    DF2_FRAMES_PER_PACKET,
    DF2_PACKET,
    DF2_START,
    DF2_STATUS_ALWAYS,
    DF2_SYNC,
    df2_frame_ok,
)
from edge_agent.instruments.decoders.serial.text import ascii_line
from edge_agent.instruments.readings import DEVICE_TIME_PARTIAL
from vigie_core.contract.data import ReadingKind

MISSING_HR: Final = 511
MISSING_SPO2: Final = 127
#: STATUS bits (OEM III, Data Format #2); RPRF and GPRF together mean yellow (marginal).
STATUS_BITS: Final = {
    6: "sensor_disconnected",
    5: "artifact",
    4: "out_of_track",
    3: "sensor_alarm",
}
_RED, _GREEN = 0x04, 0x02
#: Zero-based frame index of each BYTE4 value in a packet.
_HR_MSB, _HR_LSB, _SPO2, _REV = 0, 1, 2, 3
_SPO2_D, _SPO2_FAST, _SPO2_BB = 8, 9, 10
_E_HR_MSB, _E_HR_LSB, _E_SPO2, _E_SPO2_D = 13, 14, 15, 16
_HR_D_MSB, _HR_D_LSB, _E_HR_D_MSB, _E_HR_D_LSB = 19, 20, 21, 22


@dataclass(frozen=True, slots=True)
class NoninReading(Record):
    spo2: float | None
    pulse_rate: float | None
    status: frozenset[str] = frozenset()
    perfusion: str | None = None
    firmware_revision: int | None = None
    details: dict[str, int | None] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    #: The oximeter's clock (ASCII output of some models): a time of day, no date.
    time_of_day: time | None = None
    #: The fast-responding values rather than the averaged ones (ASCII `` F``).
    fast: bool = False

    def reading(self) -> ReadingDraft:
        quality = set(self.status)
        if self.perfusion in ("red", "yellow"):
            quality.add("low_perfusion" if self.perfusion == "red" else "marginal_perfusion")
        if self.time_of_day is not None:
            quality.add(DEVICE_TIME_PARTIAL)
        return ReadingDraft(
            kind=ReadingKind.PULSE_OXIMETRY,
            values={"spo2": self.spo2, "pulse_rate": self.pulse_rate},
            units={"spo2": "%", "pulse_rate": "/min"},
            invalid=self.invalid,
            quality=tuple(sorted(quality)),
            context={"averaging": "fast"} if self.fast else {},
        )


def _missing(values: dict[str, float | None], reason: str) -> dict[str, str]:
    return {name: reason for name, value in values.items() if value is None}


# --- Data Format 2 ----------------------------------------------------------------------


def _df2_error(reason: str) -> DecodeError:
    return DecodeError("nonin_df2", reason)


def decode_nonin_df2(frame: bytes) -> NoninReading:
    if len(frame) != DF2_PACKET:
        raise _df2_error(f"a packet is {DF2_PACKET} bytes (25 frames), got {len(frame)}")
    frames = [frame[i : i + DF2_FRAME] for i in range(0, DF2_PACKET, DF2_FRAME)]
    for index, item in enumerate(frames):
        if not df2_frame_ok(item):
            raise _df2_error(f"frame {index + 1}: bad start byte, status bit 7 or checksum")
        if bool(item[1] & DF2_SYNC) != (index == 0):
            raise _df2_error(f"frame {index + 1}: SYNC bit where it does not belong")
    byte4 = [item[3] for item in frames]

    def nine_bits(msb: int, lsb: int) -> int:
        return (byte4[msb] & 0x03) << 7 | (byte4[lsb] & 0x7F)

    def seven_bits(index: int) -> int:
        return byte4[index] & 0x7F

    heart = nine_bits(_HR_D_MSB, _HR_D_LSB)
    spo2 = seven_bits(_SPO2_D)
    if spo2 != MISSING_SPO2 and spo2 > 100:
        raise _df2_error(f"SpO2 {spo2} above 100 %")
    status_byte = frames[-1][1]  # the newest status of the packet
    status = frozenset(name for bit, name in STATUS_BITS.items() if status_byte >> bit & 1)
    perfusion = {_RED | _GREEN: "yellow", _RED: "red", _GREEN: "green"}.get(
        status_byte & (_RED | _GREEN)
    )
    values: dict[str, float | None] = {
        "spo2": None if spo2 == MISSING_SPO2 else float(spo2),
        "pulse_rate": None if heart == MISSING_HR else float(heart),
    }
    details: dict[str, int | None] = {
        "heart_rate": nine_bits(_HR_MSB, _HR_LSB),
        "spo2_4_beat": seven_bits(_SPO2),
        "spo2_fast": seven_bits(_SPO2_FAST),
        "spo2_beat_to_beat": seven_bits(_SPO2_BB),
        "extended_heart_rate": nine_bits(_E_HR_MSB, _E_HR_LSB),
        "extended_spo2": seven_bits(_E_SPO2),
        "extended_spo2_display": seven_bits(_E_SPO2_D),
        "extended_heart_rate_display": nine_bits(_E_HR_D_MSB, _E_HR_D_LSB),
    }
    return NoninReading(
        spo2=values["spo2"],
        pulse_rate=values["pulse_rate"],
        status=status,
        perfusion=perfusion,
        firmware_revision=byte4[_REV],
        details=details,
        invalid=_missing(values, "no_value"),
    )


def encode_nonin_df2_packet(
    spo2: int | None, pulse_rate: int | None, status: frozenset[str] = frozenset()
) -> bytes:
    """A DF2 packet carrying these values in every field (for simulators and tests)."""
    heart = MISSING_HR if pulse_rate is None else pulse_rate
    oxygen = MISSING_SPO2 if spo2 is None else spo2
    byte4 = [0] * DF2_FRAMES_PER_PACKET
    for msb, lsb in ((_HR_MSB, _HR_LSB), (_E_HR_MSB, _E_HR_LSB)):
        byte4[msb], byte4[lsb] = heart >> 7 & 0x03, heart & 0x7F
    for msb, lsb in ((_HR_D_MSB, _HR_D_LSB), (_E_HR_D_MSB, _E_HR_D_LSB)):
        byte4[msb], byte4[lsb] = heart >> 7 & 0x03, heart & 0x7F
    for index in (_SPO2, _SPO2_D, _SPO2_FAST, _SPO2_BB, _E_SPO2, _E_SPO2_D):
        byte4[index] = oxygen
    byte4[_REV] = 0x2A
    flags = DF2_STATUS_ALWAYS | _GREEN
    for bit, name in STATUS_BITS.items():
        if name in status:
            flags |= 1 << bit
    packet = bytearray()
    for index, value in enumerate(byte4):
        head = bytes([DF2_START, flags | (DF2_SYNC if index == 0 else 0), 0x40, value])
        packet += head + bytes([sum(head) & 0xFF])
    return bytes(packet)


# --- ASCII line output -------------------------------------------------------------------

_TEXT_RE: Final = re.compile(
    r"(?:(?P<time>\d{2}:\d{2}:\d{2}) +)?"
    r"SPO2=(?P<spo2>\d{3}|---) +HR=(?P<hr>\d{3}|---)(?P<markers>(?: *[FB*])*)"
)
#: Markers a line may end with, by the manuals above (``F``: a context, not a flag).
TEXT_MARKERS: Final = {"*": "event_marker", "B": "breath_detected"}


def decode_nonin_text(frame: bytes) -> NoninReading:
    """``[HH:MM:SS ]SPO2=097 HR=072[ F][*][B]``: the time of day, when the model sends
    one, is kept in the record but has no date, so the reading is timed on reception
    (quality ``device_time_partial``)."""
    line = ascii_line("nonin_text", frame).strip(" ")
    match = _TEXT_RE.fullmatch(line)
    if match is None:
        raise DecodeError(
            "nonin_text", f"{line[:30]!r} is not a data line [hh:mm:ss ]SPO2=ddd HR=ddd"
        )
    clock: time | None = None
    if match["time"] is not None:
        try:
            clock = time.fromisoformat(match["time"])
        except ValueError:
            raise DecodeError("nonin_text", f"time {match['time']} is not hh:mm:ss") from None
    markers = match["markers"].replace(" ", "")
    if len(set(markers)) != len(markers):
        raise DecodeError("nonin_text", f"marker repeated in {markers!r}")
    spo2 = None if match["spo2"] == "---" else float(match["spo2"])
    heart = None if match["hr"] == "---" else float(match["hr"])
    if spo2 is not None and spo2 > 100:
        raise DecodeError("nonin_text", f"SpO2 {spo2:g} above 100 %")
    values = {"spo2": spo2, "pulse_rate": heart}
    return NoninReading(
        spo2=spo2,
        pulse_rate=heart,
        status=frozenset(TEXT_MARKERS[marker] for marker in markers if marker in TEXT_MARKERS),
        invalid=_missing(values, "no_value"),
        time_of_day=clock,
        fast="F" in markers,
    )


def format_nonin_text(spo2: int | None, pulse_rate: int | None) -> bytes:
    """One line as a 2500 or Avant 9600 sends it, CR LF included (for simulators and
    tests)."""

    def field_text(value: int | None) -> str:
        return "---" if value is None else f"{value:03d}"

    return f"SPO2={field_text(spo2)} HR={field_text(pulse_rate)}\r\n".encode("ascii")
