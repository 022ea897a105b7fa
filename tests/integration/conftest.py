"""Fixtures that run the real programs (agents, fleet service) against the real services."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from fleet.config import FleetConfig
from fleet.devstack.influxdb import InfluxDB
from fleet.devstack.processes import fleet_serve_args, wait_until_subscribed
from fleet.devstack.services import Mosquitto
from fleet.ingest.service import IngestService
from fleet.releases.artifacts import ArtifactServer
from fleet.security.pki import Role
from fleet.storage.influx import InfluxClient
from tests.conftest import PLAYS_ANY_AGENT
from vigie_core.tls import BrokerCredentials, client_context

REPO = Path(__file__).resolve().parents[2]


def mqtt_client(
    mosquitto: Mosquitto,
    client_id: str,
    credentials: BrokerCredentials | None = None,
    protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311,
) -> mqtt.Client:
    """A paho client over TLS, by default with a technician's identity (reads
    everything) named after ``client_id``: the broker names each client after its
    certificate, so two observers with one identity would push each other off."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    identity = credentials or mosquitto.credentials(client_id, Role.TECHNICIAN)
    client.tls_set_context(client_context(identity))
    return client


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
        env=env,
    )


class Processes:
    """Child processes started by a test, all stopped (and their logs kept) at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.children: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        log.close()
        self.children.append(process)
        return process

    def start_fleet(self, config: Path) -> subprocess.Popen[bytes]:
        """Start ``fleet serve`` and wait until its subscription exists at the broker."""
        ready = self.folder / f"fleet-ready-{len(self.children)}"
        process = self.start("fleet", *fleet_serve_args(config, ready))
        wait_until_subscribed(process, ready, self.folder / "fleet.log")
        return process

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.children:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.children:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[mqtt.Client]:
    """A client that may publish as any agent (to play hostile or broken ones)."""
    client = mqtt_client(mosquitto, "test-publisher", mosquitto.credentials(PLAYS_ANY_AGENT))
    client.connect(mosquitto.host, mosquitto.port or 0)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    yield running
    running.stop_all()


@pytest.fixture
def influx(influxdb: InfluxDB, influx_db: str) -> Iterator[InfluxClient]:
    with influxdb.client(influx_db) as client:
        yield client


def in_process_settings(
    mosquitto: Mosquitto, influxdb: InfluxDB, database: str, prefix: str, **sections: Any
) -> FleetConfig:
    """A fleet instance's settings for this test's broker, database and prefix, for the
    parts a test runs in its own process; ``sections`` add to them (``status=...``)."""
    return FleetConfig.model_validate(
        {
            "schema_version": 1,
            "mqtt": {
                "port": mosquitto.port,
                "tls": mosquitto.credentials(f"fleet-{prefix}", Role.SERVICE).as_config(),
                "topic_prefix": prefix,
                "share_group": prefix,
            },
            "influxdb": {"url": influxdb.url, "database": database},
            "ingest": {"batch_max_delay_s": 0.05},
            **sections,
        }
    )


@pytest.fixture
def service(
    mosquitto: Mosquitto, influxdb: InfluxDB, influx: InfluxClient, mqtt_prefix: str
) -> Iterator[IngestService]:
    """The ingest of one fleet instance, in this process, subscribed."""
    config = in_process_settings(mosquitto, influxdb, influx.database, mqtt_prefix)
    running = IngestService(config, influx)
    running.start()
    assert running.subscribed.wait(10)
    yield running
    running.stop()


@pytest.fixture
def fleet_config(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, mqtt_prefix: str, influx_db: str
) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "mqtt": {
                    "host": mosquitto.host,
                    "port": mosquitto.port,
                    "topic_prefix": mqtt_prefix,
                    "share_group": mqtt_prefix,
                    # This test's own fleet instance: the broker names it after it.
                    "tls": mosquitto.credentials(f"fleet-{mqtt_prefix}", Role.SERVICE).as_config(),
                    "cli_tls": mosquitto.technician_credentials.as_config(),
                },
                "influxdb": {
                    "url": influxdb.url,
                    "database": influx_db,
                    "username": "fleet",
                    "password_file": str(influxdb.grant(influx_db)),
                },
                "ingest": {"batch_max_delay_s": 0.05},
            }
        )
    )
    return path


AgentFactory = Callable[..., Path]


@pytest.fixture
def agent_config(tmp_path: Path, mosquitto: Mosquitto, mqtt_prefix: str) -> AgentFactory:
    """Write an agent config; keyword arguments override the defaults."""

    def make(agent_id: str, **overrides: Any) -> Path:
        config: dict[str, Any] = {
            "schema_version": 1,
            "agent_id": agent_id,
            "site": {"id": f"site-{agent_id}", "name": f"Mairie, site {agent_id}"},
            "kind": "booth",
            "broker": {
                "host": mosquitto.host,
                "port": mosquitto.port,
                "topic_prefix": mqtt_prefix,
                "tls": mosquitto.credentials(agent_id).as_config(),
                "keepalive_s": 5,
                "reconnect_initial_s": 0.2,
                "reconnect_max_s": 2,
            },
            "state_dir": str(tmp_path / "state" / agent_id),
            "health_interval_s": 0.5,
            # Resend unconfirmed messages after 2 s, not 30: tests converge quickly.
            "delivery": {"confirm_timeout_s": 2},
            "devices": [
                {"id": "bp1", "kind": "blood_pressure", "interval_s": 0.2},
                {"id": "ox1", "kind": "pulse_oximetry", "interval_s": 0.3},
            ],
        }
        config.update(overrides)
        path = tmp_path / f"{agent_id}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    return make


class Tap:
    """An independent subscriber that records what agents really publish."""

    def __init__(self, mosquitto: Mosquitto, prefix: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt_client(mosquitto, f"tap-{prefix}")
        self._client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/v1/+/#", qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(mosquitto.host, mosquitto.port or 0)
        self._client.loop_start()
        assert self._subscribed.wait(10), "tap could not subscribe"

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, json.loads(message.payload)))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def tap(mosquitto: Mosquitto, mqtt_prefix: str) -> Iterator[Tap]:
    recorder = Tap(mosquitto, mqtt_prefix)
    yield recorder
    recorder.close()


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    done = run("fleet", "keys", "generate", "--out", str(folder))
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    folder = tmp_path / "store"
    folder.mkdir()
    server = ArtifactServer(folder)
    server.start()
    yield folder, server.url
    server.stop()
