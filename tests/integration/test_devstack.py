"""The local services the tests, the demo and the benchmarks run on."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleet.devstack import DevstackError, InfluxDB, Mosquitto

pytestmark = pytest.mark.integration


def retained(broker: Mosquitto, topic: str) -> bytes | None:
    got: list[bytes] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append(message.payload)
        done.set()

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    done.wait(3)
    client.disconnect()
    client.loop_stop()
    return got[0] if got else None


def publish_retained(broker: Mosquitto, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_retained_state_survives_a_broker_killed_after_autosave(tmp_path: Path) -> None:
    with Mosquitto(workdir=tmp_path / "a") as broker:
        port = broker.port
        publish_retained(broker, "t/state", b"online")
        time.sleep(2.5)  # autosave_interval 1: the store is on disk by now
        broker.kill()
        broker.start()
        assert broker.port == port
        assert retained(broker, "t/state") == b"online"


def test_two_brokers_and_two_databases_run_side_by_side(tmp_path: Path) -> None:
    with (
        Mosquitto(workdir=tmp_path / "a") as one,
        Mosquitto(workdir=tmp_path / "b") as two,
        InfluxDB(workdir=tmp_path / "c") as db1,
        InfluxDB(workdir=tmp_path / "d") as db2,
    ):
        assert one.port != two.port
        assert db1.port != db2.port
        publish_retained(one, "t/x", b"1")
        assert retained(two, "t/x") is None
        assert retained(one, "t/x") == b"1"


def test_a_port_in_use_is_a_clear_error(tmp_path: Path, mosquitto: Mosquitto) -> None:
    with pytest.raises(DevstackError, match="mosquitto"):
        Mosquitto(workdir=tmp_path / "x", port=mosquitto.port).start()
