"""Line protocol encoding, checked against hand-written golden lines."""

from __future__ import annotations

import enum

import pytest

from fleet.errors import LineProtocolError
from fleet.storage import lineprotocol
from fleet.storage.lineprotocol import Point, encode_batch, encode_point


def test_a_plain_point() -> None:
    point = Point(
        "blood_pressure",
        {"systolic": 128.0, "seq": 7},
        1_700_000_000_000_000_001,
        {"device": "bp1", "agent_id": "booth-01"},
    )
    assert encode_point(point) == (
        "blood_pressure,agent_id=booth-01,device=bp1 systolic=128.0,seq=7i 1700000000000000001"
    )


def test_field_types() -> None:
    point = Point("m", {"f": 0.1, "i": -3, "b": True, "s": "ok"}, 1)
    assert encode_point(point) == 'm f=0.1,i=-3i,b=true,s="ok" 1'


def test_escaping_of_every_part() -> None:
    point = Point(
        "my meas,x",
        {"field key=": 'say "hi" \\ bye'},
        5,
        {"tag key": "a,b=c d", "t": "back\\slash"},
    )
    assert encode_point(point) == (
        r"my\ meas\,x,t=back\slash,tag\ key=a\,b\=c\ d "
        r'field\ key\=="say \"hi\" \\ bye" 5'
    )


def test_string_fields_keep_newlines_inside_quotes() -> None:
    assert encode_point(Point("m", {"s": "a\nb"}, 1)) == 'm s="a\nb" 1'


@pytest.mark.parametrize(
    "point",
    [
        Point("m", {}, 1),
        Point("m\n", {"f": 1.0}, 1),
        Point("m", {"f": 1.0}, 1, {"t": "a\nb"}),
        Point("m", {"f\n": 1.0}, 1),
        Point("m", {"f": float("nan")}, 1),
        Point("m", {"f": float("inf")}, 1),
        Point("", {"f": 1.0}, 1),
        Point("m", {"f": 1.0}, 1, {"t": "ends with \\"}),
        Point("m", {"f": 1.0}, 1, {"t": "a\\,b"}),
        Point("m\\ x", {"f": 1.0}, 1),
    ],
)
def test_points_line_protocol_cannot_carry_are_refused(point: Point) -> None:
    with pytest.raises(LineProtocolError):
        encode_point(point)


def test_empty_tag_values_are_left_out() -> None:
    assert encode_point(Point("m", {"f": 1}, 1, {"t": ""})) == "m f=1i 1"


def test_floats_round_trip_exactly() -> None:
    assert encode_point(Point("m", {"f": 36.85}, 1)) == "m f=36.85 1"
    assert encode_point(Point("m", {"f": 1e-7}, 1)) == "m f=1e-07 1"


def test_batches_end_every_line() -> None:
    body = encode_batch([Point("m", {"f": 1}, 1), Point("m", {"f": 2}, 2)])
    assert body == b"m f=1i 1\nm f=2i 2\n"


def test_names_checked_once_are_encoded_the_same_every_time_and_refusals_are_never_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The encoder keeps names it has checked and escaped (they repeat point after
    # point); a tiny bound makes it clear its memory on almost every point.
    monkeypatch.setattr(lineprotocol, "_CACHE_MAX", 3)
    point = Point("my meas", {"field key=": 1.5, "n": -2, "on": False}, 9, {"t k": "a,b", "u": "x"})
    expected = r"my\ meas,t\ k=a\,b,u=x field\ key\==1.5,n=-2i,on=false 9"
    for _ in range(5):
        assert encode_point(point) == expected
    for _ in range(3):  # refused every time, never taken for checked
        with pytest.raises(LineProtocolError):
            encode_point(Point("m", {"f": 1.0}, 1, {"t": "ends with \\"}))
    assert len(lineprotocol._names) <= 3


class _Status(enum.StrEnum):
    OK = "ok"


class _Level(enum.IntEnum):
    HIGH = 3


def test_enum_members_are_encoded_as_their_values() -> None:
    point = Point("m", {"s": _Status.OK, "l": _Level.HIGH}, 1)
    assert encode_point(point) == 'm s="ok",l=3i 1'
