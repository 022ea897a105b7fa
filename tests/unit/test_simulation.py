"""Simulated instruments produce valid, plausible readings; the bus follows its route."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge_agent.instruments.decoders import registry
from edge_agent.instruments.profiles import DEFAULT_PROFILES_DIR, load_profile
from edge_agent.instruments.readings import DEVICE_CLOCK_INVALID, ReadingOrigin, build_reading
from edge_agent.instruments.simulation.devices import frame_for
from edge_agent.instruments.simulation.instruments import (
    DEFAULT_BUS_ROUTE,
    BloodPressureMonitor,
    GpsReceiver,
    PulseOximeter,
    haversine_km,
    instrument_for,
)
from vigie_core.contract.data import Reading, ReadingKind

AT = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
BOUNDS = {
    "systolic": (85, 200),
    "diastolic": (50, 120),
    "mean_arterial_pressure": (60, 150),
    "pulse_rate": (50, 110),
    "temperature": (35.5, 39.8),
    "weight": (42, 150),
    "height": (145, 200),
    "bmi": (10, 75),
    "body_fat_percentage": (8, 50),
    "fat_mass": (3, 75),
    "fat_free_mass": (20, 145),
    "total_body_water": (14, 106),
    "basal_metabolic_rate": (3000, 15000),
    "impedance": (300, 800),
    "glucose_concentration": (45, 400),
    "spo2": (92, 100),
    "latitude": (47.6, 48.5),
    "longitude": (-0.45, 0.95),
    "speed": (0, 90),
}


@pytest.mark.parametrize("kind", list(ReadingKind))
def test_every_sample_is_a_valid_reading_within_physiological_bounds(kind: ReadingKind) -> None:
    rng = random.Random(kind.value)
    instrument = instrument_for(kind)
    for index in range(2000):
        sample = instrument.sample(rng, index * 37.0)
        Reading(
            agent_id="t1",
            seq=index + 1,
            measured_at=AT,
            kind=kind,
            device="d1",
            values=sample.values,
            units=sample.units,
            invalid=sample.invalid,
        )
        for name, value in sample.values.items():
            if value is not None:
                low, high = BOUNDS[name]
                assert low <= value <= high, (name, value)
        if sample.values.get("diastolic") is not None:
            assert sample.values["diastolic"] < sample.values["systolic"]  # type: ignore[operator]


def test_failures_are_null_with_a_reason_at_about_the_configured_rate() -> None:
    rng = random.Random(7)
    cuff = BloodPressureMonitor(failure_rate=0.1)
    failures = [cuff.sample(rng, 0) for _ in range(5000)]
    failed = [s for s in failures if s.values["systolic"] is None]
    assert 400 <= len(failed) <= 600
    assert all(s.invalid["systolic"] == "cuff_error" and s.values["pulse_rate"] for s in failed)
    probe = PulseOximeter(failure_rate=0.5)
    off = [s for s in (probe.sample(rng, 0) for _ in range(2000)) if s.values["spo2"] is None]
    assert 850 <= len(off) <= 1150
    assert all(s.invalid == {"spo2": "no_finger"} for s in off)


def test_the_same_seed_gives_the_same_readings() -> None:
    first = [
        instrument_for(ReadingKind.BLOOD_PRESSURE).sample(random.Random(1), 0) for _ in range(3)
    ]
    again = [
        instrument_for(ReadingKind.BLOOD_PRESSURE).sample(random.Random(1), 0) for _ in range(3)
    ]
    assert first == again


def test_the_bus_stops_at_each_town_then_drives_to_the_next() -> None:
    gps = GpsReceiver(speed_kmh=50.0, stop_s=600.0)
    first, second = DEFAULT_BUS_ROUTE[0], DEFAULT_BUS_ROUTE[1]
    assert gps.position(0.0) == (*first, False)
    assert gps.position(599.0) == (*first, False)
    leg_s = haversine_km(first, second) / 50.0 * 3600
    lat, lon, moving = gps.position(600 + leg_s / 2)
    assert moving
    assert lat == pytest.approx((first[0] + second[0]) / 2)
    assert lon == pytest.approx((first[1] + second[1]) / 2)
    assert gps.position(600 + leg_s + 300) == (*second, False)
    sample = gps.sample(random.Random(1), 600 + leg_s + 300)
    assert sample.values["speed"] == 0.0


def test_haversine_matches_a_known_distance() -> None:
    # Paris (Notre-Dame) to Le Mans (cathedral): about 185 km as the crow flies.
    assert haversine_km((48.853, 2.3499), (48.0083, 0.1981)) == pytest.approx(185, abs=3)


@pytest.mark.parametrize(
    "profile", sorted(DEFAULT_PROFILES_DIR.glob("*.yaml")), ids=lambda path: path.stem
)
def test_byte_level_devices_decode_back_to_their_samples(profile: Path) -> None:
    """Each profile's simulated device sends bytes the real decoder turns back into
    the sampled values (in the device's unit), with a plausible device time."""
    loaded = load_profile(profile)
    rng = random.Random(profile.stem)
    now = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    local = now.astimezone(ZoneInfo("Europe/Paris")).replace(tzinfo=None)
    origin = ReadingOrigin("a1", "d1", None, ZoneInfo("Europe/Paris"))
    for index in range(200):
        sample = instrument_for(loaded.kind).sample(rng, index * 61.0)
        frames = frame_for(loaded, "d1", sample, local, now, rng)
        drafts = [registry.decode(name, data).reading() for name, data in frames]
        (draft,) = [draft for draft in drafts if draft is not None]
        reading = build_reading(draft, origin, 1, now, stored=True)
        assert DEVICE_CLOCK_INVALID not in reading.quality
        for name, value in sample.values.items():
            if name not in reading.values:
                continue  # a field the device's format does not carry
            decoded = reading.values[name]
            if value is None or decoded is None:
                assert decoded is None, name
                assert value is None, name
            elif reading.units[name] == "kg/L":
                assert decoded == pytest.approx(value / 100_000), name  # mg/dL -> kg/L
            elif reading.units[name] == "[kn_i]":
                assert decoded == pytest.approx(value / 1.852, abs=0.06), name
            else:
                assert decoded == pytest.approx(value, abs=0.005), name
