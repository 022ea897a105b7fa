"""Simulated serial devices send what the manuals say the real ones send, byte for byte.

Checked against the documented form, never against the decoder: the item order of
the Tanita SC-240 manual's output table, the checksums recomputed here from the
manuals' definitions, the line ends, the field widths.
"""

from __future__ import annotations

import random
import re
from datetime import datetime
from functools import reduce

import pytest

from edge_agent.instruments.simulation.devices import ENCODERS
from edge_agent.instruments.simulation.instruments import instrument_for
from vigie_core.contract.data import ReadingKind

AT = datetime(2026, 11, 25, 10, 30)
#: Tanita SC-240 manual, "Connection with a personal computer", "(2) Output data items",
#: kg/cm mode, standard adult: the items in their order of output.
SC240_ORDER = (  # noqa: SIM905 - the manual's table, as a line
    "{0 ~0 ~1 ~2 MO SN Bt GE AG Hm Pt Wk FW fW MW mW sW bW wW ww MI Sw OV IF rb rB rJ rA ZF CS"
).split()


def _frames(format_name: str, kind: ReadingKind, count: int = 200) -> list[bytes]:
    rng = random.Random(format_name)
    instrument = instrument_for(kind)
    return [
        ENCODERS[format_name](instrument.sample(rng, index * 61.0), AT, rng)
        for index in range(count)
    ]


def test_tanita_records_are_the_sc240_s() -> None:
    for data in _frames("tanita", ReadingKind.BODY_COMPOSITION):
        assert data.endswith(b"\r\n")
        assert b"}" not in data
        assert b" " not in data
        assert data.startswith(b'{0,16,~0,1,~1,1,~2,1,MO,"SC-240",SN,"')
        items = data[:-2].decode("ascii").split(",")
        keys, values = items[::2], dict(zip(items[::2], items[1::2], strict=True))
        assert keys == SC240_ORDER
        body = data[: data.index(b"CS,")]
        assert values["CS"] == f"{sum(body) % 256:02X}"  # sum of "{" .. the last comma
        for key in ("Wk", "FW", "fW", "MW", "mW", "bW", "wW", "ww", "MI", "Sw", "ZF"):
            assert re.fullmatch(r"\d{1,4}\.\d", values[key]), key  # XXX.X, 0.1 steps
        for key in ("Bt", "GE", "AG", "sW", "IF", "rb", "rB", "rJ", "rA"):
            assert re.fullmatch(r"\d{1,5}", values[key]), key
        assert values["Bt"] == "0"
        assert values["GE"] in ("1", "2")
        kilojoules, kilocalories = int(values["rb"]), int(values["rB"])
        assert abs(kilocalories * 4.184 - kilojoules) <= 3  # rb in kJ, rB in kcal


def test_nonin_text_lines_are_the_2500_s() -> None:
    for data in _frames("nonin_text", ReadingKind.PULSE_OXIMETRY):
        assert re.fullmatch(rb"SPO2=(\d{3}|---) HR=(\d{3}|---)\r\n", data), data


def test_and_lines_are_the_standard_format() -> None:
    for data in _frames("and_standard", ReadingKind.BODY_WEIGHT):
        assert len(data) == 17  # header 2, comma, value 9, unit 3, CR LF
        assert re.fullmatch(rb"ST,\+[0-9]{5}\.[0-9]{2} kg\r\n", data), data


def test_nonin_df2_packets_follow_the_oem_iii_frame_layout() -> None:
    for data in _frames("nonin_df2", ReadingKind.PULSE_OXIMETRY, 20):
        assert len(data) == 125
        frames = [data[i : i + 5] for i in range(0, 125, 5)]
        for index, frame in enumerate(frames):
            assert frame[0] == 0x01
            assert frame[1] & 0x80
            assert frame[4] == sum(frame[:4]) % 256
            assert bool(frame[1] & 0x01) == (index == 0)  # SYNC on the first frame only


def test_nmea_sentences_end_with_cr_lf_and_an_xor_checksum() -> None:
    for data in _frames("nmea", ReadingKind.POSITION, 20):
        match = re.fullmatch(rb"\$(GPRMC,[^*]*)\*([0-9A-F]{2})\r\n", data)
        assert match is not None, data
        assert int(match[2], 16) == reduce(lambda a, b: a ^ b, match[1])


@pytest.mark.parametrize("format_name", ["tanita", "nonin_text", "and_standard", "nmea"])
def test_text_devices_send_ascii_without_controls_but_the_line_end(format_name: str) -> None:
    kinds = {
        "tanita": ReadingKind.BODY_COMPOSITION,
        "nonin_text": ReadingKind.PULSE_OXIMETRY,
        "and_standard": ReadingKind.BODY_WEIGHT,
        "nmea": ReadingKind.POSITION,
    }
    for data in _frames(format_name, kinds[format_name], 50):
        line = data.removesuffix(b"\r\n")
        assert all(0x20 <= byte < 0x7F for byte in line)
