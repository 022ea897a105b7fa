"""Security against the real services: Mosquitto with TLS and the generated ACL, and
InfluxDB with authentication on (docs/security.md)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from fleet.devstack.influxdb import InfluxDB
from fleet.devstack.services import Mosquitto, free_port
from fleet.errors import InfluxUnauthorized
from fleet.security.broker import MAX_PACKET_BYTES
from fleet.security.dynsec import ADMIN_IDENTITY, BrokerControl
from fleet.security.pki import Role
from fleet.storage.influx import InfluxClient, InfluxCredentials
from fleet.storage.lineprotocol import Point
from vigie_core.contract.codec import encode
from vigie_core.contract.topics import Topics
from vigie_core.files import write_private, write_public
from vigie_core.tls import BrokerCredentials, client_context

from .conftest import AgentFactory, Processes, mqtt_client, wait_until
from .test_ingest import reading

pytestmark = pytest.mark.integration


def connect(broker: Mosquitto, client: mqtt.Client) -> str:
    """Connect and return the outcome: 'Success', a refusal reason, or the TLS error."""
    outcome: list[str] = []
    done = threading.Event()

    def on_connect(*args: object) -> None:
        outcome.append(str(args[3]))
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *args: (outcome.append(f"disconnected: {args[3]}"), done.set())
    try:
        client.connect(broker.host, broker.port or 0)
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {exc}"
    client.loop_start()
    done.wait(5)
    return outcome[0] if outcome else "no answer"


def security_clients(path: Path) -> list[str]:
    """Who the broker's dynamic security file knows."""
    return [client["username"] for client in json.loads(path.read_text())["clients"]]


def agent_client(broker: Mosquitto, name: str) -> mqtt.Client:
    return mqtt_client(broker, name, broker.credentials(name), protocol=mqtt.MQTTv5)


def test_an_agent_with_its_certificate_publishes_and_is_stored(
    processes: Processes, fleet_config: Path, agent_config: AgentFactory, influx: InfluxClient
) -> None:
    processes.start_fleet(fleet_config)
    processes.start("agent", "-m", "edge_agent", "run", "--config", str(agent_config("sec-ok")))
    wait_until(
        lambda: influx.query("SELECT seq FROM blood_pressure WHERE agent_id = 'sec-ok'"),
        60,
        "a reading from the TLS agent",
    )


def test_publishing_under_another_agents_branch_is_refused_and_not_stored(
    mosquitto: Mosquitto,
    mqtt_prefix: str,
    processes: Processes,
    fleet_config: Path,
    influx: InfluxClient,
) -> None:
    processes.start_fleet(fleet_config)
    topics = Topics(mqtt_prefix)
    intruder = agent_client(mosquitto, "sec-intruder")
    outcomes: dict[int, str] = {}
    intruder.on_publish = lambda _c, _u, mid, reason, _p: outcomes.__setitem__(mid, str(reason))
    assert connect(mosquitto, intruder) == "Success"
    forged = reading("sec-victim", 1)
    own = reading("sec-intruder", 1)
    forged_mid = intruder.publish(topics.topic_for(forged), encode(forged), qos=1).mid
    own_mid = intruder.publish(topics.topic_for(own), encode(own), qos=1).mid
    wait_until(lambda: len(outcomes) == 2, 10, "both PUBACKs")
    intruder.loop_stop()
    # MQTT 5 tells the publisher; the broker counts nothing we could read, so the
    # refusal the client sees is the count (docs/security.md).
    assert outcomes[forged_mid] == "Not authorized"
    assert outcomes[own_mid] == "Success"
    wait_until(
        lambda: influx.query("SELECT seq FROM blood_pressure WHERE agent_id = 'sec-intruder'"),
        30,
        "the intruder's own reading",
    )
    assert not influx.query("SELECT seq FROM blood_pressure WHERE agent_id = 'sec-victim'")


def test_an_agent_cannot_read_another_agents_acknowledgements_or_config(
    mosquitto: Mosquitto, mqtt_prefix: str
) -> None:
    topics = Topics(mqtt_prefix)
    snoop = agent_client(mosquitto, "sec-snoop")
    received: list[str] = []
    snoop.on_message = lambda _c, _u, message: received.append(message.topic)
    assert connect(mosquitto, snoop) == "Success"
    for topic in (
        topics.ack("sec-other"),
        f"{mqtt_prefix}/v1/sec-other/desired/config",
        topics.reading("sec-other", reading("x", 1).kind),
        topics.ack("sec-snoop"),
    ):
        snoop.subscribe(topic, qos=1)
    # The CLI's identity may publish desired state; the fleet's, acknowledgements.
    desk = mqtt_client(mosquitto, f"desk-{mqtt_prefix}", mosquitto.technician_credentials)
    assert connect(mosquitto, desk) == "Success"
    desk.publish(f"{mqtt_prefix}/v1/sec-other/desired/config", b"{}", qos=1).wait_for_publish(5)
    other = agent_client(mosquitto, "sec-other")
    assert connect(mosquitto, other) == "Success"
    other.publish(topics.topic_for(reading("sec-other", 1)), b"{}", qos=1).wait_for_publish(5)
    fleet = mqtt_client(mosquitto, f"fleet-{mqtt_prefix}-ack", mosquitto.service_credentials)
    assert connect(mosquitto, fleet) == "Success"
    fleet.publish(topics.ack("sec-other"), b"{}", qos=1).wait_for_publish(5)
    fleet.publish(topics.ack("sec-snoop"), b"{}", qos=1).wait_for_publish(5)
    # Its own acknowledgement arrives, proving the subscription works: nothing else does.
    wait_until(lambda: topics.ack("sec-snoop") in received, 10, "its own acknowledgement")
    time.sleep(0.5)
    assert received == [topics.ack("sec-snoop")]
    for client in (snoop, desk, other, fleet):
        client.disconnect()
        client.loop_stop()


def test_no_certificate_an_expired_one_or_a_revoked_one_is_refused(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sec-anon")
    # TLS, the right CA, but no client certificate.
    (tmp_path / "p").write_text("not the password\n")
    no_certificate = BrokerCredentials(
        ca_file=mosquitto.authority.ca_path, username="x", password_file=tmp_path / "p"
    )
    anonymous.tls_set_context(client_context(no_certificate))
    assert connect(mosquitto, anonymous) != "Success"

    plain = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sec-plain")
    assert connect(mosquitto, plain) != "Success"

    certificate, key = mosquitto.authority.issue(
        "sec-expired", Role.AGENT, days=1, valid_from=datetime.now(UTC) - timedelta(days=3)
    )
    assert key is not None
    write_public(tmp_path / "expired.crt", certificate)
    write_private(tmp_path / "expired.key", key)
    expired = BrokerCredentials(
        ca_file=mosquitto.authority.ca_path,
        cert_file=tmp_path / "expired.crt",
        key_file=tmp_path / "expired.key",
    )
    assert connect(mosquitto, mqtt_client(mosquitto, "sec-expired", expired)) != "Success"

    credentials = mosquitto.credentials("sec-revoked")
    before = mqtt_client(mosquitto, "sec-revoked", credentials)
    assert connect(mosquitto, before) == "Success"
    before.disconnect()
    before.loop_stop()
    mosquitto.revoke("sec-revoked")
    assert "sec-revoked" not in security_clients(mosquitto.files.security)
    after = mqtt_client(mosquitto, "sec-revoked-2", credentials)
    assert connect(mosquitto, after) != "Success"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_cli_enrols_from_a_signing_request_and_revokes(tmp_path: Path) -> None:
    """fleet ca init, edge-agent identity request, fleet agent enroll --csr, fleet broker
    config, a real broker on those files, fleet agent revoke and a reload."""
    pki, broker_dir = tmp_path / "pki", tmp_path / "broker"
    assert run_cli("fleet", "ca", "init", "--pki", str(pki)).returncode == 0
    assert (pki / "ca.key").stat().st_mode & 0o777 == 0o600
    key, csr = tmp_path / "agent" / "client.key", tmp_path / "agent.csr"
    key.parent.mkdir()
    done = run_cli(
        "edge_agent", "identity", "request", "booth-cli", "--key", str(key), "--csr", str(csr)
    )
    assert done.returncode == 0, done.stderr
    assert key.stat().st_mode & 0o777 == 0o600
    done = run_cli(
        "fleet",
        "broker",
        "config",
        "--pki",
        str(pki),
        "--out",
        str(broker_dir),
        "--topic-prefix",
        "cli",
        "--bind",
        "127.0.0.1",
        "--port",
        str(free_port()),
    )
    assert done.returncode == 0, done.stderr
    done = run_cli(
        "fleet",
        "agent",
        "enroll",
        "booth-cli",
        "--pki",
        str(pki),
        "--csr",
        str(csr),
        "--out",
        str(tmp_path / "bundles"),
        "--broker-dir",
        str(broker_dir),
    )
    assert done.returncode == 0, done.stderr
    bundle = tmp_path / "bundles" / "booth-cli"
    assert not (bundle / "client.key").exists()  # the key stayed on the agent
    assert yaml.safe_load((bundle / "agent.yaml").read_text())["broker"]["tls"]
    assert "booth-cli" in security_clients(broker_dir / "dynamic-security.json")
    # A CSR for another name is refused.
    done = run_cli("fleet", "agent", "enroll", "booth-other", "--pki", str(pki), "--csr", str(csr))
    assert done.returncode == 1
    assert "not 'booth-other'" in done.stderr

    broker = _ShippedBroker(tmp_path / "run", broker_dir)
    broker.start()
    try:
        credentials = BrokerCredentials(
            ca_file=bundle / "ca.crt", cert_file=bundle / "client.crt", key_file=key
        )
        client = mqtt_client(broker, "booth-cli", credentials)
        assert connect(broker, client) == "Success"
        client.disconnect()
        client.loop_stop()
        done = run_cli(
            "fleet",
            "agent",
            "revoke",
            "booth-cli",
            "--pki",
            str(pki),
            "--broker-dir",
            str(broker_dir),
        )
        assert done.returncode == 0, done.stderr
        broker.reload()
        assert connect(broker, mqtt_client(broker, "booth-cli", credentials)) != "Success"
    finally:
        broker.stop()


class _ShippedBroker(Mosquitto):
    """Mosquitto run on exactly the files 'fleet broker config' wrote."""

    def __init__(self, workdir: Path, broker_dir: Path) -> None:
        super().__init__(workdir=workdir)
        self.shipped = broker_dir
        settings = (broker_dir / "vigie-security.conf").read_text()
        self.port = int(
            next(line for line in settings.splitlines() if line.startswith("listener")).split()[1]
        )

    def config_text(self) -> str:
        lines = [(self.shipped / "vigie-security.conf").read_text(), "log_dest stdout"]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to a user that cannot read here
        return "\n".join(lines) + "\n"

    def reload(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGHUP)  # as 'systemctl reload mosquitto'
        time.sleep(0.5)


def test_the_fleet_writes_with_its_credentials_and_fails_clearly_with_wrong_ones(
    influxdb: InfluxDB, influx_db: str, fleet_config: Path, processes: Processes, tmp_path: Path
) -> None:
    password_file = influxdb.grant(influx_db)
    secret = password_file.read_text().strip()
    with InfluxClient(influxdb.url, influx_db, credentials=influxdb.admin_credentials) as admin:
        admin.check_access()
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    settings = yaml.safe_load(fleet_config.read_text())
    settings["influxdb"]["password_file"] = str(wrong)
    bad = tmp_path / "bad-fleet.yaml"
    bad.write_text(yaml.safe_dump(settings))
    done = subprocess.run(
        [sys.executable, "-m", "fleet", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "refused user 'fleet'" in done.stderr
    assert "not-the-password" not in done.stderr + done.stdout
    # With the right ones it runs, and its log never shows the secret.
    processes.start_fleet(fleet_config)
    assert secret not in processes.log("fleet")


def test_revoking_a_connected_agent_cuts_it_off_at_once_and_refuses_it_after(
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    influx: InfluxClient,
    mosquitto: Mosquitto,
) -> None:
    """The broker's security drops the agent's client, which disconnects it at once;
    after the reload its certificate is on the CRL and refused."""
    processes.start_fleet(fleet_config)
    processes.start("agent", "-m", "edge_agent", "run", "--config", str(agent_config("sec-cut")))
    query = "SELECT seq FROM blood_pressure WHERE agent_id = 'sec-cut'"
    wait_until(lambda: influx.query(query), 60, "readings before the revocation")
    mosquitto.revoke("sec-cut")
    revoked_ns = time.time_ns()
    wait_until(lambda: "certificate revoked" in processes.log("agent"), 30, "the CRL to refuse it")
    time.sleep(2)  # anything accepted before the revocation has been stored by now
    late = influx.query(f"{query} AND time > {revoked_ns + 1_000_000_000}")
    assert not late, late


def test_an_agent_whose_rights_are_withdrawn_counts_what_the_broker_refuses(
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    influx: InfluxClient,
    mosquitto: Mosquitto,
) -> None:
    """Connected but no longer allowed to publish (its role taken away): every publish
    is refused (MQTT 5 PUBACK), the agent counts and says so, and keeps the messages."""
    processes.start_fleet(fleet_config)
    processes.start("agent", "-m", "edge_agent", "run", "--config", str(agent_config("sec-bare")))
    query = "SELECT seq FROM blood_pressure WHERE agent_id = 'sec-bare'"
    wait_until(lambda: influx.query(query), 60, "readings before the change")
    admin = mosquitto.credentials(ADMIN_IDENTITY, Role.ADMIN)
    BrokerControl(mosquitto.host, mosquitto.port or 0, admin).apply(
        [
            {
                "command": "removeClientRole",
                "username": "sec-bare",
                "rolename": "vigie-agent-sec-bare",
            }
        ]
    )
    wait_until(
        lambda: "the broker refused" in processes.log("agent"), 30, "the agent to count refusals"
    )


def test_db_init_sets_up_the_database_its_retention_and_least_privilege_users(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    suffix = tmp_path.name[-6:].replace("-", "_").lower()
    database, writer, reader = f"init_{suffix}", f"fleet_{suffix}", f"grafana_{suffix}"
    (tmp_path / "writer").write_text("writer-secret-1\n")
    (tmp_path / "reader").write_text("reader-secret-2\n")
    admin_password = influxdb.admin_password_file.read_text().strip()
    command = [
        sys.executable,
        "-m",
        "fleet",
        "db",
        "init",
        "--url",
        influxdb.url,
        "--database",
        database,
        "--user",
        writer,
        "--password-file",
        str(tmp_path / "writer"),
        "--reader",
        reader,
        "--reader-password-file",
        str(tmp_path / "reader"),
        "--retention",
        "30d",
    ]
    environment = {**os.environ, "VIGIE_INFLUX_ADMIN_PASSWORD": admin_password}
    for _ in range(2):  # running it again changes nothing and still succeeds
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=False, env=environment
        )
        assert done.returncode == 0, done.stderr
        for secret in ("writer-secret-1", "reader-secret-2", admin_password):
            assert secret not in done.stdout + done.stderr
    with influxdb.client(database) as admin:
        (policies,) = admin.query(f'SHOW RETENTION POLICIES ON "{database}"')
        autogen = next(row for row in policies.rows() if row["name"] == "autogen")
        assert autogen["duration"] == "720h0m0s"
        assert autogen["default"] is True
    # Recent: a point older than the 30 days kept would be refused (that is retention).
    point = Point("probe", {"v": 1.0}, time.time_ns())
    as_writer = InfluxCredentials(writer, SecretStr("writer-secret-1"))
    as_reader = InfluxCredentials(reader, SecretStr("reader-secret-2"))
    with InfluxClient(influxdb.url, database, credentials=as_writer) as client:
        client.write([point])
        assert client.query("SELECT v FROM probe")
        with pytest.raises(InfluxUnauthorized):
            client.execute('DROP DATABASE "_internal"')  # not an admin
    with InfluxClient(influxdb.url, database, credentials=as_reader) as client:
        assert client.query("SELECT v FROM probe")
        with pytest.raises(InfluxUnauthorized):
            client.write([point])
    with (
        InfluxClient(influxdb.url, "_internal", credentials=as_writer) as client,
        pytest.raises(InfluxUnauthorized),
    ):
        client.check_access()  # no rights outside its own database
    without_admin = {k: v for k, v in os.environ.items() if k != "VIGIE_INFLUX_ADMIN_PASSWORD"}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False, env=without_admin
    )
    assert done.returncode == 2  # no admin password: a clear error, nothing done
    assert "VIGIE_INFLUX_ADMIN_PASSWORD" in done.stderr


def test_the_broker_refuses_an_oversized_packet_before_anyone_parses_it(
    mosquitto: Mosquitto, mqtt_prefix: str
) -> None:
    topics = Topics(mqtt_prefix)
    client = agent_client(mosquitto, "sec-big")
    refused: list[bool] = []  # per PUBACK: did the broker refuse it?
    client.on_publish = lambda _c, _u, _mid, reason, _p: refused.append(reason.is_failure)
    assert connect(mosquitto, client) == "Success"
    client.publish(topics.health("sec-big"), b"x" * 1000, qos=1).wait_for_publish(5)
    assert refused == [False]
    client.publish(topics.health("sec-big"), b"x" * (MAX_PACKET_BYTES + 1), qos=1)
    # Mosquitto closes the connection of a client that sends a packet over the limit.
    wait_until(lambda: not client.is_connected(), 10, "the broker to drop the connection")
    assert refused == [False]  # the big one was never taken
    client.loop_stop()
