"""Peer MQTT -> InfluxDB bridges, run as child processes for bench/bridges.py.

Two tools people use instead of writing a service, each set up to do the fleet's
job for readings (``vigie/v1/+/reading/#``: measurement = the reading's kind, fields
seq and the values, tags agent_id and device) over the same TLS broker with a
certificate of its own:

- Node-RED 4 with node-red-contrib-influxdb (``NodeRed``): ``mqtt in`` (QoS 1, parsed
  JSON) -> ``function`` (reading -> point) -> ``influxdb out`` (one write per message),
  or, with ``batch=True``, -> ``join`` -> ``influxdb batch`` (one write per group);
- mqtt2influxdb 1.5 from HARDWARIO (``Mqtt2InfluxDB``): its YAML ``points`` with
  JSONPath fields and tags.

``bash bench/setup`` installs both into ``bench/.tools/``. Each bridge writes its
configuration and its log into its own folder; :func:`wait_until_bridging` returns
once a probe reading has gone all the way through it into InfluxDB.

The settings chosen for throughput (and why) are in each class's docstring.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from fleet.devstack.processes import log_tail, terminate
from fleet.devstack.services import free_port
from fleet.errors import DevstackError
from fleet.storage.influx import InfluxClient
from vigie_core.clock import utc_now
from vigie_core.contract.codec import encode
from vigie_core.contract.data import Reading, ReadingKind
from vigie_core.contract.topics import Topics
from vigie_core.tls import BrokerCredentials, client_context

TOOLS = Path(__file__).resolve().parent / ".tools"
NODE_RED = TOOLS / "node" / "node_modules" / "node-red" / "red.js"
M2I_PYTHON = TOOLS / "venv" / "bin" / "python"

#: Every reading of every agent, as the peers subscribe to it (no shared subscription).
READINGS_FILTER = "vigie/v1/+/reading/#"
#: The fields the benchmark's readings carry (blood pressure). mqtt2influxdb names
#: each field in its configuration; Node-RED's function takes whatever ``values`` has.
BLOOD_PRESSURE_FIELDS = ("systolic", "diastolic", "pulse_rate")


def missing_tools() -> list[str]:
    """What ``bash bench/setup`` has not installed yet."""
    return [str(path) for path in (NODE_RED, M2I_PYTHON) if not path.exists()]


@dataclass(frozen=True)
class Target:
    """Where a bridge reads from and writes to."""

    broker_host: str
    broker_port: int
    #: The bridge's own identity at the broker (CA, certificate, key files).
    tls: BrokerCredentials
    influx_host: str
    influx_port: int
    database: str
    username: str
    password: str
    topic: str = READINGS_FILTER


class PeerBridge:
    """A peer bridge: its folder, configuration, process and log."""

    name = "peer"

    def __init__(self, workdir: Path, target: Target) -> None:
        self.workdir = workdir.resolve()
        self.target = target
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def write_config(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> subprocess.Popen[bytes]:
        """Write the configuration and start the bridge (not yet waited for)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, timeout_s=10.0)
            self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- Node-RED ----------------------------------------------------------------------------

#: The function node: a Vigie reading (contract v1, parsed by ``mqtt in``) -> a point
#: for ``influxdb out``: [fields, tags], the time from measured_at (as the fleet does,
#: so that every reading is its own point), measurement = kind.
_FUNCTION_OUT = """\
const r = msg.payload;
const fields = { seq: r.seq };
for (const name in r.values) {
    if (r.values[name] !== null) { fields[name] = r.values[name]; }
}
fields.time = new Date(r.measured_at);
msg.measurement = r.kind;
msg.payload = [fields, { agent_id: r.agent_id, device: r.device }];
return msg;
"""

#: The same for ``influxdb batch``, which takes an array of complete points.
_FUNCTION_BATCH = """\
const r = msg.payload;
const fields = { seq: r.seq };
for (const name in r.values) {
    if (r.values[name] !== null) { fields[name] = r.values[name]; }
}
msg.payload = {
    measurement: r.kind,
    fields: fields,
    tags: { agent_id: r.agent_id, device: r.device },
    timestamp: new Date(r.measured_at),
};
return msg;
"""


class NodeRed(PeerBridge):
    """Node-RED 4 (``bench/.tools/node``), one flow, editor and admin API off.

    Throughput choices: ``batch=False`` is the flow the node's documentation shows
    (one ``influxdb out`` write per message). ``batch=True`` is its documented way to
    write many points at once: a core ``join`` node groups the points into an array
    (``batch_points`` of them, or whatever arrived ``batch_delay_s`` after the group's
    first: the fleet's own defaults, 5,000 points or 0.2 s) for an ``influxdb batch``
    node. Timestamps at millisecond precision (the readings' own measured_at).
    MQTT: QoS 1, clean session, MQTT 3.1.1, the mqtt node's defaults otherwise.
    """

    name = "node-red"

    def __init__(
        self,
        workdir: Path,
        target: Target,
        *,
        batch: bool = False,
        batch_points: int = 5000,
        batch_delay_s: float = 0.2,
    ) -> None:
        super().__init__(workdir, target)
        self.batch = batch
        self.batch_points = batch_points
        self.batch_delay_s = batch_delay_s
        self.ui_port = free_port()

    def flows(self) -> list[dict[str, Any]]:
        target = self.target
        tab = "vigie-tab"
        writer: dict[str, Any]
        # What both InfluxDB nodes are given (the batch one takes its database and
        # measurement from each point, the other from the message).
        common = {
            "id": "vigie-write",
            "z": tab,
            "influxdb": "vigie-influxdb",
            "precision": "ms",
            "retentionPolicy": "",
            "database": "",
            "precisionV18FluxV20": "ms",
            "retentionPolicyV18Flux": "",
            "org": "",
            "bucket": "",
            "x": 700,
            "y": 100,
            "wires": [],
        }
        if self.batch:
            writer = {**common, "type": "influxdb batch", "name": "points -> InfluxDB"}
        else:
            # msg.measurement (empty here): the reading's kind.
            writer = {
                **common,
                "type": "influxdb out",
                "name": "point -> InfluxDB",
                "measurement": "",
            }
        after_function = "vigie-join" if self.batch else "vigie-write"
        nodes: list[dict[str, Any]] = [
            {"id": tab, "type": "tab", "label": "Vigie readings", "disabled": False, "info": ""},
            {
                "id": "vigie-tls",
                "type": "tls-config",
                "name": "vigie broker identity",
                "cert": str(target.tls.cert_file),
                "key": str(target.tls.key_file),
                "ca": str(target.tls.ca_file),
                "certname": "",
                "keyname": "",
                "caname": "",
                "servername": "",
                "verifyservercert": True,
                "alpnprotocol": "",
            },
            {
                "id": "vigie-broker",
                "type": "mqtt-broker",
                "name": "vigie broker",
                "broker": target.broker_host,
                "port": str(target.broker_port),
                "tls": "vigie-tls",
                "clientid": "",  # the broker names the client after its certificate
                "autoConnect": True,
                "usetls": True,
                "protocolVersion": "4",
                "keepalive": "60",
                "cleansession": True,
                "autoUnsubscribe": True,
                "birthTopic": "",
                "closeTopic": "",
                "willTopic": "",
            },
            {
                "id": "vigie-influxdb",
                "type": "influxdb",
                "hostname": target.influx_host,
                "port": str(target.influx_port),
                "protocol": "http",
                "database": target.database,
                "name": "vigie influxdb",
                "usetls": False,
                "tls": "",
                "influxdbVersion": "1.x",
                "url": "",
                "timeout": "10",
                "rejectUnauthorized": True,
            },
            {
                "id": "vigie-in",
                "type": "mqtt in",
                "z": tab,
                "name": "readings",
                "topic": target.topic,
                "qos": "1",
                "datatype": "json",
                "broker": "vigie-broker",
                "nl": False,
                "rap": True,
                "rh": 0,
                "inputs": 0,
                "x": 100,
                "y": 100,
                "wires": [["vigie-function"]],
            },
            {
                "id": "vigie-function",
                "type": "function",
                "z": tab,
                "name": "reading -> point",
                "func": _FUNCTION_BATCH if self.batch else _FUNCTION_OUT,
                "outputs": 1,
                "timeout": 0,
                "noerr": 0,
                "initialize": "",
                "finalize": "",
                "libs": [],
                "x": 300,
                "y": 100,
                "wires": [[after_function]],
            },
            writer,
        ]
        if self.batch:
            nodes.append(
                {
                    "id": "vigie-join",
                    "type": "join",
                    "z": tab,
                    "name": "group points",
                    "mode": "custom",
                    "build": "array",
                    "property": "payload",
                    "propertyType": "msg",
                    "key": "topic",
                    "joiner": "\\n",
                    "joinerType": "str",
                    "useparts": False,
                    "accumulate": False,
                    "timeout": str(self.batch_delay_s),
                    "count": str(self.batch_points),
                    "reduceRight": False,
                    "reduceExp": "",
                    "reduceInit": "",
                    "reduceInitType": "",
                    "reduceFixup": "",
                    "x": 500,
                    "y": 100,
                    "wires": [["vigie-write"]],
                }
            )
        return nodes

    def write_config(self) -> None:
        user_dir = self.workdir
        (user_dir / "flows.json").write_text(json.dumps(self.flows(), indent=1))
        # credentialSecret false: Node-RED reads its credentials file as plain JSON.
        credentials = {
            "vigie-influxdb": {"username": self.target.username, "password": self.target.password}
        }
        (user_dir / "flows_cred.json").write_text(json.dumps(credentials))
        (user_dir / "flows_cred.json").chmod(0o600)
        settings = {
            "uiHost": "127.0.0.1",
            "uiPort": self.ui_port,
            "flowFile": "flows.json",
            "credentialSecret": False,
            "disableEditor": True,
            "httpAdminRoot": False,
            "httpNodeRoot": False,
            "editorTheme": {"projects": {"enabled": False}},
            "logging": {"console": {"level": "info", "metrics": False, "audit": False}},
        }
        (user_dir / "settings.js").write_text(
            f"module.exports = {json.dumps(settings, indent=1)};\n"
        )

    def command(self) -> list[str]:
        return [
            "node",
            str(NODE_RED),
            "--userDir",
            str(self.workdir),
            "--settings",
            str(self.workdir / "settings.js"),
        ]


# --- mqtt2influxdb -----------------------------------------------------------------------


class Mqtt2InfluxDB(PeerBridge):
    """mqtt2influxdb 1.5 (``bench/.tools/venv``; 2.x writes to InfluxDB 3 only).

    It has no setting for throughput: one ``write_points`` HTTP request per message,
    from its MQTT callback. It subscribes at QoS 0 (its code passes no QoS: the broker
    delivers our QoS 1 messages at 0 to it) and it times every point with the write's
    wall clock to the second (no configuration takes the time from the payload), so
    readings of one device within one second land on the same point and overwrite
    each other. ``seq_tag=True`` adds a tag per reading (``seq_tag``) so that each
    reading is a point of its own: the measure of what it processes, not what a plain
    configuration keeps. It creates its database at start, which takes an InfluxDB
    admin: give it one. Its MQTT keep-alive is fixed at 10 s in its code, with a clean
    session: when the broker's queue for it holds more than ~10 s of its work, the
    PINGRESP waits behind it, paho gives up on the connection (rc 16) and the broker
    drops what was queued. No setting changes any of this.
    """

    name = "mqtt2influxdb"

    def __init__(self, workdir: Path, target: Target, *, seq_tag: bool = False) -> None:
        super().__init__(workdir, target)
        self.seq_tag = seq_tag

    @property
    def config_path(self) -> Path:
        return self.workdir / "mqtt2influxdb.yaml"

    def config(self) -> dict[str, Any]:
        target = self.target
        fields = {"seq": "$.payload.seq"}
        fields |= {name: f"$.payload.values.{name}" for name in BLOOD_PRESSURE_FIELDS}
        tags = {"agent_id": "$.payload.agent_id", "device": "$.payload.device"}
        if self.seq_tag:
            tags["seq_tag"] = "$.payload.seq"
        return {
            "mqtt": {
                "host": target.broker_host,
                "port": target.broker_port,
                "cafile": str(target.tls.ca_file),
                "certfile": str(target.tls.cert_file),
                "keyfile": str(target.tls.key_file),
            },
            "influxdb": {
                "host": target.influx_host,
                "port": target.influx_port,
                "username": target.username,
                "password": target.password,
                "database": target.database,
            },
            "points": [
                {
                    "measurement": "$.payload.kind",
                    "topic": target.topic,
                    "fields": fields,
                    "tags": tags,
                }
            ],
        }

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self.config_path.chmod(0o600)

    def command(self) -> list[str]:
        return [str(M2I_PYTHON), "-m", "mqtt2influxdb.cli", "--config", str(self.config_path)]


# --- waiting until a bridge works --------------------------------------------------------


class Probe:
    """Publishes readings of its own agent (QoS 1) and looks for them in InfluxDB:
    a bridge that stored one is subscribed and writing."""

    def __init__(
        self,
        host: str,
        port: int,
        credentials: BrokerCredentials,
        agent_id: str,
        influx: InfluxClient,
        topics: Topics | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.influx = influx
        self.topics = topics or Topics()
        self.seq = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=agent_id, protocol=mqtt.MQTTv311
        )
        self.client.tls_set_context(client_context(credentials))
        self.host, self.port = host, port

    def __enter__(self) -> Self:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self) -> None:
        self.seq += 1
        reading = Reading(
            agent_id=self.agent_id,
            seq=self.seq,
            measured_at=utc_now() - timedelta(seconds=1),
            kind=ReadingKind.BLOOD_PRESSURE,
            device="probe",
            values={"systolic": 120.0, "diastolic": 80.0, "pulse_rate": 70.0},
        )
        self.client.publish(self.topics.topic_for(reading), encode(reading), qos=1)

    def stored(self) -> int:
        series = self.influx.query(
            f"SELECT COUNT(seq) FROM {ReadingKind.BLOOD_PRESSURE.value} "
            f"WHERE agent_id = '{self.agent_id}'"
        )
        return sum(int(row["count"]) for item in series for row in item.rows())


def wait_until_bridging(
    process: subprocess.Popen[bytes], log: Path, probe: Probe, timeout_s: float = 60.0
) -> float:
    """Return (the seconds it took) once a probe reading is stored through the bridge.

    Raises:
        DevstackError: the bridge exited, or stored nothing within ``timeout_s``.
    """
    started = time.monotonic()
    while probe.stored() == 0:
        if process.poll() is not None:
            raise DevstackError(
                f"{process.args!r} exited with status {process.returncode}:\n{log_tail(log)}"
            )
        if time.monotonic() - started > timeout_s:
            raise DevstackError(
                f"nothing went through {log.parent.name} within {timeout_s:.0f} s:\n{log_tail(log)}"
            )
        probe.publish()
        time.sleep(0.5)
    return time.monotonic() - started


if __name__ == "__main__":
    print("\n".join(missing_tools()) or "bench/.tools has both peers", file=sys.stderr)
