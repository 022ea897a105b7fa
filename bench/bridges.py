"""The fleet service against peer MQTT -> InfluxDB bridges, under the same load.

Each row gets a FRESH Mosquitto (TLS only, a certificate per client, the generated
ACLs, as deployed) and InfluxDB 1.x, then its bridge, then the same load:
``--agents`` agents spread over ``--processes`` publisher processes, each agent with
its own TLS connection and certificate, publishing ``--readings`` QoS 1 blood-pressure
readings (seq 1..N, measured_at unique per seq, payloads made with the contract and
encoded before the clock starts) as fast as paho sends them, until every PUBACK.

Rows: ``fleet serve`` with 1, 2 and 4 instances (one share group, an identity each),
the same with readings in batches (``--batch-size`` a message, historical), and the
peers of ``bench/peers.py`` (single-reading messages only): Node-RED with
node-red-contrib-influxdb, one write per message and joined into batches, and
mqtt2influxdb, as configured plainly and with a tag per reading (see peers.py for
why). ``bash bench/setup`` installs the peers first.

The figure that matters: readings stored per CPU-second of the bridge's own
processes (psutil user+system, children included, from the first publish to the last
reading stored). Stored, lost and duplicated are counted per agent by sequence
number in InfluxDB once the count stops growing (``--settle-s``), reaches the total,
or ``--timeout-s`` runs out.

    bash bench/setup
    .venv/bin/python bench/bridges.py
    .venv/bin/python bench/bridges.py --agents 4 --readings 200 --rows fleet-1,node-red

Not a test: it never fails on a figure, it prints them (``--json PATH`` too).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from peers import (
    Mqtt2InfluxDB,
    NodeRed,
    PeerBridge,
    Probe,
    Target,
    missing_tools,
    wait_until_bridging,
)
from rich.console import Console
from rich.table import Table
from scale import children_named  # bench/ is on the path when a script of it runs

from fleet.devstack.influxdb import InfluxDB, fleet_settings
from fleet.devstack.processes import start_fleet_service, terminate
from fleet.devstack.services import Mosquitto
from fleet.security.pki import Role
from fleet.storage.influx import InfluxClient
from vigie_core.contract.codec import encode
from vigie_core.contract.data import Batch, Reading, ReadingKind
from vigie_core.contract.topics import Topics
from vigie_core.tls import BrokerCredentials, client_context, read_secret

#: Wide enough for the table when the output goes to a file.
console = Console(width=max(Console().width, 190))
DATABASE = "bench"
MEASUREMENT = ReadingKind.BLOOD_PRESSURE.value
PROBE_ID = "probe-000"
#: The peers' identity at the broker: a technician's grants read every agent's
#: branch (and publish no data, no acknowledgement), what a bridge needs.
PEER_IDENTITY = "peer-bridge"


@dataclass(frozen=True)
class Row:
    name: str
    bridge: str  # fleet, node-red, mqtt2influxdb
    instances: int = 1
    batched: bool = False  # the publishers send Batch messages
    option: bool = False  # node-red: join + batch node; mqtt2influxdb: a tag per reading
    #: The bridge is stopped (SIGSTOP) while the load is published, then let go: the
    #: broker holds everything for it, so the figures are its own drain, not the
    #: publishers' pace (what shows whether more instances take more).
    preloaded: bool = False


ROWS = [
    Row("fleet-1", "fleet", 1),
    Row("fleet-2", "fleet", 2),
    Row("fleet-4", "fleet", 4),
    Row("fleet-1-batch", "fleet", 1, batched=True),
    Row("fleet-2-batch", "fleet", 2, batched=True),
    Row("fleet-4-batch", "fleet", 4, batched=True),
    Row("fleet-1-preloaded", "fleet", 1, preloaded=True),
    Row("fleet-2-preloaded", "fleet", 2, preloaded=True),
    Row("fleet-4-preloaded", "fleet", 4, preloaded=True),
    Row("fleet-1-batch-preloaded", "fleet", 1, batched=True, preloaded=True),
    Row("fleet-2-batch-preloaded", "fleet", 2, batched=True, preloaded=True),
    Row("fleet-4-batch-preloaded", "fleet", 4, batched=True, preloaded=True),
    Row("paho-floor", "paho-floor"),
    Row("paho-floor-preloaded", "paho-floor", preloaded=True),
    Row("node-red", "node-red"),
    Row("node-red-batch", "node-red", option=True),
    Row("mqtt2influxdb", "mqtt2influxdb"),
    Row("mqtt2influxdb-seq-tag", "mqtt2influxdb", option=True),
]
DESCRIPTIONS = {
    "fleet-1": "fleet serve x1",
    "fleet-2": "fleet serve x2 (one share group)",
    "fleet-4": "fleet serve x4 (one share group)",
    "fleet-1-batch": "fleet serve x1, batches",
    "fleet-2-batch": "fleet serve x2, batches",
    "fleet-4-batch": "fleet serve x4, batches",
    "fleet-1-preloaded": "fleet serve x1, preloaded",
    "fleet-2-preloaded": "fleet serve x2, preloaded",
    "fleet-4-preloaded": "fleet serve x4, preloaded",
    "fleet-1-batch-preloaded": "fleet serve x1, batches, preloaded",
    "fleet-2-batch-preloaded": "fleet serve x2, batches, preloaded",
    "fleet-4-batch-preloaded": "fleet serve x4, batches, preloaded",
    "paho-floor": "paho alone: receive + PUBACK, no storage",
    "paho-floor-preloaded": "paho alone, preloaded",
    "node-red": "Node-RED: influxdb out",
    "node-red-batch": "Node-RED: join + influxdb batch",
    "mqtt2influxdb": "mqtt2influxdb",
    "mqtt2influxdb-seq-tag": "mqtt2influxdb + seq tag",
}


# --- the load: publisher processes ------------------------------------------------------


def payloads(agent_id: str, readings: int, batch_size: int, base: datetime) -> list[bytes]:
    """The agent's messages, encoded: one reading each, or batches of ``batch_size``."""
    encoded = [
        Reading(
            agent_id=agent_id,
            seq=seq,
            measured_at=base + timedelta(milliseconds=seq),
            kind=ReadingKind.BLOOD_PRESSURE,
            device="bp",
            values={"systolic": 120.0 + seq % 40, "diastolic": 80.0, "pulse_rate": 70.0},
            units={"systolic": "mm[Hg]", "diastolic": "mm[Hg]", "pulse_rate": "/min"},
        )
        for seq in range(1, readings + 1)
    ]
    if batch_size <= 0:
        return [encode(reading) for reading in encoded]
    return [
        encode(Batch(agent_id=agent_id, historical=True, messages=encoded[i : i + batch_size]))
        for i in range(0, len(encoded), batch_size)
    ]


class Publisher:
    """One agent: its own paho client, TLS connection and certificate."""

    def __init__(self, agent_id: str, credentials: BrokerCredentials, max_inflight: int) -> None:
        self.agent_id = agent_id
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=agent_id, protocol=mqtt.MQTTv311
        )
        self.client.tls_set_context(client_context(credentials))
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)  # no limit: everything is queued at once
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.connected = threading.Event()
        self.done = threading.Event()
        self.expected = 0
        self.acked = 0
        self.last_ack = 0.0
        self._lock = threading.Lock()

    def _on_connect(self, *_args: object) -> None:
        self.connected.set()

    def _on_publish(self, *_args: object) -> None:
        with self._lock:
            self.acked += 1
            self.last_ack = time.time()
            if self.acked >= self.expected:
                self.done.set()


def publish_worker(pipe: Connection, spec: dict[str, Any]) -> None:
    """A publisher process: encode, connect, say ready, publish on "go", report."""
    topics = Topics()
    base = datetime.fromisoformat(spec["base"])
    agents: list[tuple[Publisher, str, list[bytes]]] = []
    for agent_id, files in spec["agents"]:
        credentials = BrokerCredentials.model_validate(files)
        messages = payloads(agent_id, spec["readings"], spec["batch_size"], base)
        topic = (
            topics.batch(agent_id)
            if spec["batch_size"] > 0
            else topics.reading(agent_id, ReadingKind.BLOOD_PRESSURE)
        )
        publisher = Publisher(agent_id, credentials, spec["max_inflight"])
        publisher.expected = len(messages)
        agents.append((publisher, topic, messages))
    for publisher, _, _ in agents:
        publisher.client.connect(spec["host"], spec["port"], keepalive=60)
        publisher.client.loop_start()
    for publisher, _, _ in agents:
        if not publisher.connected.wait(30):
            pipe.send(("failed", f"{publisher.agent_id} did not connect"))
            return
    pipe.send(("ready", sum(len(messages) for _, _, messages in agents)))
    if pipe.recv() != "go":
        return
    first = time.time()
    # Interleaved: every agent publishes at once, as a fleet of booths would.
    longest = max(len(messages) for _, _, messages in agents)
    for index in range(longest):
        for publisher, topic, messages in agents:
            if index < len(messages):
                publisher.client.publish(topic, messages[index], qos=1)
    published = time.time()
    deadline = time.monotonic() + spec["timeout_s"]
    for publisher, _, _ in agents:
        publisher.done.wait(max(0.0, deadline - time.monotonic()))
    pipe.send(
        (
            "done",
            {
                "first_publish": first,
                "published": published,
                "last_ack": max(p.last_ack for p, _, _ in agents),
                "acked": sum(p.acked for p, _, _ in agents),
                "sent": sum(len(messages) for _, _, messages in agents),
            },
        )
    )
    for publisher, _, _ in agents:
        publisher.client.disconnect()
        publisher.client.loop_stop()


class Load:
    """The publisher processes of one row, each its share of the agents."""

    def __init__(
        self,
        identities: dict[str, BrokerCredentials],
        broker: Mosquitto,
        args: argparse.Namespace,
        batch_size: int,
        timeout_s: float,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        ids = sorted(identities)
        # Whole milliseconds: every peer keeps the time exactly (Node-RED: ms).
        base = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
        self.pipes: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self.results: list[dict[str, Any]] = []
        self._reported: set[int] = set()
        for number in range(min(args.processes, len(ids))):
            ours, theirs = context.Pipe()
            spec = {
                "agents": [
                    (agent_id, identities[agent_id].as_config())
                    for agent_id in ids[number :: args.processes]
                ],
                "host": broker.host,
                "port": broker.port,
                "readings": args.readings,
                "batch_size": batch_size,
                "base": base.isoformat(),
                "max_inflight": args.max_inflight,
                "timeout_s": timeout_s,
            }
            process = context.Process(target=publish_worker, args=(theirs, spec), daemon=True)
            process.start()
            self.pipes.append(ours)
            self.processes.append(process)
        self.messages = 0
        for pipe in self.pipes:
            if not pipe.poll(120):
                raise RuntimeError("a publisher process did not get ready")
            status, detail = pipe.recv()
            if status != "ready":
                raise RuntimeError(f"a publisher process failed: {detail}")
            self.messages += detail

    def go(self) -> None:
        for pipe in self.pipes:
            pipe.send("go")

    def finished(self) -> bool:
        """Whether every process has reported (every PUBACK, or its timeout)."""
        for number, pipe in enumerate(self.pipes):
            if number in self._reported or not pipe.poll():
                continue
            self._reported.add(number)
            with contextlib.suppress(EOFError):  # the process died: it reports nothing
                status, result = pipe.recv()
                if status == "done":
                    self.results.append(result)
        return len(self._reported) == len(self.pipes)

    def stop(self) -> None:
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()


# --- measuring ----------------------------------------------------------------------------


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """user + system of these processes and every descendant (live ones, and those
    reaped, through their parent's children_* times)."""
    total = 0.0
    seen: set[int] = set()
    for top in processes:
        with contextlib.suppress(psutil.Error):
            for process in [top, *top.children(recursive=True)]:
                if process.pid in seen:
                    continue
                seen.add(process.pid)
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system + times.children_user
                    total += times.children_system
    return total


def stored_points(influx: InfluxClient, agent_ids: set[str]) -> int:
    """Points of the benchmark's agents in InfluxDB now (one query)."""
    series = influx.query(f'SELECT COUNT("seq") FROM "{MEASUREMENT}" GROUP BY "agent_id"')
    return sum(
        int(row["count"])
        for item in series
        if item.tags.get("agent_id") in agent_ids
        for row in item.rows()
    )


def stored_seqs(influx: InfluxClient, agent_id: str) -> Counter[int]:
    """How many points hold each sequence number of this agent."""
    series = influx.query(f'SELECT "seq" FROM "{MEASUREMENT}" WHERE agent_id = \'{agent_id}\'')
    return Counter(int(row["seq"]) for item in series for row in item.rows())


@dataclass
class Outcome:
    row: Row
    messages: int = 0
    readings: int = 0
    acked_messages: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    cpu_s: float = 0.0
    broker_cpu_s: float = 0.0
    influxd_cpu_s: float = 0.0
    publish_s: float = 0.0
    stored_s: float = 0.0
    timed_out: bool = False
    bridge_exited: list[int] = field(default_factory=list)
    ready_s: float = 0.0
    log_lines: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def per_cpu_s(self) -> float:
        return self.stored / self.cpu_s if self.cpu_s > 0 else 0.0

    @property
    def per_s(self) -> float:
        return self.stored / self.stored_s if self.stored_s > 0 else 0.0

    def figures(self, reference: float | None) -> dict[str, Any]:
        return {
            "row": self.row.name,
            "description": DESCRIPTIONS[self.row.name],
            "instances": self.row.instances,
            "messages": self.messages,
            "acked_messages": self.acked_messages,
            "readings_sent": self.readings,
            "readings_stored": self.stored,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "bridge_cpu_s": round(self.cpu_s, 3),
            "readings_per_cpu_s": round(self.per_cpu_s, 1),
            "ratio_to_fleet_1": round(self.per_cpu_s / reference, 3) if reference else None,
            "wall_readings_per_s": round(self.per_s, 1),
            "publish_s": round(self.publish_s, 3),
            "first_publish_to_last_stored_s": round(self.stored_s, 3),
            "broker_cpu_s": round(self.broker_cpu_s, 3),
            "influxd_cpu_s": round(self.influxd_cpu_s, 3),
            "bridge_ready_s": round(self.ready_s, 2),
            "timed_out": self.timed_out,
            "bridge_exited": self.bridge_exited,
            "log_warnings": self.log_lines,
            "error": self.error,
        }


# --- one row ------------------------------------------------------------------------------


def start_bridge(
    row: Row,
    root: Path,
    broker: Mosquitto,
    influxdb: InfluxDB,
    influx: InfluxClient,
    stop: contextlib.ExitStack,
) -> tuple[list[Any], list[Path], float]:
    """The row's bridge processes, subscribed; their logs; seconds until ready."""
    started = time.monotonic()
    if row.bridge == "fleet":
        processes, logs = [], []
        for number in range(row.instances):
            name = f"fleet-bench-{number}"
            config = root / f"{name}.yaml"
            config.write_text(yaml.safe_dump(fleet_settings(broker, influxdb, DATABASE, name)))
            log = root / f"{name}.log"
            process = start_fleet_service(config, root / f"{name}.ready", log)
            stop.callback(terminate, process)
            processes.append(process)
            logs.append(log)
        return processes, logs, time.monotonic() - started

    if row.bridge == "paho-floor":
        return start_floor(root, broker, stop, started)

    credentials = broker.credentials(PEER_IDENTITY, Role.TECHNICIAN)
    if row.bridge == "mqtt2influxdb":
        # It runs CREATE DATABASE at start: an admin's statement in InfluxDB 1.x.
        user = InfluxDB.ADMIN
        password = read_secret(influxdb.admin_password_file).get_secret_value()
    else:
        user = "nodered"
        password = read_secret(influxdb.grant(DATABASE, user=user)).get_secret_value()
    target = Target(
        broker.host,
        broker.port or 0,
        credentials,
        influxdb.host,
        influxdb.port or 0,
        DATABASE,
        user,
        password,
    )
    bridge: PeerBridge = (
        NodeRed(root / "node-red", target, batch=row.option)
        if row.bridge == "node-red"
        else Mqtt2InfluxDB(root / "mqtt2influxdb", target, seq_tag=row.option)
    )
    process = bridge.start()
    stop.callback(bridge.stop)
    probe_credentials = broker.enroll(PROBE_ID)[PROBE_ID]
    with Probe(broker.host, broker.port or 0, probe_credentials, PROBE_ID, influx) as probe:
        wait_until_bridging(process, bridge.log_path, probe, timeout_s=90)
    return [process], [bridge.log_path], time.monotonic() - started


def start_floor(
    root: Path, broker: Mosquitto, stop: contextlib.ExitStack, started: float
) -> tuple[list[Any], list[Path], float]:
    """bench/paho_floor.py as the fleet connects (service identity, shared subscription)."""
    root.mkdir(parents=True, exist_ok=True)
    credentials = broker.credentials("fleet-floor", Role.SERVICE)
    settings = root / "floor.json"
    settings.write_text(
        json.dumps(
            {
                "client_id": "fleet-floor",
                "host": broker.host,
                "port": broker.port,
                "ca_file": str(credentials.ca_file),
                "cert_file": str(credentials.cert_file),
                "key_file": str(credentials.key_file),
                "topic": "$share/floor/vigie/v1/+/reading/#",
            }
        )
    )
    count_file, log = root / "floor.count", root / "floor.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("paho_floor.py")),
             "--config", str(settings), "--count-file", str(count_file)],
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    stop.callback(terminate, process)
    deadline = time.monotonic() + 30
    while not count_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"paho_floor.py did not subscribe (see {log})")
        time.sleep(0.1)
    return [process], [log], time.monotonic() - started


def floor_count(root: Path) -> int:
    """Messages the paho floor received so far (it stores nothing)."""
    with contextlib.suppress(OSError, ValueError):
        return int((root / "floor.count").read_text() or 0)
    return 0


#: Log lines worth a note: a bridge's errors, warnings and disconnections.
NOTEWORTHY = ("warn", "error", "exception", "traceback", "disconnect")
#: Node-RED's start-up notes about our own settings (headless, plain credentials file).
EXPECTED = ("unencrypted credentials", "projects disabled")


def warnings_in(logs: list[Path]) -> list[str]:
    """The bridges' noteworthy log lines, alike ones counted once (digits aside)."""
    seen: Counter[str] = Counter()
    first: dict[str, str] = {}
    for log in logs:
        with contextlib.suppress(OSError):
            for line in log.read_text(errors="replace").splitlines():
                lowered = line.lower()
                if not any(word in lowered for word in NOTEWORTHY):
                    continue
                if any(word in lowered for word in EXPECTED):
                    continue
                key = re.sub(r"\d+", "#", line.strip())
                seen[key] += 1
                first.setdefault(key, f"{log.name}: {line.strip()}")
    return [f"{count} x {first[key]}" for key, count in seen.most_common(10)]


@dataclass
class Meters:
    """CPU-seconds so far of the bridge, the broker and InfluxDB."""

    bridge: list[psutil.Process]
    broker: list[psutil.Process]
    influxd: list[psutil.Process]

    def sample(self) -> tuple[float, float, float]:
        return cpu_seconds(self.bridge), cpu_seconds(self.broker), cpu_seconds(self.influxd)


def wait_stored(
    outcome: Outcome,
    load: Load,
    count: Callable[[], int],
    meters: Meters,
    args: argparse.Namespace,
) -> None:
    """Start the load; return once every reading is stored, the count has stopped
    growing for ``settle_s`` after the last PUBACK, or ``timeout_s`` ran out. CPU and
    time are taken at the last poll that saw the count grow."""
    deadline = time.monotonic() + args.timeout_s
    if outcome.row.preloaded:
        for process in meters.bridge:
            process.suspend()
        load.go()
        while not load.finished() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the broker's last deliveries into the stopped bridges' sockets
        before, started = meters.sample(), time.time()
        for process in meters.bridge:
            process.resume()
    else:
        before, started = meters.sample(), time.time()
        load.go()
    points, last_change, at_change, stored_at = 0, time.monotonic(), before, started
    while True:
        time.sleep(args.poll_s)
        now_points = count()
        if now_points != points:
            points, last_change = now_points, time.monotonic()
            at_change, stored_at = meters.sample(), time.time()
        published = load.finished()
        if points >= outcome.readings:
            break
        if published and time.monotonic() - last_change > args.settle_s:
            break
        if time.monotonic() > deadline:
            outcome.timed_out = True
            break
    outcome.cpu_s = at_change[0] - before[0]
    outcome.broker_cpu_s = at_change[1] - before[1]
    outcome.influxd_cpu_s = at_change[2] - before[2]
    # The publishers' reports (every PUBACK) may still be on their way.
    report_deadline = time.monotonic() + 10
    while not load.finished() and time.monotonic() < report_deadline:
        time.sleep(0.1)
    first = min((result["first_publish"] for result in load.results), default=started)
    if load.results:
        outcome.acked_messages = sum(result["acked"] for result in load.results)
        outcome.publish_s = max(result["last_ack"] for result in load.results) - first
    # Preloaded: the bridges' own drain, from the moment they were let go.
    outcome.stored_s = stored_at - (started if outcome.row.preloaded else first)


def count_stored(
    outcome: Outcome, influx: InfluxClient, agent_ids: list[str], readings: int
) -> None:
    """Stored, lost and duplicated, by sequence number per agent."""
    counts = {agent_id: stored_seqs(influx, agent_id) for agent_id in agent_ids}
    outcome.stored = sum(len(counter) for counter in counts.values())
    expected = set(range(1, readings + 1))
    outcome.lost = sum(len(expected - counter.keys()) for counter in counts.values())
    outcome.duplicated = sum(
        n - 1 for counter in counts.values() for n in counter.values() if n > 1
    )


def run_row(row: Row, root: Path, args: argparse.Namespace) -> Outcome:
    outcome = Outcome(row, readings=args.agents * args.readings)
    agent_ids = [f"bench-{index:03d}" for index in range(args.agents)]
    shutil.rmtree(root, ignore_errors=True)  # a fresh broker store and database every time
    with contextlib.ExitStack() as stop:
        broker = stop.enter_context(Mosquitto(workdir=root / "mosquitto"))
        influxdb = stop.enter_context(InfluxDB(workdir=root / "influxdb"))
        influxdb.grant(DATABASE)
        influx = stop.enter_context(influxdb.client(DATABASE, timeout_s=120))
        identities = broker.enroll(*agent_ids)
        processes, logs, outcome.ready_s = start_bridge(row, root, broker, influxdb, influx, stop)
        meters = Meters(
            [psutil.Process(process.pid) for process in processes],
            children_named("mosquitto")(),
            children_named("influxd")(),
        )
        load = Load(identities, broker, args, args.batch_size if row.batched else 0, args.timeout_s)
        stop.callback(load.stop)
        outcome.messages = load.messages
        if row.bridge == "paho-floor":
            counter: Callable[[], int] = lambda: floor_count(root)  # noqa: E731
        else:
            counter = lambda: stored_points(influx, set(agent_ids))  # noqa: E731
        wait_stored(outcome, load, counter, meters, args)
        outcome.bridge_exited = [p.returncode for p in processes if p.poll() is not None]
        if row.bridge == "paho-floor":  # nothing stored: what it received is the count
            outcome.stored = floor_count(root)
            outcome.lost = max(0, outcome.readings - outcome.stored)
        else:
            count_stored(outcome, influx, agent_ids, args.readings)
        outcome.log_lines = warnings_in(logs)
    return outcome


# --- the report ---------------------------------------------------------------------------


def table(outcomes: list[Outcome], args: argparse.Namespace) -> Table:
    result = Table(
        title=(
            f"bench/bridges.py: {args.agents} agents x {args.readings:,} readings, QoS 1, "
            f"{args.processes} publisher processes; a fresh broker and InfluxDB per row"
        )
    )
    for column in (
        "bridge",
        "messages",
        "readings sent",
        "stored",
        "lost",
        "dup.",
        "bridge CPU-s",
        "readings / CPU-s",
        "vs fleet x1",
        "readings/s wall",
        "publish s",
        "broker CPU-s",
        "influxd CPU-s",
    ):
        if column == "bridge":
            result.add_column(column, no_wrap=True)
        else:
            result.add_column(column, justify="right")
    reference = reference_rate(outcomes)
    for outcome in outcomes:
        if outcome.error is not None:
            result.add_row(DESCRIPTIONS[outcome.row.name], *["-"] * 12)
            continue
        ratio = f"{outcome.per_cpu_s / reference:.2f}" if reference else "-"
        result.add_row(
            DESCRIPTIONS[outcome.row.name] + (" (timed out)" if outcome.timed_out else ""),
            f"{outcome.messages:,}",
            f"{outcome.readings:,}",
            f"{outcome.stored:,}",
            f"{outcome.lost:,}",
            f"{outcome.duplicated:,}",
            f"{outcome.cpu_s:.2f}",
            f"{outcome.per_cpu_s:,.0f}",
            ratio,
            f"{outcome.per_s:,.0f}",
            f"{outcome.publish_s:.1f}",
            f"{outcome.broker_cpu_s:.2f}",
            f"{outcome.influxd_cpu_s:.2f}",
        )
    return result


def progress(outcome: Outcome) -> str:
    if outcome.error is not None:
        return outcome.error
    return (
        f"{outcome.stored:,}/{outcome.readings:,} stored in {outcome.stored_s:.1f} s, "
        f"bridge {outcome.cpu_s:.1f} CPU-s"
    )


def reference_rate(outcomes: list[Outcome]) -> float | None:
    for outcome in outcomes:
        if outcome.row.name == "fleet-1" and outcome.error is None and outcome.cpu_s > 0:
            return outcome.per_cpu_s
    return None


@contextlib.contextmanager
def workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="vigie-bridges-") as scratch:
        yield Path(scratch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2, help="publisher processes")
    parser.add_argument("--readings", type=int, default=2000, help="per agent")
    parser.add_argument("--batch-size", type=int, default=100, help="readings a batch message")
    parser.add_argument("--max-inflight", type=int, default=1000, help="paho, per agent")
    parser.add_argument("--rows", default=",".join(row.name for row in ROWS))
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per row")
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--poll-s", type=float, default=0.25)
    parser.add_argument("--workdir", type=Path, help="keep every row's files here")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    # SIGTERM stops the run as Ctrl-C does: every child is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    by_name = {row.name: row for row in ROWS}
    unknown = [name for name in args.rows.split(",") if name not in by_name]
    if unknown:
        parser.error(f"unknown rows {unknown}: choose from {', '.join(by_name)}")
    rows = [by_name[name] for name in args.rows.split(",")]
    if any(row.bridge in ("node-red", "mqtt2influxdb") for row in rows) and missing_tools():
        parser.error(f"run 'bash bench/setup' first (missing: {', '.join(missing_tools())})")

    outcomes: list[Outcome] = []
    with workdir(args.workdir) as root:
        for row in rows:
            console.print(f"[bold]{DESCRIPTIONS[row.name]}[/]: ...")
            try:
                outcome = run_row(row, root / row.name, args)
            except Exception as exc:  # one row's failure is reported, not fatal
                outcome = Outcome(row, error=f"{type(exc).__name__}: {exc}")
            outcomes.append(outcome)
            console.print(f"  {progress(outcome)}", markup=False)
    reference = reference_rate(outcomes)
    figures = {
        "agents": args.agents,
        "readings_per_agent": args.readings,
        "publisher_processes": args.processes,
        "batch_size": args.batch_size,
        "max_inflight": args.max_inflight,
        "timeout_s": args.timeout_s,
        "settle_s": args.settle_s,
        "cpus": psutil.cpu_count(),
        "rows": [outcome.figures(reference) for outcome in outcomes],
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    console.print(table(outcomes, args))
    for outcome in outcomes:
        for line in outcome.log_lines:
            console.print(f"{outcome.row.name}: {line}", markup=False)
        if outcome.acked_messages and outcome.acked_messages < outcome.messages:
            console.print(
                f"{outcome.row.name}: {outcome.acked_messages}/{outcome.messages} PUBACKs",
                markup=False,
            )
        if outcome.bridge_exited:
            console.print(f"{outcome.row.name}: bridge exited {outcome.bridge_exited}")


if __name__ == "__main__":
    main()
