"""The demo as the README runs it: everything up, the fleet visible, Ctrl-C stops it all."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from fleet.devstack.demo import DEMO_DATABASE
from fleet.devstack.influxdb import InfluxDB
from fleet.devstack.services import free_port
from fleet.storage.queries import list_agents
from vigie_core.clock import utc_now

from .conftest import REPO, Processes, wait_until

pytestmark = pytest.mark.integration


def agents(folder: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "fleet", "agents", "--json", "--config", str(folder / "fleet.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    return json.loads(done.stdout) if done.returncode == 0 else []


def children_using(folder: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(folder) in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def test_the_demo_shows_its_fleet_and_stops_everything_on_ctrl_c(
    processes: Processes,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    demo = processes.start(
        "demo",
        "-m",
        "fleet",
        "demo",
        "--booths",
        "3",
        "--buses",
        "1",
        "--dir",
        str(folder),
        "--mqtt-port",
        str(free_port()),
        "--influx-port",
        str(free_port()),
    )
    rows = wait_until(
        lambda: (r := agents(folder)) and sum(row["status"] == "online" for row in r) == 4 and r,
        90,
        "four agents online",
    )
    assert sorted(row["agent_id"] for row in rows) == ["booth-01", "booth-02", "booth-03", "bus-1"]
    bus = next(row for row in rows if row["kind"] == "bus")
    assert "gps" in bus["devices"]  # type: ignore[operator]
    assert len(children_using(folder)) >= 4  # mosquitto, influxd, fleet, agents

    demo.send_signal(signal.SIGINT)
    assert demo.wait(60) == 0, processes.log("demo")
    assert "Stopped." in processes.log("demo")
    assert children_using(folder) == []
    assert "Traceback" not in (folder / "logs" / "fleet.log").read_text()
    # Secure by default: the demo ran with TLS, per-agent certificates and InfluxDB auth.
    broker_config = (folder / "mosquitto" / "mosquitto.conf").read_text()
    assert "require_certificate true" in broker_config
    assert "allow_anonymous false" in broker_config
    security = json.loads((folder / "mosquitto" / "tls" / "dynamic-security.json").read_text())
    assert "booth-01" in [client["username"] for client in security["clients"]]
    assert "auth-enabled = true" in (folder / "influxdb" / "influxdb.conf").read_text()
    # The agents said goodbye before the fleet and the broker went away: reopen the
    # demo's own InfluxDB data and find every agent recorded offline.
    with (
        InfluxDB(workdir=folder / "influxdb") as reopened,
        reopened.client(DEMO_DATABASE) as influx,
    ):
        views = list_agents(influx, utc_now())
    # Offline, or closed for booths outside their opening hours: never online.
    assert {view.agent_id: view.status.value in {"offline", "closed"} for view in views} == {
        "booth-01": True,
        "booth-02": True,
        "booth-03": True,
        "bus-1": True,
    }
