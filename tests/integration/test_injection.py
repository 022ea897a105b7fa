"""Line protocol injection against the real InfluxDB: values that come from devices
and the network are stored exactly as sent and never create extra points."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.errors import LineProtocolError
from fleet.storage.influx import InfluxClient
from fleet.storage.lineprotocol import Point

pytestmark = pytest.mark.integration

#: Every character line protocol treats specially, plus some unicode.
NASTY = st.text(
    alphabet=st.sampled_from([*list(",= \"'\\\n\r\t#{}[]"), "é", "∑", "\u200b", "🩺", "a", "Z"]),
    min_size=1,
    max_size=24,
)
TIMES = itertools.count(1_700_000_000_000_000_000, 1_000_000)
#: Points written per database (the fixture's database lives for all the examples).
WRITTEN: Counter[str] = Counter()


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tag=NASTY, text=NASTY, key=NASTY)
def test_tag_and_field_values_are_stored_exactly_and_never_split(
    influx: InfluxClient, tag: str, text: str, key: str
) -> None:
    time_ns = next(TIMES)
    point = Point("injection", {"s": text, "n": 1}, time_ns, {"t": tag, "k": key})
    try:
        influx.write([point])
    except LineProtocolError:
        # Refused before sending (a line break or an ambiguous backslash in a tag):
        # the agent's contract never lets such a value through; nothing was written.
        assert any(c in tag + key for c in "\n\r\\")
        assert not influx.query(f"SELECT * FROM injection WHERE time = {time_ns}")
        return
    WRITTEN[influx.database] += 1
    found = influx.query(f"SELECT * FROM injection WHERE time = {time_ns}")
    rows = [row for series in found for row in series.rows()]
    assert len(rows) == 1, rows
    assert rows[0]["t"] == tag
    assert rows[0]["k"] == key
    assert rows[0]["s"] == text
    assert rows[0]["n"] == 1
    # No stray point anywhere: as many points as writes that passed, one measurement.
    (series,) = influx.query("SELECT count(n) FROM injection")
    assert series.rows()[0]["count"] == WRITTEN[influx.database]
    assert WRITTEN[influx.database] >= 1
    measurements = [name for s in influx.query("SHOW MEASUREMENTS") for (name,) in s.values]
    assert measurements == ["injection"]
