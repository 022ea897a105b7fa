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
from edge_agent.instruments.decoders.base import Format
from edge_agent.instruments.decoders.serial.framing import LineFramer, NoninDf2Framer
from edge_agent.instruments.readings import ReadingOrigin, build_reading
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


def _check(fmt: Format, data: bytes) -> None:
    try:
        record = fmt.decode(data)
    except DecodeError as exc:
        error = exc
    else:
        error = None
    if error is not None:
        assert error.format_name
        assert "\n" not in str(error)  # the CLI prints it as one line
        return
    json.dumps(record.as_json())
    draft = record.reading()
    if draft is not None:
        build_reading(draft, ORIGIN, 1, NOW, stored=True)


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


@given(data=st.binary(max_size=400))
def test_framers_never_raise_and_stay_bounded(data: bytes) -> None:
    line, df2 = LineFramer(64), NoninDf2Framer()
    line.feed(data)
    df2.feed(data)
    assert len(line._buffer) <= 64
    assert len(df2._buffer) < 5
