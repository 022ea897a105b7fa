"""The dashboards and alert rules against a real InfluxDB filled by a simulated fleet:
messages through the real broker and the fleet's ingest, then the status points the
fleet service derives every interval. Every query runs and finds data; availability,
"down" and "closed" come out as an operator expects; the alert rules fire where they
should and nowhere else."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest

from edge_agent.instruments.simulation.instruments import instrument_for
from fleet.desired.targets import ConfigSync
from fleet.ingest.service import IngestService
from fleet.rollouts.plan import evaluate
from fleet.status.derive import (
    agent_status_point,
    config_status_point,
    crl_point,
    release_report_point,
    rollout_points,
    tick,
)
from fleet.storage.influx import InfluxClient, Series
from fleet.storage.lineprotocol import Point
from fleet.storage.points import ns
from fleet.storage.queries import list_agents, seq_windows
from tests.grafana_queries import Found, all_queries, dashboard_queries, firing, rules, runnable
from tests.unit.test_desired import desired, reported
from tests.unit.test_rollout import failed, spec
from vigie_core.contract.codec import Message, encode
from vigie_core.contract.data import (
    DeviceStatus,
    DeviceStatusCode,
    Event,
    HealthReport,
    Reading,
    ReadingKind,
    Severity,
)
from vigie_core.contract.identifiers import AgentKind
from vigie_core.contract.presence import WEEKDAYS, AgentState, Birth, DeviceInfo, OpeningHours
from vigie_core.contract.releases import ReportedRelease, UpdatePhase
from vigie_core.contract.topics import Topics

from .conftest import wait_until

pytestmark = pytest.mark.integration

SITE = "mamers"
PARIS = "Europe/Paris"
#: What the dashboards' variables are set to.
VARIABLES = {"site": SITE, "agent": "booth-open", "bus": "bus-1"}
MINUTE_NS = 60 * 1_000_000_000


def birth(
    agent_id: str, site: str, kind: AgentKind, hours: OpeningHours, version: str
) -> AgentState:
    devices = (
        [DeviceInfo(id="gps", kind=ReadingKind.POSITION)]
        if kind is AgentKind.BUS
        else [DeviceInfo(id="bp1", kind=ReadingKind.BLOOD_PRESSURE)]
    )
    return AgentState(
        agent_id=agent_id,
        online=True,
        session=1,
        birth=Birth(
            agent_version=version,
            site_id=site,
            site_name=site.title(),
            kind=kind,
            opening_hours=hours,
            devices=devices,
        ),
    )


def health(
    agent_id: str, seq: int, at: datetime, dropped: int, oldest_s: float, worn: bool
) -> HealthReport:
    """A health report; ``worn``: its cuff's battery is low, its calibration close,
    its disk short."""
    instrument = DeviceStatus(
        device="bp1",
        kind=ReadingKind.BLOOD_PRESSURE,
        status=DeviceStatusCode.OK,
        last_reading_at=at - timedelta(minutes=1),
        battery_percent=15 if worn else 90,
        calibration_due_days=10 if worn else 200,
    )
    return HealthReport(
        agent_id=agent_id,
        seq=seq,
        measured_at=at,
        agent_version="1.4.0",
        uptime_s=600,
        cpu_percent=12,
        memory_percent=40,
        disk_percent=97,
        devices=[instrument],
        backlog_messages=3,
        backlog_oldest_s=oldest_s,
        dropped_messages=dropped,
        disk_free_bytes=(500 if worn else 50_000) * 2**20,
        disk_low=worn,
    )


def fleet_messages(now: datetime) -> tuple[list[Message], list[Message]]:
    """(presence, data) of a site of three booths (open and online; down, offline in
    its hours; closed, offline outside them) and of a bus on its route."""
    local = now.astimezone(ZoneInfo(PARIS))
    another_day = WEEKDAYS[(local.weekday() + 3) % 7]
    always = OpeningHours.always(PARIS)
    states: list[Message] = [
        birth("booth-open", SITE, AgentKind.BOOTH, always, "1.4.0"),
        birth("booth-down", SITE, AgentKind.BOOTH, always, "1.4.0"),
        birth(
            "booth-closed",
            SITE,
            AgentKind.BOOTH,
            OpeningHours(timezone=PARIS, week={another_day: ["08:00-17:00"]}),
            "1.3.0",
        ),
        birth("bus-1", "bus-sarthe", AgentKind.BUS, always, "1.4.0"),
        # Their Last Wills.
        AgentState(agent_id="booth-down", online=False, session=1),
        AgentState(agent_id="booth-closed", online=False, session=1),
    ]
    start = now - timedelta(minutes=10)
    data: list[Message] = []
    seq = 0
    for kind in ReadingKind:
        if kind is ReadingKind.POSITION:
            continue
        seq += 1
        sample = instrument_for(kind).sample(random.Random(seq), 0.0)
        data.append(
            Reading(
                agent_id="booth-open",
                seq=seq,
                measured_at=start + timedelta(seconds=seq),
                kind=kind,
                device="bp1" if kind is ReadingKind.BLOOD_PRESSURE else "d1",
                values=sample.values,
                units=sample.units,
            )
        )
    data += [
        Event(
            agent_id="booth-open",
            seq=seq + 1,
            measured_at=start + timedelta(minutes=1),
            name="config_applied",
            severity=Severity.INFO,
        ),
        # Dropped messages counted by the agent: 2 more between its two reports.
        health("booth-open", seq + 2, now - timedelta(minutes=3), 2, oldest_s=30, worn=True),
        health("booth-open", seq + 3, now - timedelta(minutes=2), 4, oldest_s=40, worn=True),
        # A backlog that does not drain.
        health("bus-1", 9, now - timedelta(minutes=3), 0, oldest_s=1800, worn=False),
        health("bus-1", 10, now - timedelta(minutes=2), 0, oldest_s=1900, worn=False),
    ]
    # The bus along a road, one position a minute; number 4 never arrives.
    for number in (1, 2, 3, 5, 6, 7, 8):
        data.append(
            Reading(
                agent_id="bus-1",
                seq=number,
                measured_at=start + timedelta(minutes=number),
                kind=ReadingKind.POSITION,
                device="gps",
                values={
                    "latitude": 48.0 + number / 100,
                    "longitude": 0.2 + number / 50,
                    "speed": 40.0,
                },
                units={"latitude": "deg", "longitude": "deg", "speed": "km/h"},
            )
        )
    return states, data


def publish_all(client: mqtt.Client, topics: Topics, messages: list[Message]) -> None:
    for message in messages:
        topic = (
            topics.state(message.agent_id)
            if isinstance(message, AgentState)
            else topics.topic_for(message)  # type: ignore[arg-type]
        )
        client.publish(topic, encode(message), qos=1).wait_for_publish(10)


def derived(influx: InfluxClient, now: datetime) -> list[Point]:
    """What the fleet service writes at the interval ``now`` falls in."""
    at = tick(ns(now), MINUTE_NS)
    seqs = seq_windows(influx)
    points = [
        agent_status_point(view, now, at, seqs.get(view.agent_id))
        for view in list_agents(influx, now)
    ]
    # A rollout that halted itself: its first wave's only agent rolled back.
    rollout = spec([["booth-open"], ["booth-down", "booth-closed"]], max_failure=0)
    points += rollout_points(
        evaluate(rollout, None, None, {}, {"booth-open": failed("booth-open")}), at
    )
    pushed = [
        ConfigSync("booth-open", desired(2, agent_id="booth-open"), reported(1)),
        ConfigSync("booth-down", desired(3, agent_id="booth-down"), reported(2, rejected=3)),
        ConfigSync("bus-1", desired(1, agent_id="bus-1"), reported(1)),
    ]
    points += [point for sync in pushed if (point := config_status_point(sync, at)) is not None]
    points.append(crl_point(now + timedelta(days=20), now, at))
    return points


@pytest.fixture
def fleet(
    service: IngestService, publisher: mqtt.Client, influx: InfluxClient, mqtt_prefix: str
) -> datetime:
    """The simulated fleet, stored; the status written for four intervals."""
    now = datetime.now(UTC)
    topics = Topics(mqtt_prefix)
    states, data = fleet_messages(now)
    publish_all(publisher, topics, [*states, *data])
    garbage = f"{mqtt_prefix}/v1/booth-open/health"
    publisher.publish(garbage, b"garbage", qos=1).wait_for_publish(10)
    expected = len(states) + len(data) + 1
    wait_until(lambda: service.stats.acknowledged >= expected, 30, "every message")
    # A redelivery, stored again (harmlessly) and counted.
    publish_all(publisher, topics, data[:1])
    wait_until(lambda: service.stats.duplicates >= 1, 30, "the duplicate counted")
    step = ReportedRelease(
        agent_id="booth-open",
        running="0.9.0",
        phase=UpdatePhase.ROLLED_BACK,
        target="1.0.0",
        reason="health check failed",
        at=now - timedelta(minutes=4),
    )
    influx.write([release_report_point(step)])
    for minutes in (3, 2, 1, 0):
        influx.write(derived(influx, now - timedelta(minutes=minutes)))
    return now


def values(series: Series) -> list[Any]:
    """The values of a series' one value column."""
    (column,) = [name for name in series.columns if name != "time"]
    return [row[column] for row in series.rows()]


def run(influx: InfluxClient, found: Found) -> list[Series]:
    return influx.query(runnable(found.query, VARIABLES, found.window_s))


def dashboard_query(title: str, board: str = "fleet-overview.json") -> str:
    (found,) = [item for item in dashboard_queries() if item.where == f"{board}: {title} [A]"]
    return runnable(found.query, VARIABLES)


def test_every_query_runs_and_finds_what_the_fleet_stored(
    fleet: datetime, influx: InfluxClient
) -> None:
    # A panel may hold one query per unit an instrument may be set to (glucose in
    # kg/L, mg/dL, mmol/L or mol/L): one of them finds data.
    found: dict[str, bool] = {}
    for item in all_queries():
        found[item.panel] = found.get(item.panel, False) or bool(run(influx, item))
    assert all(found.values()), [panel for panel, data in found.items() if not data]


def test_availability_counts_opening_hours_only(fleet: datetime, influx: InfluxClient) -> None:
    per_site = {
        series.tags["site_id"]: [value for value in values(series) if value is not None]
        for series in influx.query(dashboard_query("Availability in opening hours, per site"))
    }
    # The closed booth does not count against its site: one of two open booths is up.
    assert per_site[SITE]
    assert all(value == pytest.approx(0.5) for value in per_site[SITE])
    assert set(per_site["bus-sarthe"]) == {1}

    def now(title: str) -> Any:
        (series,) = influx.query(dashboard_query(title))
        return values(series)[-1]

    assert now("Down now") == 1
    assert now("Closed now") == 1
    assert now("Online now") == 2
    assert now("Agents known") == 4


def test_the_alert_rules_fire_where_they_should_and_nowhere_else(
    fleet: datetime, influx: InfluxClient
) -> None:
    raised: dict[str, set[frozenset[tuple[str, str]]]] = {}
    for rule in rules():
        (query,) = [
            item for item in all_queries() if item.where.startswith(f"alert {rule['uid']} ")
        ]
        series = run(influx, query)
        raised[rule["uid"]] = set(firing(rule, [(item.tags, values(item)) for item in series]))

    def agents(*names: str) -> set[frozenset[tuple[str, str]]]:
        return {frozenset({"agent_id": name}.items()) for name in names}

    instrument = frozenset(
        {"agent_id": "booth-open", "device": "bp1", "kind": "blood_pressure"}.items()
    )
    assert raised == {
        # Down in its opening hours; the closed booth never is.
        "vigie-booth-down": {frozenset({"agent_id": "booth-down", "site_id": SITE}.items())},
        "vigie-sequence-gaps": agents("bus-1"),
        "vigie-messages-dropped": agents("booth-open"),
        "vigie-backlog-stuck": agents("bus-1"),
        "vigie-disk-low": agents("booth-open"),
        "vigie-battery-low": {instrument},
        "vigie-calibration-due": {instrument},
        "vigie-status-stale": set(),
        "vigie-rollout-halted": {frozenset({"rollout_id": "r1"}.items())},
        "vigie-crl-expiring": {frozenset()},
        "vigie-crl-unreadable": set(),
    }
    # The booth-down query itself: down = 1 for the down booth only.
    (query,) = [item for item in all_queries() if item.where.startswith("alert vigie-booth-down ")]
    down = {series.tags["agent_id"]: values(series)[-1] for series in run(influx, query)}
    assert down == {"booth-open": 0, "booth-down": 1, "booth-closed": 0, "bus-1": 0}


def test_the_tables_of_what_needs_attention_hold_only_that(
    fleet: datetime, influx: InfluxClient
) -> None:
    configs = influx.query(dashboard_query("Configuration pending or rejected", "rollouts.json"))
    assert {series.tags["agent_id"]: series.rows()[0]["state"] for series in configs} == {
        "booth-open": "pending",
        "booth-down": "rejected",
    }
    instruments = influx.query(dashboard_query("Instruments needing a technician"))
    assert [(series.tags["agent_id"], series.tags["device"]) for series in instruments] == [
        ("booth-open", "bp1")
    ]
    (row,) = instruments[0].rows()
    assert (row["battery"], row["calibration due"]) == (15, 10)
    agents = influx.query(dashboard_query("Agents"))
    assert {series.tags["agent_id"]: series.rows()[0]["state"] for series in agents} == {
        "booth-open": "online",
        "booth-down": "offline",
        "booth-closed": "closed",
        "bus-1": "online",
    }
