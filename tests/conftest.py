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

from fleet.devstack.influxdb import InfluxDB
from fleet.devstack.services import Mosquitto
from fleet.security.pki import Role

#: The test identity allowed to publish under any agent's branch (see the fixture).
PLAYS_ANY_AGENT = "test-publisher"

# Fuzz tests run a bounded number of examples and never fail on timing (no deadline):
# tests assert behaviour, benchmarks measure speed.
settings.register_profile(
    "vigie", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("vigie")


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    # TLS, certificates and the generated ACL, as in production; one extra identity
    # may publish as any agent, for the fleet tests that play many agents at once.
    broker = Mosquitto(
        workdir=tmp_path_factory.mktemp("mosquitto"),
        extra_grants={PLAYS_ANY_AGENT: [("write", "+/v1/+/#")]},
    )
    with broker:
        broker.enroll(PLAYS_ANY_AGENT, role=Role.TECHNICIAN)
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
    """A fresh database the fleet user may write to, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    influxdb.grant(name)  # creates it, and lets the fleet's own user write to it
    yield name
    influxdb.drop_database(name)
