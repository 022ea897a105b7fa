"""One hostile or broken booth never stops the fleet: what an enrolled agent can send
with its own certificate, on its own topics, through the real TLS broker and its ACL,
to a real fleet service writing to the real InfluxDB."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from fleet.devstack.services import Mosquitto
from fleet.storage.influx import InfluxClient
from vigie_core.contract.codec import encode
from vigie_core.contract.topics import Topics

from .conftest import AgentFactory, Processes, mqtt_client, wait_until
from .test_end_to_end import last_seq_assigned, stored_seqs
from .test_ingest import reading

pytestmark = pytest.mark.integration

HOSTILE = "hostile-1"


@pytest.fixture
def hostile(mosquitto: Mosquitto) -> Iterator[mqtt.Client]:
    """A client with an enrolled agent's own certificate (MQTT 5, as agents speak)."""
    client = mqtt_client(mosquitto, HOSTILE, mosquitto.credentials(HOSTILE), protocol=mqtt.MQTTv5)
    client.connect(mosquitto.host, mosquitto.port or 0)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()


def poison(topics: Topics, first_seq: int) -> list[tuple[str, bytes, str | None]]:
    """(topic, payload, the dead letter's reason) for what a broken booth might send;
    None where part of it is good and must be stored."""
    good = json.loads(encode(reading(HOSTILE, first_seq)))
    on_reading = topics.topic_for(reading(HOSTILE, first_seq))

    def variant(**fields: Any) -> bytes:
        return json.dumps({**good, **fields}).encode()

    deep = b"[" * 20_000 + b"]" * 20_000
    mixed = {
        "schema_version": 1,
        "agent_id": HOSTILE,
        "historical": True,
        "messages": [
            json.loads(encode(reading(HOSTILE, first_seq + 1))),
            {**good, "seq": first_seq + 2, "measured_at": "9999-12-31T23:59:59-14:00"},
            json.loads(encode(reading(HOSTILE, first_seq + 3))),
        ],
    }
    return [
        (on_reading, variant(measured_at="0001-01-01T00:00:00+14:00"), "invalid_payload"),
        (on_reading, variant(measured_at="9999-12-31T23:59:59-14:00"), "invalid_payload"),
        (on_reading, variant(seq=2**64), "invalid_payload"),
        (on_reading, encode(reading(HOSTILE, first_seq)).replace(b"120.0", b"1e400"),
         "invalid_payload"),
        (on_reading, b'{"values":' + deep + b"}", "not_json"),
        (on_reading, b"\xff\xfe\x00 not utf-8", "not_json"),
        (topics.batch(HOSTILE), json.dumps(mixed).encode(), None),
    ]  # fmt: skip


def publish_all(client: mqtt.Client, messages: list[tuple[str, bytes, str | None]]) -> None:
    for topic, payload, _ in messages:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published(), topic


def dead_letters(influx: InfluxClient) -> dict[str, int]:
    found = influx.query(
        f'SELECT count("size") FROM "dead_letter" WHERE topic =~ /{HOSTILE}/ GROUP BY reason'
    )
    return {series.tags["reason"]: series.values[0][1] for series in found}


def test_poison_never_stops_the_ingest_and_survives_a_restart_with_the_session_kept(
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    influx: InfluxClient,
    hostile: mqtt.Client,
    mqtt_prefix: str,
    tmp_path: Path,
) -> None:
    topics = Topics(mqtt_prefix)
    fleet = processes.start_fleet(fleet_config)
    good_agent = processes.start(
        "good", "-m", "edge_agent", "run", "--config", str(agent_config("good-1"))
    )
    wait_until(lambda: stored_seqs(influx, "good-1"), 60, "the good agent's first readings")
    first = poison(topics, 100)
    publish_all(hostile, first)
    expected = {"invalid_payload": 5, "not_json": 2}  # the batch's bad message included
    wait_until(lambda: dead_letters(influx) == expected, 60, f"the dead letters {expected}")
    # The good messages of the mixed batch are stored, and the good agent goes on.
    wait_until(
        lambda: {101, 103} <= set(stored_seqs(influx, HOSTILE)), 30, "the batch's good messages"
    )
    before = len(stored_seqs(influx, "good-1"))
    wait_until(lambda: len(stored_seqs(influx, "good-1")) > before + 10, 30, "more good readings")

    # The fleet dies holding whatever it had; poison keeps coming while it is away,
    # queued in its persistent session; it restarts with the same session.
    fleet.send_signal(signal.SIGKILL)
    fleet.wait(10)
    publish_all(hostile, poison(topics, 200))
    processes.start_fleet(fleet_config)
    expected = {"invalid_payload": 10, "not_json": 4}
    wait_until(lambda: dead_letters(influx) == expected, 60, f"the dead letters {expected}")
    wait_until(
        lambda: {101, 103, 201, 203} <= set(stored_seqs(influx, HOSTILE)),
        30,
        "the second batch's good messages",
    )
    # Nothing of the good agent lost or doubled across all of it.
    good_agent.send_signal(signal.SIGTERM)
    assert good_agent.wait(30) == 0
    last = last_seq_assigned(tmp_path / "state" / "good-1")
    counts = wait_until(
        lambda: (found := stored_seqs(influx, "good-1")) and len(found) >= last and found,
        60,
        "every good message",
    )
    assert set(counts) == set(range(1, last + 1))
    assert set(counts.values()) == {1}


def connected(client: mqtt.Client, mosquitto: Mosquitto) -> dict[str, list[Any]]:
    """Connect ``client``; what happens to it (connections, drops, SUBACKs) is recorded."""
    seen: dict[str, list[Any]] = {"connect": [], "disconnect": [], "suback": []}
    client.on_connect = lambda _c, _u, _f, reason, _p=None: seen["connect"].append(str(reason))
    client.on_disconnect = lambda _c, _u, _f, reason, _p=None: seen["disconnect"].append(
        str(reason)
    )
    client.on_subscribe = lambda _c, _u, _mid, reasons, _p=None: seen["suback"].append(
        [str(reason) for reason in reasons]
    )
    client.connect(mosquitto.host, mosquitto.port or 0)
    client.loop_start()
    wait_until(lambda: seen["connect"], 10, "the connection")
    return seen


def test_no_certificate_takes_over_another_clients_id(
    processes: Processes, fleet_config: Path, mosquitto: Mosquitto, mqtt_prefix: str
) -> None:
    victim = mqtt_client(mosquitto, "victim-1", mosquitto.credentials("victim-1"), mqtt.MQTTv5)
    victim_seen = connected(victim, mosquitto)
    processes.start_fleet(fleet_config)
    fleet_id = f"fleet-{mqtt_prefix}"
    clients = []
    # An agent's certificate claiming the other agent's id, then the fleet's, repeatedly.
    for client_id in ("victim-1", fleet_id) * 3:
        thief = mqtt_client(mosquitto, client_id, mosquitto.credentials(HOSTILE), mqtt.MQTTv5)
        assert connected(thief, mosquitto)["connect"] == ["Success"]  # as itself, that is
        clients.append(thief)
    time.sleep(2)
    assert victim_seen["disconnect"] == [], "the agent was pushed off"
    assert victim.is_connected()
    log = processes.log("fleet")
    assert "lost the broker" not in log, "the fleet service was pushed off"
    assert "took its session over" not in log
    for client in (victim, *clients):
        client.disconnect()
        client.loop_stop()


def test_an_agent_may_not_subscribe_outside_its_branch_nor_join_a_shared_group(
    mosquitto: Mosquitto, hostile: mqtt.Client, mqtt_prefix: str
) -> None:
    topics = Topics(mqtt_prefix)
    agent = mqtt_client(mosquitto, "nosy-1", mosquitto.credentials("nosy-1"), mqtt.MQTTv5)
    seen = connected(agent, mosquitto)
    refused = [
        f"$share/{mqtt_prefix}/{mqtt_prefix}/v1/+/health",  # the fleet's group
        f"$share/anything/{mqtt_prefix}/v1/+/#",
        f"{mqtt_prefix}/v1/+/health",
        f"{mqtt_prefix}/v1/{HOSTILE}/ack",
        f"{mqtt_prefix}/v1/nosy-1/#",  # its whole branch: its own data too
        "#",
        f"{mqtt_prefix}/rollouts/+/+",
    ]
    allowed = [topics.ack("nosy-1"), topics.desired("nosy-1")]
    for topic in (*refused, *allowed):
        agent.subscribe(topic, qos=1)
    wait_until(lambda: len(seen["suback"]) == len(refused) + len(allowed), 10, "every SUBACK")
    assert seen["suback"] == [["Not authorized"]] * len(refused) + [["Granted QoS 1"]] * 2
    agent.disconnect()
    agent.loop_stop()


def test_two_processes_with_one_fleet_identity_say_so_loudly(
    processes: Processes, fleet_config: Path, influx: InfluxClient
) -> None:
    first = processes.start_fleet(fleet_config)
    processes.start_fleet(fleet_config)  # the same identity: a deployment mistake
    wait_until(
        lambda: processes.log("fleet").count("took its session over") >= 2,
        60,
        "both processes to notice the other",
    )
    first.send_signal(signal.SIGTERM)
    found = wait_until(
        lambda: influx.query(
            'SELECT "detail" FROM "fleet_event" WHERE "name" = \'session_taken_over\''
        ),
        30,
        "the takeover stored for the operators",
    )
    assert "fleet ca identity" in found[0].rows()[0]["detail"]


def test_each_documented_reason_is_what_its_message_is_stored_with(
    processes: Processes,
    fleet_config: Path,
    influx: InfluxClient,
    hostile: mqtt.Client,
    mqtt_prefix: str,
) -> None:
    # docs/protocol.md, "Limits and rejections": one message of each row, sent by an
    # agent on its own topics, and the reason its dead letter gets.
    topics = Topics(mqtt_prefix)
    good = json.loads(encode(reading(HOSTILE, 1)))
    on_reading = topics.topic_for(reading(HOSTILE, 1))
    without_version = {key: value for key, value in good.items() if key != "schema_version"}
    float_version = {**good, "schema_version": 1.0}
    foreign_batch = {
        "schema_version": 1,
        "agent_id": HOSTILE,
        "messages": [json.loads(encode(reading("someone-else", 2)))],
    }
    cases = [
        ("oversized", on_reading, b" " * (64 * 1024 + 100)),
        ("bad_topic", f"{mqtt_prefix}/v1/{HOSTILE}/reading/weather", encode(reading(HOSTILE, 1))),
        ("not_json", on_reading, b"\xff\xfe"),
        ("not_json", on_reading, encode(reading(HOSTILE, 1)).replace(b"120.0", b"NaN")),
        ("unknown_schema_version", on_reading, json.dumps(without_version).encode()),
        ("unknown_schema_version", on_reading, json.dumps(float_version).encode()),
        ("invalid_payload", on_reading, json.dumps({**good, "seq": -1}).encode()),
        ("agent_mismatch", topics.batch(HOSTILE), json.dumps(foreign_batch).encode()),
    ]
    processes.start_fleet(fleet_config)
    publish_all(hostile, [(topic, payload, reason) for reason, topic, payload in cases])
    expected: dict[str, int] = {}
    for reason, _, _ in cases:
        expected[reason] = expected.get(reason, 0) + 1
    wait_until(lambda: dead_letters(influx) == expected, 60, f"the dead letters {expected}")
