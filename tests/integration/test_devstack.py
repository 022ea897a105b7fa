"""The local services the tests, the demo and the benchmarks run on."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from fleet.devstack.influxdb import InfluxDB
from fleet.devstack.services import Mosquitto
from fleet.errors import DevstackError

from .conftest import mqtt_client

pytestmark = pytest.mark.integration

STATE = "t/v1/booth-r/state"


def retained(broker: Mosquitto, topic: str) -> bytes | None:
    got: list[bytes] = []
    done = threading.Event()
    client = mqtt_client(broker, "reader")

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append(message.payload)
        done.set()

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect(broker.host, broker.port or 0)
    client.loop_start()
    done.wait(3)
    client.disconnect()
    client.loop_stop()
    return got[0] if got else None


def publish_retained(broker: Mosquitto, topic: str, payload: bytes) -> None:
    agent = topic.split("/")[2]
    client = mqtt_client(broker, agent, broker.credentials(agent))
    client.connect(broker.host, broker.port or 0)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_retained_state_survives_a_graceful_restart(tmp_path: Path) -> None:
    # Its own broker: stopping the session one would break the other tests.
    with Mosquitto(workdir=tmp_path / "a") as broker:
        port = broker.port
        publish_retained(broker, STATE, b"online")
        broker.stop()  # SIGTERM: mosquitto saves its store on the way out, no autosave wait
        assert not broker.running
        broker.start()
        assert broker.port == port
        assert retained(broker, STATE) == b"online"
        assert (tmp_path / "a" / "data" / "mosquitto.db").is_file()


def test_retained_state_survives_a_broker_killed_after_autosave(tmp_path: Path) -> None:
    with Mosquitto(workdir=tmp_path / "a") as broker:
        port = broker.port
        publish_retained(broker, STATE, b"online")
        time.sleep(2.5)  # autosave_interval 1: the store is on disk by now
        broker.kill()
        broker.start()
        assert broker.port == port
        assert retained(broker, STATE) == b"online"


def test_two_brokers_and_two_databases_run_side_by_side(tmp_path: Path) -> None:
    with (
        Mosquitto(workdir=tmp_path / "a") as one,
        Mosquitto(workdir=tmp_path / "b") as two,
        InfluxDB(workdir=tmp_path / "c") as db1,
        InfluxDB(workdir=tmp_path / "d") as db2,
    ):
        assert one.port != two.port
        assert db1.port != db2.port
        publish_retained(one, STATE, b"1")
        assert retained(two, STATE) is None
        assert retained(one, STATE) == b"1"


def test_a_port_in_use_is_a_clear_error(tmp_path: Path, mosquitto: Mosquitto) -> None:
    with pytest.raises(DevstackError, match="mosquitto"):
        Mosquitto(workdir=tmp_path / "x", port=mosquitto.port).start()


def test_influxdb_stores_a_point_and_returns_it_exactly(influxdb: InfluxDB, influx_db: str) -> None:
    timestamp_ns = 1_700_000_000_123_456_789
    auth = influxdb.admin_credentials.apply()["auth"]
    write = httpx.post(
        f"{influxdb.url}/write",
        auth=auth,
        params={"db": influx_db, "precision": "ns"},
        content=f"booth_temp,booth=b1 celsius=21.5,door=3i {timestamp_ns}",
    )
    assert write.status_code == 204, write.text
    read = httpx.get(
        f"{influxdb.url}/query",
        auth=auth,
        params={
            "db": influx_db,
            "epoch": "ns",
            "q": "SELECT celsius, door, booth FROM booth_temp",
        },
    )
    assert read.status_code == 200, read.text
    series = read.json()["results"][0]["series"]
    assert series == [
        {
            "name": "booth_temp",
            "columns": ["time", "celsius", "door", "booth"],
            "values": [[timestamp_ns, 21.5, 3, "b1"]],
        }
    ]


def test_influx_db_fixture_gives_each_test_an_empty_database(
    influxdb: InfluxDB, influx_db: str
) -> None:
    auth = influxdb.admin_credentials.apply()["auth"]
    shown = httpx.get(f"{influxdb.url}/query", params={"q": "SHOW DATABASES"}, auth=auth).json()
    assert [influx_db] in shown["results"][0]["series"][0]["values"]
    empty = httpx.get(
        f"{influxdb.url}/query", params={"db": influx_db, "q": "SHOW MEASUREMENTS"}, auth=auth
    ).json()
    assert "series" not in empty["results"][0]
