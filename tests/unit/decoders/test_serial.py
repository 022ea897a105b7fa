"""Serial formats and framers.

NMEA vectors: the GGA and RMC examples of the NMEA 0183 standard as reproduced in
gpsd's "NMEA Revealed" (gpsd.gitlab.io/gpsd/NMEA.html) and in pynmea2's tests
(Knio/pynmea2, test/test_types.py). Nonin DF2 packets are built field by field from
the OEM III specification's frame layout. The A&D, Nonin text and Tanita lines are in
test_serial_lines.py, from their manuals' samples.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders import registry
from edge_agent.instruments.decoders.serial.framing import Garbage, LineFramer, NoninDf2Framer
from edge_agent.instruments.decoders.serial.nmea import format_nmea
from edge_agent.instruments.decoders.serial.nonin import encode_nonin_df2_packet

GGA = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"


# --- NMEA ---------------------------------------------------------------------------------


def test_gga_standard_example() -> None:
    decoded = registry.decode("nmea", GGA).as_json()
    assert decoded["latitude"] == pytest.approx(48 + 7.038 / 60)
    assert decoded["longitude"] == pytest.approx(11 + 31.0 / 60)
    assert (decoded["altitude"], decoded["satellites"], decoded["hdop"]) == (545.4, 8, 0.9)
    assert (decoded["fix_quality"], decoded["fix_valid"]) == ("gps", True)


def test_rmc_standard_example_carries_utc_time() -> None:
    draft = registry.decode("nmea", RMC).reading()
    assert draft is not None
    assert draft.device_time is not None
    assert draft.device_time.isoformat() == "1994-03-23T12:35:19+00:00"
    assert (draft.values["speed"], draft.units["speed"]) == (22.4, "[kn_i]")
    assert draft.values["course"] == 84.4


def test_southern_and_western_hemispheres_are_negative() -> None:
    line = format_nmea("GNRMC,001225.00,A,3351.600,S,15112.300,W,0.0,0.0,251126,,,A")
    draft = registry.decode("nmea", line.encode()).reading()
    assert draft is not None
    assert draft.values["latitude"] == pytest.approx(-(33 + 51.6 / 60))
    assert draft.values["longitude"] == pytest.approx(-(151 + 12.3 / 60))


@pytest.mark.parametrize(
    "body",
    [
        "GPGGA,123519,,,,,0,00,,,M,,M,,",  # fix quality 0
        "GPRMC,123519,V,4807.038,N,01131.000,E,,,230394,,,N",  # status V, mode N
    ],
)
def test_no_fix_is_null_with_reason(body: str) -> None:
    draft = registry.decode("nmea", format_nmea(body).encode()).reading()
    assert draft is not None
    assert draft.values["latitude"] is None
    assert draft.invalid["latitude"] == "no_fix"
    assert draft.quality == ("no_fix",)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (GGA[:-2] + b"48", "checksum"),
        (GGA[:-3], "not an NMEA sentence"),
        (format_nmea("GPGSV,3,1,11,03,03,111,00").encode(), "unsupported sentence GSV"),
        (
            format_nmea("GPGGA,123519,4807.038,X,01131.000,E,1,08,0.9,545.4,M,46.9,M,,").encode(),
            "hemisphere",
        ),
        (
            format_nmea("GPGGA,123519,9107.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,").encode(),
            "out of range",
        ),
        (
            format_nmea("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,300294,,").encode(),
            "does not exist",
        ),
        ("$GPGGA,é*00".encode(), "not ASCII"),
    ],
)
def test_nmea_refusals(line: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        registry.decode("nmea", line)


# --- Nonin --------------------------------------------------------------------------------


def test_nonin_df2_packet_round_trip_and_status() -> None:
    packet = encode_nonin_df2_packet(97, 72, frozenset({"artifact"}))
    assert len(packet) == 125
    record = registry.decode("nonin_df2", packet)
    draft = record.reading()
    assert draft is not None
    assert dict(draft.values) == {"spo2": 97.0, "pulse_rate": 72.0}
    assert draft.quality == ("artifact",)
    # A heart rate above 127 needs the MSB frame: 9 bits over two frames.
    fast = registry.decode("nonin_df2", encode_nonin_df2_packet(95, 210)).reading()
    assert fast is not None
    assert fast.values["pulse_rate"] == 210.0


def test_nonin_df2_missing_values_are_null() -> None:
    draft = registry.decode(
        "nonin_df2", encode_nonin_df2_packet(None, None, frozenset({"sensor_disconnected"}))
    ).reading()
    assert draft is not None
    assert dict(draft.values) == {"spo2": None, "pulse_rate": None}
    assert dict(draft.invalid) == {"spo2": "no_value", "pulse_rate": "no_value"}
    assert "sensor_disconnected" in draft.quality


def test_nonin_df2_refusals() -> None:
    packet = bytearray(encode_nonin_df2_packet(97, 72))
    with pytest.raises(DecodeError, match="125 bytes"):
        registry.decode("nonin_df2", bytes(packet[:120]))
    broken = bytearray(packet)
    broken[7] ^= 0x01  # frame 2's PLETH byte: its checksum no longer matches
    with pytest.raises(DecodeError, match="frame 2"):
        registry.decode("nonin_df2", bytes(broken))
    shifted = packet[5:] + packet[:5]  # starts on a frame without SYNC
    with pytest.raises(DecodeError, match="SYNC"):
        registry.decode("nonin_df2", bytes(shifted))


# --- framing ------------------------------------------------------------------------------


def _frames(events: list[bytes | Garbage]) -> list[bytes]:
    return [event for event in events if isinstance(event, bytes)]


def _garbage(events: list[bytes | Garbage]) -> int:
    return sum(event.size for event in events if isinstance(event, Garbage))


def test_line_framer_handles_every_line_end_and_bounds_its_buffer() -> None:
    framer = LineFramer(max_length=16)
    assert _frames(framer.feed(b"a\rb\nc\r\n\r\nd")) == [b"a", b"b", b"c"]
    assert _frames(framer.feed(b"\n")) == [b"d"]
    flood = framer.feed(b"x" * 1000)
    assert _frames(flood) == []
    assert len(framer._buffer) <= 16
    tail = framer.feed(b"\nok\n")
    assert _frames(tail) == [b"ok"]
    assert _garbage(flood) + _garbage(tail) == 1000


def test_df2_framer_resynchronises_after_garbage_and_half_frames() -> None:
    one, two = encode_nonin_df2_packet(97, 72), encode_nonin_df2_packet(96, 80)
    stream = b"\x01\x80\x00" + one[:60] + b"\xff\x00\x01" + one + two[:3] + two
    events = NoninDf2Framer().feed(stream)
    assert _frames(events) == [one, two]
    assert _garbage(events) > 0


@given(st.lists(st.integers(min_value=0, max_value=1), min_size=1, max_size=40), st.randoms())
def test_framers_give_the_same_frames_whatever_the_chunking(
    choices: list[int], rng: random.Random
) -> None:
    pieces = [encode_nonin_df2_packet(97, 72), b"\x01\x81junk", b"\xff" * 7]
    stream = b"".join(pieces[choice * 2 if rng.random() < 0.3 else choice] for choice in choices)
    lines = stream.replace(b"\xff", b"\n")
    for make, data in ((NoninDf2Framer, stream), (lambda: LineFramer(32), lines)):
        whole = make().feed(data)
        framer = make()
        cuts = sorted(rng.sample(range(len(data) + 1), k=min(5, len(data) + 1)))
        chunked: list[bytes | Garbage] = []
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            chunked += framer.feed(data[start:end])
        assert _frames(chunked) == _frames(whole)
        assert _garbage(chunked) == _garbage(whole)
