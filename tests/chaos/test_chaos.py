"""Chaos: 50 agents publish without pause while the broker, a fleet instance, InfluxDB,
an agent and a bus's network fail in turn. Every sequence number sent must be stored
exactly once. Prints a table per scenario: sent, stored, lost, duplicated, worst delay.

Everything is real: Mosquitto, InfluxDB, two fleet service processes sharing the
subscription, agents as processes (48 in one simulated-fleet process, one bus behind a
TCP proxy the test cuts, one booth on its own so that it can be SIGKILLed).
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console
from rich.table import Table

from fleet.devstack.influxdb import InfluxDB
from fleet.devstack.processes import fleet_serve_args, wait_until_subscribed
from fleet.devstack.services import Mosquitto
from fleet.security.pki import Role
from fleet.storage.influx import InfluxClient
from fleet.storage.schema import AGENT_EVENT, AGENT_HEALTH
from vigie_core.contract.data import ReadingKind

from ..integration.conftest import REPO, wait_until
from .proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

AGENTS_IN_FLEET = 48
LONE = "booth-lone"  # its own process: SIGKILLed in scenario (d)
BUS = "bus-proxied"  # behind the proxy: cut off in scenario (e)
SEQ_MEASUREMENTS = [AGENT_HEALTH, AGENT_EVENT, *(kind.value for kind in ReadingKind)]
OUTAGE_S = {"influxdb": 60.0, "bus": 150.0}


def agent_config(
    agent_id: str, port: int, state: Path, tls: dict[str, str], kind: str = "booth"
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "agent_id": agent_id,
        "site": {"id": f"site-{agent_id}", "name": agent_id},
        "kind": kind,
        "broker": {
            "port": port,
            "tls": tls,
            "keepalive_s": 5,
            "reconnect_initial_s": 0.5,
            "reconnect_max_s": 5,
        },
        "state_dir": str(state / agent_id),
        "health_interval_s": 2.0,
        "delivery": {"confirm_timeout_s": 10},
        "devices": [
            {"id": "bp", "kind": "blood_pressure", "interval_s": 1.0},
            {"id": "oxi", "kind": "pulse_oximetry", "interval_s": 1.0},
        ],
    }


def last_seq(state_dir: Path) -> int:
    """The last sequence number an agent assigned (read beside the running agent)."""
    path = state_dir / "outbox.sqlite3"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    return 0 if row is None else int(row[0])


@dataclass
class Scenario:
    name: str
    #: Per agent, the sequence numbers assigned while the scenario ran: (first, last).
    ranges: dict[str, tuple[int, int]]


class Rig:
    """The whole system, with handles to break each part."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.broker = Mosquitto(workdir=root / "mosquitto")
        self.influxdb = InfluxDB(workdir=root / "influxdb")
        self.proxy: TcpProxy | None = None
        self.fleets: dict[str, subprocess.Popen[bytes]] = {}
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.state = root / "state"
        self.agent_ids = [f"booth-{index:02d}" for index in range(AGENTS_IN_FLEET)]
        self.agent_ids += [BUS, LONE]

    def start(self) -> None:
        self.broker.start()
        self.influxdb.start()
        # TLS with a certificate per agent, the generated ACL, InfluxDB auth: as deployed.
        self.tls = {
            name: credentials.as_config()
            for name, credentials in self.broker.enroll(*self.agent_ids).items()
        }
        password_file = self.influxdb.grant("chaos")
        self.proxy = TcpProxy(self.broker.port or 0)
        self.proxy.start()
        self.fleet_config = self.root / "fleet.yaml"
        self.fleet_config.write_text(
            yaml.safe_dump(
                {
                    "schema_version": 1,
                    "mqtt": {
                        "port": self.broker.port,
                        "share_group": "chaos",
                        "tls": self.broker.service_credentials.as_config(),
                    },
                    "influxdb": {
                        "url": self.influxdb.url,
                        "database": "chaos",
                        "username": "fleet",
                        "password_file": str(password_file),
                    },
                    "ingest": {"batch_max_delay_s": 0.1},
                }
            )
        )
        for name in ("fleet-a", "fleet-b"):
            self.start_fleet(name)
        configs = []
        for agent_id in self.agent_ids[:AGENTS_IN_FLEET]:
            config = agent_config(agent_id, self.broker.port or 0, self.state, self.tls[agent_id])
            configs.append(self._write(config))
        assert self.proxy is not None
        bus = agent_config(BUS, self.proxy.port, self.state, self.tls[BUS], "bus")
        configs.append(self._write(bus))
        self.agents["fleet-of-agents"] = self._spawn(
            "agents", "edge_agent", "simulate", *map(str, configs)
        )
        self.start_lone()

    def _write(self, config: dict[str, Any]) -> Path:
        path = self.root / f"{config['agent_id']}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _spawn(self, log: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.root / f"{log}.log").open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT, cwd=REPO
            )

    def start_fleet(self, name: str) -> None:
        ready = self.root / f"{name}.ready"
        config = yaml.safe_load(self.fleet_config.read_text())
        # Each instance its own identity: the broker names the client after it.
        config["mqtt"]["tls"] = self.broker.credentials(name, Role.SERVICE).as_config()
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        self.fleets[name] = self._spawn(name, *fleet_serve_args(path, ready)[1:])
        wait_until_subscribed(self.fleets[name], ready, self.root / f"{name}.log")

    def start_lone(self) -> None:
        path = self._write(agent_config(LONE, self.broker.port or 0, self.state, self.tls[LONE]))
        self.agents[LONE] = self._spawn(LONE, "edge_agent", "run", "--config", str(path))

    def seqs_now(self) -> dict[str, int]:
        return {agent_id: last_seq(self.state / agent_id) for agent_id in self.agent_ids}

    def stop(self) -> None:
        for process in [*self.agents.values(), *self.fleets.values()]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.agents.values(), *self.fleets.values()]:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.proxy is not None:
            self.proxy.stop()
        self.influxdb.stop()
        self.broker.stop()


def stored(influx: InfluxClient) -> dict[str, Counter[int]]:
    """Per agent, how many points carry each sequence number."""
    quoted = ",".join(f'"{name}"' for name in SEQ_MEASUREMENTS)
    counts: dict[str, Counter[int]] = {}
    for series in influx.query(f"SELECT seq FROM {quoted} GROUP BY agent_id"):
        counts.setdefault(series.tags["agent_id"], Counter()).update(
            row["seq"] for row in series.rows()
        )
    return counts


def worst_delay(influx: InfluxClient, scenario: Scenario) -> float:
    worst = 0.0
    quoted = ",".join(f'"{name}"' for name in SEQ_MEASUREMENTS)
    for agent_id, (first, last) in scenario.ranges.items():
        if last < first:
            continue
        for series in influx.query(
            f"SELECT max(delay_s) FROM {quoted} WHERE agent_id = '{agent_id}' "
            f"AND seq >= {first} AND seq <= {last}"
        ):
            value = series.rows()[0]["max"]
            worst = max(worst, value or 0.0)
    return worst


def report(
    influx: InfluxClient, scenarios: list[Scenario], counts: dict[str, Counter[int]]
) -> Counter[str]:
    """Print the table per scenario; return the totals."""
    table = Table(title="chaos: 50 agents, every sequence number accounted for")
    for column in ("scenario", "sent", "stored", "lost", "duplicated", "worst delay (s)"):
        table.add_column(column, justify="right" if column != "scenario" else "left")
    totals = Counter[str]()
    for scenario in scenarios:
        sent = stored_n = lost = duplicated = 0
        for agent_id, (first, last) in scenario.ranges.items():
            for seq in range(first, last + 1):
                sent += 1
                copies = counts[agent_id][seq]
                stored_n += copies > 0
                lost += copies == 0
                duplicated += max(0, copies - 1)
        totals.update(lost=lost, duplicated=duplicated, sent=sent)
        table.add_row(
            scenario.name,
            str(sent),
            str(stored_n),
            str(lost),
            str(duplicated),
            f"{worst_delay(influx, scenario):.1f}",
        )
    Console(width=120).print(table)
    return totals


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    system = Rig(tmp_path_factory.mktemp("chaos"))
    system.start()
    yield system
    system.stop()


def run_scenario(rig: Rig, name: str, fault: Callable[[], None], settle_s: float = 10) -> Scenario:
    """Let traffic flow, apply the fault (which heals itself), let traffic flow again."""
    time.sleep(settle_s)
    before = rig.seqs_now()
    fault()
    time.sleep(settle_s)
    after = rig.seqs_now()
    return Scenario(name, {a: (before[a] + 1, after[a]) for a in rig.agent_ids})


@pytest.mark.timeout(1200)
def test_nothing_is_lost_or_doubled_through_every_failure(rig: Rig) -> None:
    scenarios: list[Scenario] = []

    def broker_crash() -> None:
        time.sleep(1.5)  # let autosave catch the fleet's sessions once
        rig.broker.kill()
        time.sleep(5)
        rig.broker.start()

    def fleet_crash() -> None:
        rig.fleets["fleet-a"].kill()
        rig.fleets["fleet-a"].wait()
        time.sleep(5)
        rig.start_fleet("fleet-a")

    def influxdb_down() -> None:
        rig.influxdb.stop()
        time.sleep(OUTAGE_S["influxdb"])
        rig.influxdb.start()

    def agent_crash() -> None:
        rig.agents[LONE].kill()
        rig.agents[LONE].wait()
        time.sleep(3)
        rig.start_lone()

    def bus_out_of_coverage() -> None:
        assert rig.proxy is not None
        rig.proxy.cut()
        time.sleep(OUTAGE_S["bus"])
        rig.proxy.restore()

    for name, fault in [
        ("(a) broker SIGKILL + restart", broker_crash),
        ("(b) fleet instance SIGKILL + restart", fleet_crash),
        ("(c) InfluxDB down for a minute", influxdb_down),
        ("(d) agent SIGKILL + restart", agent_crash),
        ("(e) bus cut off for 150 s", bus_out_of_coverage),
    ]:
        scenarios.append(run_scenario(rig, name, fault))

    # Stop the agents cleanly (they flush), then wait until every number assigned is in.
    rig.agents["fleet-of-agents"].terminate()
    rig.agents[LONE].terminate()
    for process in rig.agents.values():
        assert process.wait(60) == 0
    final = rig.seqs_now()
    with rig.influxdb.client("chaos", timeout_s=120) as influx:
        counts = wait_until(
            lambda: (
                (c := stored(influx))
                and all(len(c.get(a, ())) >= final[a] for a in rig.agent_ids)
                and c
            ),
            240,
            "every sequence number stored",
        )
        totals = report(influx, scenarios, counts)
        # The bus's backlog from its time out of coverage arrived marked historical.
        first, last = scenarios[-1].ranges[BUS]
        late = influx.query(
            f"SELECT count(seq) FROM \"blood_pressure\" WHERE agent_id = '{BUS}' "
            f"AND historical = true AND seq >= {first} AND seq <= {last}"
        )
        assert late, "no reading of the bus's backlog was marked historical"
        assert late[0].rows()[0]["count"] >= OUTAGE_S["bus"] / 2

    everything = {a: list(range(1, final[a] + 1)) for a in rig.agent_ids}
    assert {a: sorted(counts[a]) for a in rig.agent_ids} == everything, "lost sequence numbers"
    assert all(set(counts[a].values()) == {1} for a in rig.agent_ids), "duplicated points"
    assert totals["sent"] > 50 * 5 * 10, "the agents did not keep publishing"
    assert totals["lost"] == totals["duplicated"] == 0
