"""Device time versus receive time: which one a reading is measured at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from edge_agent.instruments.decoders.base import ReadingDraft
from edge_agent.instruments.readings import (
    DEVICE_CLOCK_INVALID,
    ReadingOrigin,
    build_reading,
    device_time_utc,
    measurement_time,
)
from vigie_core.contract.data import DeviceSource, ReadingKind

PARIS = ZoneInfo("Europe/Paris")
RECEIVED = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
ORIGIN = ReadingOrigin(
    agent_id="booth-1",
    device_id="bp",
    source=DeviceSource(profile="sig_blood_pressure", address="AA:BB:CC:DD:EE:FF"),
    timezone=PARIS,
)


def _draft(device_time: datetime | None, **extra: object) -> ReadingDraft:
    return ReadingDraft(
        kind=ReadingKind.BLOOD_PRESSURE,
        values={"systolic": 120.0, "diastolic": 80.0},
        units={"systolic": "mm[Hg]", "diastolic": "mm[Hg]"},
        device_time=device_time,
        **extra,  # type: ignore[arg-type]
    )


def test_a_plausible_device_time_is_the_measurement_time_in_the_site_zone() -> None:
    # 10:28 in Paris in November (UTC+1) is 09:28 UTC, two minutes before reception.
    reading = build_reading(_draft(datetime(2026, 11, 25, 10, 28)), ORIGIN, 7, RECEIVED)
    assert reading.measured_at == datetime(2026, 11, 25, 9, 28, tzinfo=UTC)
    assert reading.device_time == reading.measured_at
    assert reading.received_at == RECEIVED
    assert DEVICE_CLOCK_INVALID not in reading.quality
    assert reading.seq == 7
    assert reading.source == ORIGIN.source


@pytest.mark.parametrize(
    ("device_time", "why"),
    [
        (datetime(2000, 1, 1, 0, 0), "an unset clock"),
        (datetime(2026, 11, 25, 10, 45), "a quarter of an hour ahead"),
        (datetime(2026, 11, 25, 7, 0), "hours behind for a live measurement"),
    ],
)
def test_an_implausible_device_time_gives_way_to_the_receive_time(
    device_time: datetime, why: str
) -> None:
    reading = build_reading(_draft(device_time), ORIGIN, 1, RECEIVED)
    assert reading.measured_at == RECEIVED, why
    assert DEVICE_CLOCK_INVALID in reading.quality
    # The device's time is kept for the record, converted to UTC.
    assert reading.device_time == device_time.replace(tzinfo=PARIS).astimezone(UTC)


def test_stored_records_may_be_days_old() -> None:
    three_days_ago = datetime(2026, 11, 22, 8, 0)
    reading = build_reading(_draft(three_days_ago), ORIGIN, 1, RECEIVED, stored=True)
    assert reading.measured_at == three_days_ago.replace(tzinfo=PARIS).astimezone(UTC)
    assert DEVICE_CLOCK_INVALID not in reading.quality


def test_no_device_time_means_the_receive_time_unflagged() -> None:
    reading = build_reading(_draft(None, quality=("body_movement",)), ORIGIN, 1, RECEIVED)
    assert reading.measured_at == RECEIVED
    assert reading.device_time is None
    assert reading.quality == ["body_movement"]


def test_aware_device_times_keep_their_own_zone() -> None:
    # NMEA times are UTC whatever the site's zone.
    utc_fix = datetime(2026, 11, 25, 9, 29, 59, tzinfo=UTC)
    assert device_time_utc(utc_fix, PARIS) == utc_fix
    assert measurement_time(utc_fix, RECEIVED, stored=False) == (utc_fix, False)


def test_the_limits_are_exclusive_of_plausible_drift() -> None:
    just_ahead = RECEIVED + timedelta(minutes=4)
    assert measurement_time(just_ahead, RECEIVED, stored=False) == (just_ahead, False)
    lagging = RECEIVED - timedelta(minutes=59)
    assert measurement_time(lagging, RECEIVED, stored=False) == (lagging, False)


def test_a_draft_that_breaks_the_contract_is_refused() -> None:
    draft = ReadingDraft(
        kind=ReadingKind.BODY_TEMPERATURE,
        values={"temperature": 37.0},
        units={"temperature": "K"},  # not a unit the contract knows
    )
    with pytest.raises(ValidationError):
        build_reading(draft, ORIGIN, 1, RECEIVED)


@pytest.mark.parametrize(
    "device_time",
    [
        datetime(9999, 12, 31, 23, 59),  # GATT Date Time's last year: no point can have it
        datetime(1582, 10, 15, 0, 0),  # its first
        datetime(1, 1, 1, 0, 0),  # out of range once converted to UTC (Paris is ahead)
    ],
)
def test_a_device_time_that_cannot_be_stored_keeps_the_reading(device_time: datetime) -> None:
    # The contract refuses times InfluxDB cannot store; the reading must not go with it.
    reading = build_reading(_draft(device_time), ORIGIN, 1, RECEIVED)
    assert reading.measured_at == RECEIVED
    assert reading.device_time is None
    assert DEVICE_CLOCK_INVALID in reading.quality
    assert reading.values["systolic"] == 120.0
