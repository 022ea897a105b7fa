"""Session-wide services: one real Mosquitto and one real InfluxDB for the whole run.

Tests isolate themselves by topic prefix and database name rather than by starting
their own services, which keeps the suite fast; tests that kill a service start
their own instance.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from fleet.devstack import InfluxDB, Mosquitto

# Fuzz tests run a bounded number of examples and never fail on timing (no deadline):
# tests assert behaviour, benchmarks measure speed.
settings.register_profile(
    "vigie", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("vigie")


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    with Mosquitto(workdir=tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    with InfluxDB(workdir=tmp_path_factory.mktemp("influxdb")) as server:
        yield server


@pytest.fixture
def mqtt_prefix() -> str:
    """A topic prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def influx_db(influxdb: InfluxDB) -> Iterator[str]:
    """A fresh database, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    influxdb.create_database(name)
    yield name
    influxdb.drop_database(name)
