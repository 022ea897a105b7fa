"""Backlog drain benchmark: a bus back in coverage with N buffered readings.

Fills one agent's outbox with N readings (as hours offline would), then starts the
agent against a real Mosquitto, fleet service and InfluxDB, and measures how long
until every reading is stored and confirmed (the outbox is empty). Run at the
agent's default drain pace, and unpaced, to show the cap and the raw capacity.

    .venv/bin/python bench/drain.py --readings 100000

Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edge_agent.config import AgentConfig
from edge_agent.runtime.supervisor import Agent
from edge_agent.storage.outbox import Outbox
from fleet.devstack.influxdb import fleet_stack
from vigie_core.clock import utc_now
from vigie_core.contract.codec import encode
from vigie_core.contract.data import Reading, ReadingKind
from vigie_core.contract.topics import Topics


def fill(state_dir: Path, readings: int) -> None:
    """Buffer ``readings`` blood-pressure readings, one a second over the past hours."""
    topics = Topics()
    start = utc_now() - timedelta(seconds=readings)
    # NORMAL while filling: the file is the same, only the commit durability differs.
    outbox = Outbox(state_dir / "outbox.sqlite3", synchronous="normal", max_bytes=2**40)
    for seq in range(1, readings + 1):
        message = Reading(
            agent_id="bus-1",
            seq=seq,
            measured_at=start + timedelta(seconds=seq),
            kind=ReadingKind.BLOOD_PRESSURE,
            device="bp",
            values={"systolic": 120.0, "diastolic": 80.0},
            units={"systolic": "mm[Hg]", "diastolic": "mm[Hg]"},
        )
        outbox.add(seq, topics.topic_for(message), encode(message), message.type)
    outbox.close()


async def drain(config: AgentConfig, timeout_s: float) -> float:
    agent = Agent(config)
    stop = asyncio.Event()
    runner = asyncio.create_task(agent.run(stop))
    started = time.monotonic()
    while await agent.recorder.call(len, agent.outbox) and time.monotonic() - started < timeout_s:
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    stop.set()
    await runner
    return elapsed


def run(readings: int, rate: float | None, console: Console) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="vigie-drain-") as scratch:
        root = Path(scratch)
        with fleet_stack(root, "drain", "fleet-drain") as (broker, influxdb):
            console.print(f"filling the outbox with {readings:,} readings...")
            fill(root / "agent", readings)
            delivery = {} if rate is None else {"drain_rate_per_s": rate, "drain_burst": int(rate)}
            config = AgentConfig.model_validate(
                {
                    "schema_version": 1,
                    "agent_id": "bus-1",
                    "kind": "bus",
                    "site": {"id": "bus", "name": "bus"},
                    "broker": {
                        "port": broker.port,
                        "tls": broker.credentials("bus-1").as_config(),
                    },
                    "state_dir": str(root / "agent"),
                    "health_interval_s": 3600,
                    "delivery": delivery,
                }
            )
            console.print(f"draining at {config.delivery.drain_rate_per_s:,.0f} msg/s...")
            elapsed = asyncio.run(drain(config, timeout_s=1800))
            with influxdb.client("drain", timeout_s=120) as influx:
                (series,) = influx.query('SELECT count(seq) FROM "blood_pressure"')
                stored = int(series.rows()[0]["count"])
    return elapsed, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=100_000)
    args = parser.parse_args()
    console = Console()
    table = Table(title=f"bench/drain.py: a backlog of {args.readings:,} readings")
    for column in ("drain pace", "seconds", "readings/s", "stored", "lost"):
        table.add_column(column, justify="right")
    for label, rate in (("default (500 msg/s)", None), ("unpaced", 1_000_000.0)):
        elapsed, stored = run(args.readings, rate, console)
        table.add_row(
            label,
            f"{elapsed:.1f}",
            f"{stored / elapsed:,.0f}",
            f"{stored:,}",
            f"{args.readings - stored:,}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
