"""The command lines as a user meets them: bad input, services that are not there."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fleet.devstack.services import free_port

from .conftest import REPO, AgentFactory, Processes, run, wait_until

pytestmark = pytest.mark.integration


def test_a_malformed_agent_config_names_file_field_and_reason(
    agent_config: AgentFactory,
) -> None:
    path = agent_config("booth-x", health_interval_s="often")
    for command in (
        ("edge_agent", "run", "--config", str(path)),
        ("edge_agent", "check", str(path)),
    ):
        done = run(*command)
        assert done.returncode == 2
        assert str(path) in done.stderr
        assert "health_interval_s" in done.stderr
        assert "valid number" in done.stderr
        assert "Traceback" not in done.stderr


def test_check_describes_a_good_config(agent_config: AgentFactory) -> None:
    path = agent_config("booth-x")
    done = run("edge_agent", "check", str(path))
    assert done.returncode == 0, done.stderr
    assert "agent booth-x (booth)" in done.stdout
    assert "2 device(s)" in done.stdout
    assert "(TLS)" in done.stdout


def test_a_malformed_fleet_config_names_file_field_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "schema_version: 1\nmqtt: {allow_plaintext: true}\ninfluxdb: {url: 5, databse: x}\n"
    )
    for command in (("fleet", "serve"), ("fleet", "agents")):
        done = run(*command, "--config", str(path))
        assert done.returncode == 2
        assert str(path) in done.stderr
        assert "influxdb.databse" in done.stderr
        assert "Extra inputs are not permitted" in done.stderr
        assert "Traceback" not in done.stderr


def test_the_cli_without_any_config_says_how_to_give_one(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fleet", "agents"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2
    assert "VIGIE_FLEET_CONFIG" in done.stderr


def test_unreachable_influxdb_is_one_clear_line_for_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "mqtt": {"allow_plaintext": True},
                "influxdb": {"url": f"http://127.0.0.1:{free_port()}", "timeout_s": 2},
            }
        )
    )
    done = run("fleet", "agents", "--config", str(path))
    assert done.returncode == 1
    assert "unreachable" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_service_waits_for_an_unreachable_influxdb_and_stops_cleanly(
    processes: Processes,
    tmp_path: Path,
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "mqtt": {"allow_plaintext": True},
                "influxdb": {"url": f"http://127.0.0.1:{free_port()}", "timeout_s": 1},
            }
        )
    )
    service = processes.start("fleet", "-m", "fleet", "serve", "--config", str(path))
    wait_until(lambda: processes.log("fleet").count("retrying") >= 2, 30, "two retries")
    assert service.poll() is None
    service.send_signal(signal.SIGTERM)
    assert service.wait(15) == 0
    assert "Traceback" not in processes.log("fleet")


def test_an_agent_without_a_broker_retries_and_keeps_its_readings(
    processes: Processes,
    agent_config: AgentFactory,
    tmp_path: Path,
) -> None:
    path = agent_config("booth-x")
    config = yaml.safe_load(path.read_text())
    config["broker"]["port"] = free_port()
    path.write_text(yaml.safe_dump(config))
    agent = processes.start("agent", "-m", "edge_agent", "run", "--config", str(path))
    wait_until(lambda: processes.log("agent").count("retrying in") >= 3, 30, "three retries")
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(15) == 0
    log = processes.log("agent")
    assert "Traceback" not in log
    # Nothing was sent, nothing was lost: the readings wait in the outbox.
    with sqlite3.connect(tmp_path / "state" / "booth-x" / "outbox.sqlite3") as db:
        (queued,) = db.execute("SELECT count(*) FROM outbox").fetchone()
    assert queued >= 5
