"""``fleet serve`` with a spill, started while InfluxDB is down: it subscribes at once,
confirms what agents send, and stores all of it, once, when InfluxDB comes; refused
credentials still stop it with status 1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml

from fleet.devstack.influxdb import InfluxDB
from fleet.devstack.services import Mosquitto
from fleet.errors import InfluxRejected
from fleet.security.pki import Role
from fleet.storage.influx import Series
from vigie_core.contract.codec import encode
from vigie_core.contract.data import Reading, ReadingKind, StoredAck
from vigie_core.contract.topics import Topics

from .conftest import Processes, mqtt_client, wait_until

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
SEQS = list(range(1, 31))


def reading(seq: int) -> Reading:
    return Reading(
        agent_id="booth-1",
        seq=seq,
        measured_at=AT + timedelta(seconds=seq),
        kind=ReadingKind.BLOOD_PRESSURE,
        device="bp1",
        values={"systolic": 120.0},
        units={"systolic": "mm[Hg]"},
    )


@pytest.fixture
def confirmed(mosquitto: Mosquitto, mqtt_prefix: str) -> Iterator[list[int]]:
    """The sequence numbers the fleet confirms to booth-1, as the agent would see them."""
    seqs: list[int] = []
    subscribed = []
    listener = mqtt_client(mosquitto, f"listener-{mqtt_prefix}")
    listener.on_message = lambda _c, _u, m: seqs.extend(
        StoredAck.model_validate_json(m.payload).seqs()
    )
    listener.on_subscribe = lambda *_: subscribed.append(True)
    listener.connect(mosquitto.host, mosquitto.port or 0)
    listener.subscribe(Topics(mqtt_prefix).ack("booth-1"), qos=1)
    listener.loop_start()
    wait_until(lambda: subscribed, 10, "the listener's subscription")
    yield seqs
    listener.disconnect()
    listener.loop_stop()


@pytest.mark.parametrize("secured", [False, True], ids=["never-started", "stopped-secured"])
def test_with_a_spill_the_fleet_starts_and_confirms_while_influxdb_is_down(
    mosquitto: Mosquitto,
    publisher: mqtt.Client,
    confirmed: list[int],
    processes: Processes,
    tmp_path: Path,
    mqtt_prefix: str,
    secured: bool,
) -> None:
    """Never started and unsecured: the database does not exist until the fleet's
    check creates it, so a write before the check would be refused (dead-lettered).
    Secured: provisioned by 'fleet db init', then stopped before the fleet starts."""
    database = InfluxDB(workdir=tmp_path / "influxdb", auth=secured)
    influxdb: dict[str, Any] = {"url": database.url, "database": "vigie", "timeout_s": 2}
    if secured:
        database.start()
        influxdb.update(username="fleet", password_file=str(database.grant("vigie")))
        database.stop()
    spill = tmp_path / "spill"
    config = tmp_path / "fleet.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "mqtt": {
                    "host": mosquitto.host,
                    "port": mosquitto.port,
                    "topic_prefix": mqtt_prefix,
                    "share_group": mqtt_prefix,
                    "tls": mosquitto.credentials(f"fleet-{mqtt_prefix}", Role.SERVICE).as_config(),
                },
                "influxdb": influxdb,
                "ingest": {"batch_max_delay_s": 0.05, "spill_dir": str(spill)},
            }
        )
    )
    processes.start_fleet(config)  # returns once subscribed: InfluxDB is still down
    wait_until(
        lambda: (
            f"InfluxDB unreachable; receiving into the spill at {spill} until it answers"
            in processes.log("fleet")
        ),
        10,
        "the fleet to say where it receives",
    )
    topics = Topics(mqtt_prefix)
    for seq in SEQS:
        publisher.publish(topics.topic_for(reading(seq)), encode(reading(seq)), qos=1)
    wait_until(lambda: sorted(set(confirmed)) == SEQS, 30, "confirmations while InfluxDB is down")
    try:
        database.start()
        with database.client("vigie") as influx:

            def drained() -> list[Series] | None:
                try:
                    series = influx.query('SELECT seq FROM "blood_pressure"')
                except InfluxRejected:  # no database yet: the fleet's check creates it
                    return None
                return series if series and len(series[0].values) == len(SEQS) else None

            stored = wait_until(drained, 90, "the spill drained into InfluxDB")
            assert sorted(row["seq"] for row in stored[0].rows()) == SEQS  # each once
            assert influx.query('SELECT * FROM "dead_letter"') == []
    finally:
        processes.stop_all()
        database.stop()
    assert "InfluxDB answers; draining the spill" in processes.log("fleet")
    assert "Traceback" not in processes.log("fleet")


def test_with_a_spill_wrong_credentials_still_stop_the_fleet_with_status_1(
    influxdb: InfluxDB, influx_db: str, fleet_config: Path, tmp_path: Path
) -> None:
    """The check runs behind the subscription, but a refusal ends the service as before."""
    settings = yaml.safe_load(fleet_config.read_text())
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    settings["influxdb"]["password_file"] = str(wrong)
    settings["ingest"]["spill_dir"] = str(tmp_path / "spill")
    config = tmp_path / "bad-fleet.yaml"
    config.write_text(yaml.safe_dump(settings))
    done = subprocess.run(
        [sys.executable, "-m", "fleet", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "refused user 'fleet'" in done.stderr
    assert "not-the-password" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
