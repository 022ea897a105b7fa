"""The fleet writes what operators watch: each agent's state against its opening hours,
sequence gaps, rollouts, release steps, pushed configuration and the CRL's validity,
through the real broker into the real InfluxDB."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml

from fleet.devstack.influxdb import InfluxDB
from fleet.devstack.services import Mosquitto
from fleet.ingest.service import IngestService
from fleet.link import BrokerLink
from fleet.rollouts.driver import RolloutDriver
from fleet.status.recorder import StatusRecorder
from fleet.storage.influx import InfluxClient
from fleet.storage.lineprotocol import Point
from fleet.storage.points import ns, presence_points
from fleet.storage.queries import list_agents
from tests.integration.conftest import (
    Processes,
    in_process_settings,
    mqtt_client,
    wait_until,
)
from tests.unit.test_desired import desired, reported
from tests.unit.test_rollout import report, spec
from vigie_core.contract.codec import encode
from vigie_core.contract.data import Reading, ReadingKind
from vigie_core.contract.identifiers import AgentKind
from vigie_core.contract.presence import WEEKDAYS, AgentState, Birth, DeviceInfo, OpeningHours
from vigie_core.contract.releases import UpdatePhase
from vigie_core.contract.topics import Topics

pytestmark = pytest.mark.integration

SITE = "mamers"


@pytest.fixture
def recorder(
    mosquitto: Mosquitto, influxdb: InfluxDB, influx: InfluxClient, mqtt_prefix: str
) -> Iterator[StatusRecorder]:
    """One fleet instance's ingest, rollout driver and status recorder on one link; the
    recorder's own thread is not started: the test calls ``record`` per interval."""
    config = in_process_settings(
        mosquitto,
        influxdb,
        influx.database,
        mqtt_prefix,
        status={"interval_s": 60, "crl_file": str(mosquitto.files.crl)},
    )
    link = BrokerLink(config.mqtt)
    ingest = IngestService(config, influx, link)
    rollouts = RolloutDriver(config, link, interval_s=0.5)
    ready = threading.Event()
    ready.set()
    status = StatusRecorder(config, influx, link, rollouts, ready)
    ingest.start()
    rollouts.start()
    link.start()
    assert link.subscribed.wait(10)
    yield status
    rollouts.stop()
    ingest.stop()
    link.stop()


def birth(agent_id: str, hours: OpeningHours) -> AgentState:
    return AgentState(
        agent_id=agent_id,
        online=True,
        session=1,
        birth=Birth(
            agent_version="1.4.0",
            site_id=SITE,
            site_name="Mamers",
            kind=AgentKind.BOOTH,
            opening_hours=hours,
            devices=[DeviceInfo(id="bp1", kind=ReadingKind.BLOOD_PRESSURE)],
        ),
    )


def send(client: mqtt.Client, topic: str, payload: bytes, retain: bool = False) -> None:
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)


def rows(influx: InfluxClient, query: str) -> dict[str, dict[str, Any]]:
    """The first row of each series, by its agent_id (or site_id) tag."""
    found = {}
    for series in influx.query(query):
        key = series.tags.get("agent_id") or series.tags.get("site_id") or ""
        found[key] = series.rows()[0]
    return found


def play_fleet(publisher: mqtt.Client, mosquitto: Mosquitto, topics: Topics, now: datetime) -> None:
    """Three booths of one site: open and online, down in its hours, closed; a gap in
    the first one's numbers; a configuration pushed to it and a rollout on its way."""
    another_day = WEEKDAYS[(now.weekday() + 3) % 7]
    closed_today = OpeningHours(timezone="UTC", week={another_day: ["08:00-17:00"]})
    always = OpeningHours.always("UTC")
    for agent_id, hours in [
        ("booth-open", always),
        ("booth-down", always),
        ("booth-closed", closed_today),
    ]:
        send(publisher, topics.state(agent_id), encode(birth(agent_id, hours)))
    for agent_id in ("booth-down", "booth-closed"):  # their Last Will
        offline = AgentState(agent_id=agent_id, online=False, session=1)
        send(publisher, topics.state(agent_id), encode(offline))
    # Readings 1..10 without 5, measured five minutes ago (inside the settled window).
    for seq in [*range(1, 5), *range(6, 11)]:
        message = Reading(
            agent_id="booth-open",
            seq=seq,
            measured_at=now - timedelta(minutes=5) + timedelta(seconds=seq),
            kind=ReadingKind.BLOOD_PRESSURE,
            device="bp1",
            values={"systolic": 120.0},
        )
        send(publisher, topics.topic_for(message), encode(message))
    # A pushed configuration the agent has not applied yet, and a rollout on its way.
    technician = mqtt_client(mosquitto, "status-technician")
    technician.connect(mosquitto.host, mosquitto.port or 0)
    technician.loop_start()
    try:
        pushed = desired(2, agent_id="booth-open")
        send(technician, topics.desired_config("booth-open"), encode(pushed), retain=True)
        rollout = spec([["booth-open"]])
        send(technician, topics.rollout("r1", "spec"), rollout.model_dump_json().encode(), True)
    finally:
        technician.disconnect()
        technician.loop_stop()
    running = reported(1).model_copy(update={"agent_id": "booth-open"})
    send(publisher, topics.reported_config("booth-open"), encode(running), retain=True)
    step = report("booth-open", UpdatePhase.DOWNLOADING)
    send(publisher, topics.reported_release("booth-open"), encode(step), retain=True)


def test_the_fleet_writes_state_in_opening_hours_gaps_rollouts_configs_and_the_crl(
    recorder: StatusRecorder,
    publisher: mqtt.Client,
    mosquitto: Mosquitto,
    influx: InfluxClient,
    mqtt_prefix: str,
) -> None:
    now = datetime.now(UTC)
    play_fleet(publisher, mosquitto, Topics(mqtt_prefix), now)

    def everything_arrived() -> bool:
        points, _ = recorder.points(now)
        measurements = {point.measurement for point in points}
        states = [p for p in points if p.measurement == "agent_status"]
        return len(states) == 3 and {"rollout_status", "config_status"} <= measurements

    wait_until(everything_arrived, 30, "presence, readings, rollout and configuration")
    # Two intervals, as the service's thread would write them.
    assert recorder.record(now - timedelta(minutes=1)) >= 7
    assert recorder.record(now) >= 6  # the release step is written once

    latest = rows(influx, 'SELECT last(*) FROM "agent_status" GROUP BY "agent_id"')
    assert {agent: row["last_state"] for agent, row in latest.items()} == {
        "booth-open": "online",
        "booth-down": "offline",
        "booth-closed": "closed",
    }
    assert {agent: row["last_down"] for agent, row in latest.items()} == {
        "booth-open": 0,
        "booth-down": 1,
        "booth-closed": 0,
    }
    assert latest["booth-open"]["last_seq_missing"] == 1
    assert latest["booth-open"]["last_agent_version"] == "1.4.0"
    # Availability in opening hours: the closed booth does not count against the site.
    (site,) = rows(
        influx,
        'SELECT mean("online") FROM "agent_status" WHERE "in_hours" = 1 '
        'AND time > now() - 1h GROUP BY "site_id"',
    ).items()
    assert site[0] == SITE
    assert site[1]["mean"] == pytest.approx(0.5)
    (counted,) = influx.query('SELECT count("state") FROM "agent_status"')
    assert counted.rows()[0]["count"] == 6  # one per agent per interval, not per write

    (rollout_row,) = influx.query('SELECT * FROM "rollout_status" ORDER BY time DESC LIMIT 1')
    assert rollout_row.rows()[0]["state"] == "running"
    assert rollout_row.rows()[0]["pending"] == 1
    (wave,) = influx.query('SELECT * FROM "rollout_wave" ORDER BY time DESC LIMIT 1')
    assert wave.rows()[0]["wave"] == "1"
    assert wave.rows()[0]["released"] == 1
    (steps,) = influx.query('SELECT * FROM "release_report"')
    assert [(row["phase"], row["target"]) for row in steps.rows()] == [("downloading", "1.0.0")]
    (config_row,) = influx.query('SELECT * FROM "config_status" ORDER BY time DESC LIMIT 1')
    assert config_row.rows()[0]["state"] == "pending"
    assert config_row.rows()[0]["desired_version"] == 2
    assert config_row.rows()[0]["running_version"] == 1
    (crl,) = influx.query('SELECT * FROM "crl_status" ORDER BY time DESC LIMIT 1')
    assert crl.rows()[0]["readable"] == 1
    assert 364 < crl.rows()[0]["days_left"] <= 365


def test_fleet_serve_writes_the_status_every_interval(
    processes: Processes,
    fleet_config: Path,
    publisher: mqtt.Client,
    influx: InfluxClient,
    mqtt_prefix: str,
) -> None:
    settings = yaml.safe_load(fleet_config.read_text())
    settings["status"] = {"interval_s": 5}
    fleet_config.write_text(yaml.safe_dump(settings))
    processes.start_fleet(fleet_config)
    topics = Topics(mqtt_prefix)
    send(publisher, topics.state("booth-1"), encode(birth("booth-1", OpeningHours.always("UTC"))))

    def ticks() -> list[dict[str, Any]]:
        found = influx.query('SELECT "state", "online" FROM "agent_status"')
        return found[0].rows() if found else []

    wait_until(lambda: len(ticks()) >= 2, 30, "two intervals of agent_status")
    written = ticks()
    assert {row["state"] for row in written} == {"online"}
    assert all(row["time"] % 5_000_000_000 == 0 for row in written)  # on the boundaries
    assert "Traceback" not in processes.log("fleet")


def test_a_half_written_presence_point_is_skipped_not_fatal(influx: InfluxClient) -> None:
    """InfluxDB 1.x can answer with a point whose fields are not all written yet (met at
    a 10,000-agent reconnection): list_agents, and so the status recorder and
    'fleet agents', must not stop on it."""
    now = datetime.now(UTC)
    whole = presence_points(birth("booth-1", OpeningHours.always("UTC")), ns(now) - 10**9)
    influx.write(
        [*whole, Point("agent_presence", {"site_id": SITE}, ns(now), {"agent_id": "booth-1"})]
    )
    (view,) = list_agents(influx, now)
    assert view.agent_id == "booth-1"
    assert view.status.value == "online"
