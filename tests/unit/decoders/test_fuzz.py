"""Every decoder, fed arbitrary bytes: a record or a DecodeError, nothing else.

A record's JSON form must serialise, and its reading, if any, must satisfy the wire
contract (units, field names, no NaN).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders import registry
from edge_agent.instruments.decoders.base import Format, Record
from edge_agent.instruments.decoders.serial.framing import LineFramer, NoninDf2Framer
from edge_agent.instruments.readings import DEVICE_TIME_PARTIAL, ReadingOrigin, build_reading
from vigie_core.contract.data import DeviceSource

ORIGIN = ReadingOrigin(
    agent_id="a1",
    device_id="d1",
    source=DeviceSource(profile="p", address="x"),
    timezone=ZoneInfo("Europe/Paris"),
)
NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)

#: Text formats get text shaped like theirs as well as raw bytes, to reach past the
#: first checks.
_TEXTY = st.text(alphabet='0123456789+-.,*$ABCDEFGHKLMNOPQRSTUVWXYZ=~{}"/: ', max_size=120)


def _part(valid: st.SearchStrategy[int], size: int = 1) -> st.SearchStrategy[int]:
    """A Date Time field: 0 ("not known" for the date), in range, or any value at all."""
    return st.one_of(st.just(0), valid, st.integers(0, 256**size - 1))


#: GSS 3.70 Date Time, 7 bytes, with zeros in the date as often as values.
_DATE_TIMES = st.tuples(
    _part(st.integers(1582, 9999), 2),
    _part(st.integers(1, 12)),
    _part(st.integers(1, 31)),
    _part(st.integers(0, 23)),
    _part(st.integers(0, 59)),
    _part(st.integers(0, 59)),
).map(lambda t: t[0].to_bytes(2, "little") + bytes(t[1:]))


def _cat(*parts: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.tuples(*parts).map(b"".join)


def _fixed(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


def _one_of(*values: int) -> st.SearchStrategy[bytes]:
    return st.sampled_from([bytes([value]) for value in values])


_NONE = st.just(b"")
#: What comes before and after the Date Time in each format that embeds one.
_AROUND: dict[str, st.SearchStrategy[tuple[bytes, bytes]]] = {
    "2a08": st.tuples(_NONE, _NONE),
    "2a0a": st.tuples(_NONE, _one_of(*range(9))),  # day of week
    "2a2b": st.tuples(_NONE, _cat(_one_of(*range(9)), _fixed(1), _one_of(*range(17)))),
    # flags (units, Time Stamp), three SFLOATs; with status, two more bytes after
    "2a35": st.one_of(
        st.tuples(_cat(_one_of(0x02, 0x03), _fixed(6)), _NONE),
        st.tuples(_cat(_one_of(0x12), _fixed(6)), _fixed(2)),
    ),
    "2a36": st.tuples(_cat(_one_of(0x02, 0x03), _fixed(6)), _NONE),
    "2a1c": st.tuples(_cat(_one_of(0x02, 0x03), _fixed(4)), _NONE),  # FLOAT
    "2a9d": st.tuples(_cat(_one_of(0x02, 0x03), _fixed(2)), _NONE),  # uint16 weight
    # flags, sequence number; then offset if flagged, concentration, type and location
    "2a18": st.one_of(
        st.tuples(_cat(_one_of(0x02), _fixed(2)), _cat(_fixed(2), _one_of(0x11))),
        st.tuples(_cat(_one_of(0x03), _fixed(2)), _cat(_fixed(4), _one_of(0x11))),
    ),
    # flags (Timestamp, maybe "device clock not set"), SpO2 and pulse rate
    "2a5e": st.tuples(_cat(_one_of(0x01, 0x11), _fixed(4)), _NONE),
}


def _check(fmt: Format, data: bytes) -> Record | None:
    try:
        record = fmt.decode(data)
    except DecodeError as exc:
        error: DecodeError | None = exc
    else:
        error = None
    if error is not None:
        assert error.format_name
        assert "\n" not in str(error)  # the CLI prints it as one line
        return None
    json.dumps(record.as_json())
    draft = record.reading()
    if draft is not None:
        build_reading(draft, ORIGIN, 1, NOW, stored=True)
    return record


@pytest.mark.parametrize("fmt", registry.FORMATS.values(), ids=lambda fmt: fmt.name)
@given(data=st.binary(max_size=140))
def test_arbitrary_bytes(fmt: Format, data: bytes) -> None:
    _check(fmt, data)


@pytest.mark.parametrize(
    "fmt", [f for f in registry.FORMATS.values() if f.input == "text"], ids=lambda f: f.name
)
@given(text=_TEXTY)
def test_arbitrary_text(fmt: Format, text: str) -> None:
    _check(fmt, text.encode("ascii"))


@pytest.mark.parametrize("name", sorted(_AROUND))
@given(data=st.data())
def test_date_times_inside_their_formats(name: str, data: st.DataObject) -> None:
    """Unknown date parts reach the decoders: kept in the record, never a device time."""
    before, after = data.draw(_AROUND[name])
    date_time = data.draw(_DATE_TIMES)
    record = _check(registry.resolve(name), before + date_time + after)
    if record is None:
        return
    partial = 0 in (int.from_bytes(date_time[:2], "little"), date_time[2], date_time[3])
    shown = json.dumps(record.as_json())
    assert ("????" in shown or "-??" in shown) == partial
    draft = record.reading()
    if draft is not None and not (name == "2a5e" and before[0] & 0x10):  # clock not set
        assert (DEVICE_TIME_PARTIAL in draft.quality) == partial
        assert (draft.device_time is None) == partial


@given(data=st.binary(max_size=400))
def test_framers_never_raise_and_stay_bounded(data: bytes) -> None:
    line, df2 = LineFramer(64), NoninDf2Framer()
    line.feed(data)
    df2.feed(data)
    assert len(line._buffer) <= 64
    assert len(df2._buffer) < 5
