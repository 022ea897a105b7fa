"""Desired configuration end to end: `fleet config push|status|diff` against the real
broker, with agents running as real processes (online, offline, refusing)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.storage.influx import InfluxClient

from .conftest import AgentFactory, Processes, Tap, run, wait_until

pytestmark = pytest.mark.integration


def fleet(config: Path, *args: str) -> Any:
    done = run("fleet", *args, "--config", str(config))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "--json" in args else done.stdout


def sync_state(config: Path) -> dict[str, dict[str, Any]]:
    return {row["agent_id"]: row for row in fleet(config, "config", "status", "--json")}


def push_file(tmp_path: Path, name: str, settings: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, **settings}))
    return path


def online(config: Path, *agents: str) -> bool:
    rows = {row["agent_id"]: row["status"] for row in fleet(config, "agents", "--json")}
    return all(rows.get(agent) == "online" for agent in agents)


def test_pushed_configuration_reaches_online_and_offline_agents_and_bad_ones_are_refused(
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    influx: InfluxClient,
    tap: Tap,
    tmp_path: Path,
) -> None:
    processes.start_fleet(fleet_config)
    on_path = agent_config("cfg-on", tags=["pilot"])
    off_path = agent_config("cfg-off", tags=["pilot"])
    processes.start("on", "-m", "edge_agent", "run", "--config", str(on_path))
    off = processes.start("off", "-m", "edge_agent", "run", "--config", str(off_path))
    wait_until(lambda: online(fleet_config, "cfg-on", "cfg-off"), 60, "both agents known")
    off.send_signal(signal.SIGTERM)
    assert off.wait(20) == 0

    # A target that names nobody is an error, and nothing is sent.
    settings = {
        "health_interval_s": 0.7,
        "devices": {"ox1": {"enabled": False}, "bp1": {"battery_low_percent": 30}},
    }
    good = push_file(tmp_path, "good", settings)
    done = run(
        "fleet",
        "config",
        "push",
        str(good),
        "--target",
        "tag:nobody",
        "--config",
        str(fleet_config),
    )
    assert done.returncode == 1
    assert "matches no known agent" in done.stderr
    assert (
        "cfg-on" not in sync_state(fleet_config)
        or not sync_state(fleet_config)["cfg-on"]["desired_version"]
    )

    pushed = fleet(fleet_config, "config", "push", str(good), "--target", "tag:pilot")
    assert "2 agent(s)" in pushed
    state = wait_until(
        lambda: (s := sync_state(fleet_config)) and s["cfg-on"]["state"] == "in sync" and s,
        30,
        "the online agent to apply it",
    )
    assert state["cfg-off"]["state"] == "pending"
    assert state["cfg-on"]["desired_version"] == state["cfg-on"]["reported_version"] == 1
    applied_ns = time.time_ns()
    # The oximeter is off: the agent says so in a new birth, and its readings stop.
    births = lambda: [  # noqa: E731
        body for topic, body in tap.messages if topic.endswith("/cfg-on/state") and body["online"]
    ]
    wait_until(
        lambda: any([d["id"] for d in b["birth"]["devices"]] == ["bp1"] for b in births()),
        10,
        "a birth without the oximeter",
    )
    time.sleep(2)
    later = influx.query(
        "SELECT seq FROM pulse_oximetry WHERE agent_id = 'cfg-on' "
        f"AND time > {applied_ns + 1_000_000_000}"
    )
    assert not later, later
    assert "Runs every desired setting" in fleet(fleet_config, "config", "diff", "cfg-on")
    diff = fleet(fleet_config, "config", "diff", "cfg-off", "--json")
    # It reported what it ran before it went away: that is what differs.
    assert {"setting": "devices.ox1.enabled", "desired": False, "running": True} in diff
    assert {"setting": "health_interval_s", "desired": 0.7, "running": 0.5} in diff
    assert {"setting": "devices.bp1.battery_low_percent", "desired": 30, "running": 20} in diff

    # The offline agent converges when it comes back.
    processes.start("off-again", "-m", "edge_agent", "run", "--config", str(off_path))
    wait_until(
        lambda: sync_state(fleet_config)["cfg-off"]["state"] == "in sync", 60, "the agent back"
    )

    # A configuration the agent cannot run is refused with the field; the old one runs on.
    bad = push_file(tmp_path, "bad", {"devices": {"ecg9": {"enabled": True}}})
    fleet(fleet_config, "config", "push", str(bad), "--target", "cfg-on")
    state = wait_until(
        lambda: (s := sync_state(fleet_config)) and s["cfg-on"]["state"] == "rejected" and s,
        30,
        "the rejection",
    )
    assert state["cfg-on"]["reported_version"] == 1
    assert state["cfg-on"]["desired_version"] == 2
    assert state["cfg-on"]["reason"].startswith("devices.ecg9: no such instrument")
    status_table = fleet(fleet_config, "config", "status")
    assert "rejected" in status_table
    before = influx.query("SELECT count(seq) FROM blood_pressure WHERE agent_id = 'cfg-on'")
    wait_until(
        lambda: (
            influx.query("SELECT count(seq) FROM blood_pressure WHERE agent_id = 'cfg-on'")[
                0
            ].rows()[0]["count"]
            > before[0].rows()[0]["count"]
        ),
        20,
        "readings to go on under the old configuration",
    )


def test_a_file_that_is_not_a_valid_configuration_is_refused_before_anything_is_sent(
    fleet_config: Path, tmp_path: Path
) -> None:
    bad = push_file(tmp_path, "bad", {"health_interval_s": -5, "colour": "red"})
    done = run(
        "fleet", "config", "push", str(bad), "--target", "all", "--config", str(fleet_config)
    )
    assert done.returncode == 2
    assert "health_interval_s" in done.stderr
    assert "colour" in done.stderr
