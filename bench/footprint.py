"""The agent's footprint: memory, idle CPU, and bytes on the wire for a bus's 4G budget.

Starts its own Mosquitto, InfluxDB and fleet service (``fleet_stack``), and
``edge-agent run`` as a real process whose broker connection goes through a counting
TCP proxy in this process, so the bytes are what a modem would carry: TLS records,
MQTT framing, acknowledgements both ways, keep-alives. Runs:

- **idle booth**: instruments configured (simulated, through their real profiles'
  decoders: a BLE cuff and thermometer, a serial Tanita scale and a Nonin oximeter),
  no reading in the window, health every ``health_interval_s``: RSS, CPU, bytes/hour;
- **readings**: one cuff reading every 2 s: bytes per reading (idle traffic taken off);
- **backlog**: a bus back in coverage with 2,000 readings in its outbox, sent in
  batches (the default, 100 a message) and one message each: bytes per reading.

    .venv/bin/python bench/footprint.py            # about 6 minutes
    .venv/bin/python bench/footprint.py --window-s 60

Not a test: it never fails on a figure, it prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml
from drain import fill  # bench/ is on the path when a script of it runs
from rich.console import Console
from rich.table import Table

from fleet.devstack.influxdb import fleet_stack
from fleet.devstack.services import Mosquitto
from fleet.storage.influx import InfluxClient

BACKLOG = 2000

INSTRUMENTS = [
    {"id": "bp", "kind": "blood_pressure", "profile": "sig_blood_pressure"},
    {"id": "thermo", "kind": "body_temperature", "profile": "sig_thermometer"},
    {"id": "scale", "kind": "body_composition", "profile": "tanita_body_composition"},
    {"id": "ox", "kind": "pulse_oximetry", "profile": "nonin_text"},
]


class CountingProxy:
    """A TCP relay that counts the bytes each way. Written by hand:
    no library counts a TLS stream's bytes without terminating it, and the figure must
    include TLS."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = 0  # agent → broker
        self.down = 0  # broker → agent
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, up: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                if up:
                    self.up += len(data)
                else:
                    self.down += len(data)
                sink.write(data)
                await sink.drain()
        sink.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, broker_writer, True), self._pipe(broker_reader, writer, False)
        )

    @property
    def total(self) -> int:
        return self.up + self.down


@dataclass
class Sample:
    rss_mb: float
    cpu_percent: float
    bytes: int
    seconds: float


def agent_config(
    root: Path, broker: Mosquitto, port: int, devices: list[dict[str, Any]], **extra: Any
) -> Path:
    config = {
        "schema_version": 1,
        "agent_id": extra.get("agent_id", "booth-1"),
        "site": {"id": "mamers", "name": "Mamers"},
        "kind": "booth",
        "broker": {
            "port": port,
            "tls": broker.credentials(extra.get("agent_id", "booth-1")).as_config(),
        },
        "state_dir": str(root / "agent"),
        "profiles_dir": str(Path(__file__).resolve().parents[1] / "device_profiles"),
        **extra,
        "devices": devices,
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def agent(config: Path, log: Path) -> Iterator[psutil.Process]:
    command = [str(Path(sys.executable).parent / "edge-agent"), "run", "--config", str(config)]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield psutil.Process(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def measure(process: psutil.Process, proxy: CountingProxy, seconds: float) -> Sample:
    """Over ``seconds``: the largest RSS, the process's own CPU, the bytes both ways."""
    cpu_before = sum(process.cpu_times()[:2])
    bytes_before = proxy.total
    started = time.monotonic()
    rss = 0
    while time.monotonic() - started < seconds:
        rss = max(rss, process.memory_info().rss)
        time.sleep(1)
    elapsed = time.monotonic() - started
    cpu = sum(process.cpu_times()[:2]) - cpu_before
    return Sample(rss / 2**20, 100 * cpu / elapsed, proxy.total - bytes_before, elapsed)


def stored_readings(influx: InfluxClient) -> int:
    series = influx.query('SELECT count("seq") FROM "blood_pressure"')
    return int(series[0].rows()[0]["count"]) if series else 0


def wait_stored(influx: InfluxClient, at_least: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while (count := stored_readings(influx)) < at_least and time.monotonic() < deadline:
        time.sleep(1)
    return count


#: What `edge-agent run` imports, in an order where each adds its own share: the
#: agent's memory is mostly libraries, and this says which.
IMPORT_LADDER = (
    "yaml",
    "psutil",
    "serial",
    "pydantic",
    "vigie_core.contract.codec",
    "cryptography.x509",
    "vigie_core.tls",
    "edge_agent.config",
    "paho.mqtt.client",
    "aiomqtt",
    "typer",
    "edge_agent.runtime.supervisor",
    "edge_agent.cli",
    "bleak",
)

_LADDER_SCRIPT = """
import json, sys
def rss():  # VmHWM: this process's peak (ru_maxrss would keep the parent's, from before exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
steps = [("python " + sys.version.split()[0], rss())]
for name in sys.argv[1:]:
    __import__(name)
    steps.append((name, rss()))
print(json.dumps(steps))
"""


def import_ladder() -> list[tuple[str, float, float]]:
    """(module, peak RSS MiB after importing it, what it added), in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", _LADDER_SCRIPT, *IMPORT_LADDER],
        capture_output=True,
        text=True,
        check=True,
    )
    steps = json.loads(result.stdout)
    return [
        (name, rss, rss - (steps[index - 1][1] if index else 0.0))
        for index, (name, rss) in enumerate(steps)
    ]


def run(window_s: float, console: Console, figures: dict[str, Any]) -> list[tuple[str, str]]:
    """The table's rows; ``figures`` gets the same as numbers (for ``--json``)."""
    rows: list[tuple[str, str]] = []
    with (
        tempfile.TemporaryDirectory(prefix="vigie-footprint-") as scratch,
        fleet_stack(Path(scratch), "footprint", "fleet-footprint") as (broker, influxdb),
        influxdb.client("footprint") as influx,
    ):
        root = Path(scratch)
        proxy = CountingProxy(broker.port or 0)
        quiet = [{**device, "interval_s": 86_400} for device in INSTRUMENTS]

        console.print(f"idle booth, four instruments, health every 60 s: {window_s:.0f} s...")
        config = agent_config(root / "idle", broker, proxy.port, quiet, health_interval_s=60)
        with agent(config, root / "idle" / "agent.log") as process:
            time.sleep(15)  # start, connect, birth
            idle = measure(process, proxy, window_s)
        per_hour = idle.bytes * 3600 / idle.seconds
        figures |= {
            "idle_rss_mib": round(idle.rss_mb, 1),
            "idle_cpu_percent": round(idle.cpu_percent, 2),
            "idle_bytes_per_hour": round(per_hour),
        }
        rows += [
            ("idle: RSS, edge-agent run (max over the window)", f"{idle.rss_mb:.1f} MiB"),
            ("idle: CPU of one core", f"{idle.cpu_percent:.2f} %"),
            ("idle: bytes per hour (health, keep-alives, TLS)", f"{per_hour / 1024:.1f} KiB"),
        ]

        console.print("a cuff reading every 2 s...")
        busy = [{**INSTRUMENTS[0], "interval_s": 2.0}, *quiet[1:]]
        config = agent_config(root / "readings", broker, proxy.port, busy, health_interval_s=60)
        with agent(config, root / "readings" / "agent.log") as process:
            time.sleep(15)
            start_count = stored_readings(influx)
            readings = measure(process, proxy, window_s)
            count = stored_readings(influx) - start_count
        per_reading = (readings.bytes - idle.bytes * readings.seconds / idle.seconds) / max(
            count, 1
        )
        figures |= {
            "readings_rss_mib": round(readings.rss_mb, 1),
            "readings_cpu_percent": round(readings.cpu_percent, 2),
            "live_bytes_per_reading": round(per_reading),
        }
        rows += [
            ("readings: RSS", f"{readings.rss_mb:.1f} MiB"),
            ("readings: CPU of one core", f"{readings.cpu_percent:.2f} %"),
            ("readings: stored in the window", f"{count}"),
            ("readings: bytes per reading, live (idle traffic taken off)", f"{per_reading:.0f} B"),
        ]

        for label, batch in (("batched (100 a message)", 100), ("one message each", 1)):
            console.print(f"backlog of {BACKLOG:,} readings, {label}...")
            folder = root / f"backlog-{batch}"
            fill(folder / "agent", BACKLOG)  # a bus back in coverage (as bench/drain.py)
            config = agent_config(
                folder,
                broker,
                proxy.port,
                quiet,
                agent_id="bus-1",
                kind="bus",
                health_interval_s=3600,
                delivery={"batch_max_messages": batch},
            )
            already = stored_readings(influx)
            bytes_before = proxy.total
            with agent(config, folder / "agent.log"):
                stored = wait_stored(influx, already + BACKLOG, 300) - already
                time.sleep(3)  # the last confirmations
                sent = proxy.total - bytes_before
            figures[f"backlog_bytes_per_reading_batch_{batch}"] = round(sent / max(stored, 1))
            rows.append((f"backlog {label}: bytes per reading", f"{sent / max(stored, 1):.0f} B"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-s", type=float, default=120.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    console = Console()
    figures: dict[str, Any] = {"window_s": args.window_s}
    rows = run(args.window_s, console, figures)
    table = Table(title="bench/footprint.py: edge-agent run, one booth")
    table.add_column("what")
    table.add_column("figure", justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    ladder = import_ladder()
    figures["imports_mib"] = {name: round(added, 1) for name, _, added in ladder}
    imports = Table(title="what edge-agent run imports: peak RSS (VmHWM) after each")
    for column in ("module", "RSS MiB", "added MiB"):
        imports.add_column(column, justify="left" if column == "module" else "right")
    for name, rss, added in ladder:
        imports.add_row(name, f"{rss:.1f}", f"{added:+.1f}")
    console.print(imports)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
