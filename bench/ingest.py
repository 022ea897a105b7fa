"""End-to-end ingest benchmark: N agents publish as fast as they can for a fixed time.

Starts its own Mosquitto and InfluxDB (child processes, temporary folder), the fleet
service as a real process, and N agents in this process (each with its own MQTT
connection and its own durable outbox, as in production). Every reading goes through
the outbox, the broker, the fleet and InfluxDB; the script then counts what was stored
per sequence number and prints readings/s stored end to end, lost and duplicated.

    .venv/bin/python bench/ingest.py --agents 20 --seconds 30

Not a test: it never fails on a figure, it prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edge_agent.config import AgentConfig
from edge_agent.runtime.supervisor import Agent
from fleet.devstack.influxdb import fleet_stack
from fleet.devstack.services import Mosquitto
from fleet.storage.influx import InfluxClient
from vigie_core.contract.data import ReadingKind

SEQ_MEASUREMENTS = ["agent_health", "agent_event", *(kind.value for kind in ReadingKind)]


def agent_configs(
    count: int, broker: Mosquitto, state_root: Path, synchronous: str
) -> list[AgentConfig]:
    ids = [f"bench-{index:03d}" for index in range(count)]
    identities = broker.enroll(*ids)
    return [
        AgentConfig.model_validate(
            {
                "schema_version": 1,
                "agent_id": f"bench-{index:03d}",
                "site": {"id": f"site-{index:03d}", "name": "bench"},
                "kind": "booth",
                "broker": {
                    "host": "127.0.0.1",
                    "port": broker.port,
                    "publish_window": 100,
                    "tls": identities[f"bench-{index:03d}"].as_config(),
                },
                "state_dir": str(state_root / f"bench-{index:03d}"),
                "health_interval_s": 5.0,
                "outbox": {"synchronous": synchronous},
                # The poller is idle: the benchmark's own loop below produces the readings.
                "devices": [{"id": "bp", "kind": "blood_pressure", "interval_s": 3600}],
            }
        )
        for index in range(count)
    ]


async def produce(agents: list[Agent], seconds: float) -> int:
    """Every agent takes readings in a tight loop for ``seconds``; returns how many."""
    stop = asyncio.Event()
    runners = [asyncio.create_task(agent.run(stop)) for agent in agents]
    produced = 0

    async def flood(agent: Agent) -> None:
        nonlocal produced
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            agent.pool.read_simulated(agent.instruments[0])
            produced += 1
            await asyncio.sleep(0)  # let the sender and the other agents run

    await asyncio.gather(*(flood(agent) for agent in agents))
    # Drain before stopping: the benchmark measures delivery, not the shutdown budget.
    while any([await agent.recorder.call(len, agent.outbox) for agent in agents]):
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*runners)
    return produced


def last_seq(state_dir: Path) -> int:
    with contextlib.closing(sqlite3.connect(state_dir / "outbox.sqlite3")) as db:
        (value,) = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    return int(value)


def stored(influx: InfluxClient, agent_id: str) -> Counter[int]:
    quoted = ",".join(f'"{name}"' for name in SEQ_MEASUREMENTS)
    series = influx.query(f"SELECT seq FROM {quoted} WHERE agent_id = '{agent_id}'")
    return Counter(row["seq"] for item in series for row in item.rows())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--outbox-sync", choices=["full", "normal"], default="full")
    args = parser.parse_args()
    console = Console()

    with tempfile.TemporaryDirectory(prefix="vigie-bench-") as scratch:
        root = Path(scratch)
        # Agents publish only once the fleet's subscription exists at the broker.
        with fleet_stack(root, "bench", "fleet-bench") as (broker, influxdb):
            configs = agent_configs(args.agents, broker, root / "agents", args.outbox_sync)
            agents = [Agent(config) for config in configs]
            console.print(
                f"{args.agents} agents flooding for {args.seconds:.0f} s "
                f"(outbox synchronous={args.outbox_sync})..."
            )
            started = time.monotonic()
            produced = asyncio.run(produce(agents, args.seconds))
            sent_s = time.monotonic() - started

            with influxdb.client("bench", timeout_s=120) as influx:
                expected = {c.agent_id: last_seq(c.state_dir) for c in configs}
                total = sum(expected.values())
                deadline = time.monotonic() + 300
                counts: dict[str, Counter[int]] = {}
                while time.monotonic() < deadline:
                    counts = {agent_id: stored(influx, agent_id) for agent_id in expected}
                    if sum(len(c) for c in counts.values()) >= total:
                        break
                    time.sleep(1)
                stored_s = time.monotonic() - started

    distinct = sum(len(c) for c in counts.values())
    lost = sum(len(set(range(1, expected[a] + 1)) - counts[a].keys()) for a in expected)
    duplicated = sum(n - 1 for c in counts.values() for n in c.values() if n > 1)
    table = Table(title="bench/ingest.py: agents -> outbox -> Mosquitto -> fleet -> InfluxDB")
    for column in (
        "agents",
        "seconds",
        "messages sent",
        "stored (distinct seq)",
        "stored/s end to end",
        "lost",
        "duplicated",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        str(args.agents),
        f"{sent_s:.1f}",
        str(total),
        str(distinct),
        f"{distinct / stored_s:,.0f}",
        str(lost),
        str(duplicated),
    )
    console.print(table)
    console.print(
        f"({produced} readings produced; messages include health and events. "
        f"Time runs from the first reading to the last one stored: {stored_s:.1f} s.)"
    )


if __name__ == "__main__":
    main()
