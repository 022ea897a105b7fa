"""Agents and the fleet service as real processes, against real Mosquitto and InfluxDB."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.devstack.influxdb import InfluxDB
from fleet.devstack.services import Mosquitto
from fleet.security.pki import Role
from fleet.storage.influx import InfluxClient
from fleet.storage.points import SEQ_NS_SPREAD, ns
from vigie_core.contract.data import READING_FIELDS, ReadingKind

from .conftest import REPO, AgentFactory, Processes, Tap, wait_until

pytestmark = pytest.mark.integration

SEQ_MEASUREMENTS = ["agent_health", "agent_event", *(kind.value for kind in ReadingKind)]


def fleet_json(config: Path, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "fleet", *args, "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        timeout=60,
    )
    return json.loads(done.stdout)


def fleet_text(config: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "fleet", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "250"},
    )
    return done.stdout


def stored_seqs(influx: InfluxClient, agent_id: str) -> Counter[int]:
    """How many times each sequence number of ``agent_id`` is stored."""
    quoted = ",".join(f'"{name}"' for name in SEQ_MEASUREMENTS)
    series = influx.query(f"SELECT seq FROM {quoted} WHERE agent_id = '{agent_id}'")
    return Counter(row["seq"] for item in series for row in item.rows())


def last_seq_assigned(state_dir: Path) -> int:
    with sqlite3.connect(state_dir / "outbox.sqlite3") as db:
        (value,) = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        (left,) = db.execute("SELECT count(*) FROM outbox").fetchone()
    assert left == 0, f"{left} messages never acknowledged"
    return int(value)


def test_readings_health_and_events_arrive_exactly_once_with_exact_points(
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    influx: InfluxClient,
    tap: Tap,
    tmp_path: Path,
) -> None:
    agent_ids = ["booth-a", "booth-b", "bus-c"]
    processes.start_fleet(fleet_config)
    # bus-c's site is never open: once stopped it must show "closed", not "offline".
    hours = {"bus-c": {"opening_hours": {"timezone": "Europe/Paris", "week": {}}}}
    agents = {
        agent_id: processes.start(
            agent_id,
            "-m",
            "edge_agent",
            "run",
            "--config",
            str(agent_config(agent_id, **hours.get(agent_id, {}))),
        )
        for agent_id in agent_ids
    }
    wait_until(
        lambda: all(stored_seqs(influx, a).keys() >= set(range(1, 21)) for a in agent_ids),
        60,
        "20 messages from every agent",
    )
    for process in agents.values():
        process.send_signal(signal.SIGTERM)
    for agent_id, process in agents.items():
        assert process.wait(20) == 0, processes.log(agent_id)

    for agent_id in agent_ids:
        last = last_seq_assigned(tmp_path / "state" / agent_id)
        counts = wait_until(
            lambda a=agent_id, n=last: (c := stored_seqs(influx, a)) and len(c) >= n and c,
            30,
            f"all {last} messages of {agent_id} stored",
        )
        assert sorted(counts) == list(range(1, last + 1)), "lost sequence numbers"
        assert set(counts.values()) == {1}, "duplicated sequence numbers"

    # Every reading the agents published is stored exactly as published.
    readings = [body for topic, body in tap.messages if "/reading/" in topic]
    assert len(readings) >= 30
    for body in readings:
        at = ns(datetime.fromisoformat(body["measured_at"])) + body["seq"] % SEQ_NS_SPREAD
        (series,) = influx.query(
            f"SELECT * FROM \"{body['kind']}\" WHERE agent_id = '{body['agent_id']}' "
            f"AND device = '{body['device']}' AND time = {at}"
        )
        (row,) = series.rows()
        assert row["seq"] == body["seq"]
        for field in READING_FIELDS[ReadingKind(body["kind"])]:
            assert row.get(field) == body["values"].get(field), field
        if body["invalid"]:
            assert row["invalid"] == ";".join(
                f"{k}={v}" for k, v in sorted(body["invalid"].items())
            )

    # A clean stop says "offline" itself; the fleet shows it.
    listed = {row["agent_id"]: row for row in fleet_json(fleet_config, "agents")}
    assert set(listed) == set(agent_ids)
    assert {agent_id: row["status"] for agent_id, row in listed.items()} == {
        "booth-a": "offline",
        "booth-b": "offline",
        "bus-c": "closed",
    }
    for agent_id in agent_ids:
        assert listed[agent_id]["site_id"] == f"site-{agent_id}"
        assert listed[agent_id]["devices"] == ["bp1", "ox1"]
        assert listed[agent_id]["kind"] == "booth"


def test_an_agent_killed_with_sigkill_goes_offline_through_its_last_will(
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    influx: InfluxClient,
) -> None:
    processes.start_fleet(fleet_config)
    agent = processes.start(
        "agent", "-m", "edge_agent", "run", "--config", str(agent_config("booth-k"))
    )

    def status() -> str | None:
        rows = fleet_json(fleet_config, "agents")
        return rows[0]["status"] if rows else None

    wait_until(lambda: status() == "online", 60, "the agent online")
    session = fleet_json(fleet_config, "agents")[0]["session"]
    agent.send_signal(signal.SIGKILL)
    agent.wait(10)
    # keepalive 5 s: the broker gives up after 1.5 keepalives and publishes the will.
    wait_until(lambda: status() == "offline", 30, "the Last Will to mark it offline")
    assert fleet_json(fleet_config, "agents")[0]["session"] == session

    # It comes back in a new session, and the old will cannot override that.
    processes.start("agent2", "-m", "edge_agent", "run", "--config", str(agent_config("booth-k")))
    wait_until(lambda: status() == "online", 60, "the agent online again")
    assert fleet_json(fleet_config, "agents")[0]["session"] == session + 1
    detail = fleet_json(fleet_config, "agent", "booth-k")
    assert detail["health"]["devices_total"] == 2
    assert {row["device"] for row in detail["device_status"]} == {"bp1", "ox1"}
    # What the killed agent had sent but not seen confirmed, it sends again: no gaps.
    delivery = wait_until(
        lambda: (
            (d := fleet_json(fleet_config, "agent", "booth-k")["delivery"])
            and d["missing"] == 0
            and d["stored"] >= 10
            and d
        ),
        30,
        "no gap in booth-k's numbers",
    )
    assert delivery["first_seq"] == 1


def test_readings_command_returns_what_was_stored(
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    influx: InfluxClient,
) -> None:
    processes.start_fleet(fleet_config)
    processes.start("agent", "-m", "edge_agent", "run", "--config", str(agent_config("booth-r")))
    wait_until(lambda: stored_seqs(influx, "booth-r").keys() >= set(range(1, 15)), 60, "readings")
    rows = fleet_json(
        fleet_config,
        "readings",
        "booth-r",
        "--kind",
        "blood_pressure",
        "--since",
        "10m",
        "--limit",
        "5",
    )
    assert 1 <= len(rows) <= 5
    assert {row["kind"] for row in rows} == {"blood_pressure"}
    assert all(row["device"] == "bp1" for row in rows)
    times = [row["time"] for row in rows]
    assert times == sorted(times, reverse=True)
    assert all("systolic" in row or "systolic=" in row.get("invalid", "") for row in rows)
    assert all("mm[Hg]" in row["units"] for row in rows)  # JSON: as stored, UCUM

    # People read the units of the device's display, in readings and in the agent view.
    table = fleet_text(fleet_config, "readings", "booth-r", "--kind", "blood_pressure")
    assert "mmHg" in table
    assert "mm[Hg]" not in table
    detail = fleet_json(fleet_config, "agent", "booth-r")
    last = {row["device"]: row["last_reading"] for row in detail["device_status"]}
    assert last["bp1"]["kind"] == "blood_pressure"
    assert last["ox1"]["kind"] == "pulse_oximetry"
    assert "mmHg" in fleet_text(fleet_config, "agent", "booth-r")


def test_an_agent_rides_out_a_broker_crash_without_losing_anything(
    processes: Processes,
    agent_config: AgentFactory,
    influx: InfluxClient,
    tmp_path: Path,
    mqtt_prefix: str,
    influxdb: InfluxDB,
) -> None:
    broker = Mosquitto(workdir=tmp_path / "broker")
    broker.start()
    try:
        config = tmp_path / "fleet-own-broker.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "schema_version": 1,
                    "mqtt": {
                        "port": broker.port,
                        "topic_prefix": mqtt_prefix,
                        "tls": broker.credentials(f"fleet-{mqtt_prefix}", Role.SERVICE).as_config(),
                    },
                    "influxdb": {
                        "url": influxdb.url,
                        "database": influx.database,
                        "username": "fleet",
                        "password_file": str(influxdb.grant(influx.database)),
                    },
                    "ingest": {"batch_max_delay_s": 0.05},
                }
            )
        )
        processes.start_fleet(config)
        agent_yaml = agent_config("booth-c")
        settings = yaml.safe_load(agent_yaml.read_text())
        settings["broker"]["port"] = broker.port
        settings["broker"]["tls"] = broker.credentials("booth-c").as_config()  # its own CA
        agent_yaml.write_text(yaml.safe_dump(settings))
        agent = processes.start("agent", "-m", "edge_agent", "run", "--config", str(agent_yaml))
        wait_until(lambda: len(stored_seqs(influx, "booth-c")) >= 10, 60, "first readings")
        time.sleep(1.5)  # the broker's autosave (1 s) has the fleet's session on disk
        broker.kill()
        time.sleep(3)  # readings pile up in the agent's outbox meanwhile
        broker.start()
        wait_until(
            lambda: processes.log("agent").count("connected, session") >= 2,
            60,
            "the agent reconnected",
        )
        before = max(stored_seqs(influx, "booth-c"))
        wait_until(
            lambda: max(stored_seqs(influx, "booth-c")) > before + 10,
            60,
            "readings after the restart",
        )
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(20) == 0
        last = last_seq_assigned(tmp_path / "state" / "booth-c")
        counts = stored_seqs(influx, "booth-c")
        assert sorted(counts) == list(range(1, last + 1))
        assert set(counts.values()) == {1}
    finally:
        broker.stop()


def test_publishes_that_are_never_acknowledged_make_the_agent_rebuild_its_connection(
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    influx: InfluxClient,
    mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:
    from tests.chaos.proxy import TcpProxy

    proxy = TcpProxy(mosquitto.port or 0)
    proxy.start()
    try:
        processes.start_fleet(fleet_config)
        path = agent_config("booth-w")
        settings = yaml.safe_load(path.read_text())
        # keepalive 30 s would notice the dead link only after 45 s: the publish
        # watchdog (ack_timeout_s) must act first.
        settings["broker"] |= {"port": proxy.port, "keepalive_s": 30, "ack_timeout_s": 3}
        path.write_text(yaml.safe_dump(settings))
        agent = processes.start("agent", "-m", "edge_agent", "run", "--config", str(path))
        wait_until(lambda: len(stored_seqs(influx, "booth-w")) >= 10, 60, "first readings")
        proxy.stall()
        wait_until(
            lambda: "Operation timed out" in processes.log("agent"),
            20,
            "the watchdog to give up on the silent connection",
        )
        proxy.restore()
        wait_until(
            lambda: processes.log("agent").count("connected, session") >= 2, 60, "a new connection"
        )
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(20) == 0
        last = last_seq_assigned(tmp_path / "state" / "booth-w")
        counts = wait_until(
            lambda: (c := stored_seqs(influx, "booth-w")) and len(c) >= last and c,
            30,
            "every message",
        )
        assert sorted(counts) == list(range(1, last + 1))
    finally:
        proxy.stop()


def test_byte_level_instruments_reach_influxdb_with_source_times_and_privacy(
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    influx: InfluxClient,
    tap: Tap,
    mqtt_prefix: str,
) -> None:
    """Simulated devices that speak their profile's bytes (BLE characteristics, Nonin
    DF2 packets, A&D lines, Tanita records, NMEA sentences) go through the agent's real
    decoders; what InfluxDB holds says which device, when by its clock, and nothing
    about the person measured."""
    profiles = {
        "bp": ("blood_pressure", "sig_blood_pressure"),
        "thermo": ("body_temperature", "sig_thermometer"),
        "weight": ("body_weight", "sig_weight_scale"),
        "spot": ("pulse_oximetry", "sig_pulse_oximeter"),
        "glucose": ("blood_glucose", "sig_glucose_meter"),
        "oxi": ("pulse_oximetry", "nonin_df2"),
        "scale": ("body_weight", "and_scale"),
        "composition": ("body_composition", "tanita_body_composition"),
        "gps": ("position", "nmea_gps"),
    }
    devices = [
        {
            "id": device,
            "kind": kind,
            "profile": profile,
            "interval_s": 0.3,
            "calibration_due": "2099-01-01",
        }
        for device, (kind, profile) in profiles.items()
    ]
    processes.start_fleet(fleet_config)
    processes.start(
        "bus-bytes",
        "-m",
        "edge_agent",
        "run",
        "--config",
        str(agent_config("bus-bytes", kind="bus", devices=devices)),
    )

    def stored() -> dict[str, dict[str, Any]]:
        found = {}
        for device, (kind, _) in profiles.items():
            series = influx.query(
                f"SELECT * FROM \"{kind}\" WHERE agent_id = 'bus-bytes' AND device = '{device}' "
                "ORDER BY time DESC LIMIT 1"
            )
            if series:
                found[device] = series[0].rows()[0]
        return found

    rows = wait_until(lambda: (r := stored()) and len(r) == len(profiles) and r, 60, "every device")
    for device, (_, profile) in profiles.items():
        assert rows[device]["profile"] == profile, device
        assert rows[device]["address"] == f"simulated:{device}"
    # BLE devices report their serial number (Device Information) and their clock,
    # which is the agent's here: the offset is small and the time the device's.
    for device in ("bp", "thermo", "weight", "spot", "glucose"):
        assert rows[device]["serial_number"].startswith("SIM"), device
        assert abs(rows[device]["device_clock_offset_s"]) < 2, device
    assert rows["thermo"]["context"] == "temperature_type=tympanum"
    assert rows["gps"]["speed"] >= 0
    # Tanita records carry the person's id, sex and age; none of it leaves the agent.
    # (Sent alone or inside a batch, depending on how the outbox was draining.)
    sent = [
        body for topic, body in tap.messages if topic.startswith(f"{mqtt_prefix}/v1/bus-bytes/")
    ]
    sent += [inner for body in sent for inner in body.get("messages", [])]
    compositions = [body for body in sent if body.get("kind") == "body_composition"]
    assert compositions
    for body in compositions:
        text = json.dumps(body)
        assert "0000000000000042" not in text
        assert '"AG"' not in text
        assert '"GE"' not in text
    # The health report carries each instrument's battery and calibration countdown.
    row = wait_until(
        lambda: (
            (
                h := influx.query(
                    "SELECT * FROM device_status WHERE agent_id = 'bus-bytes' AND device = 'bp' "
                    "AND battery_percent >= 0 ORDER BY time DESC LIMIT 1"
                )
            )
            and h[0].rows()[0]
        ),
        30,
        "a battery level in the health report",
    )
    assert 20 <= row["battery_percent"] <= 100
    assert row["calibration_due_days"] > 20_000
