"""The fleet's ingest loop against a real broker and a real InfluxDB: bad input, storage."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from fleet.config import FleetConfig
from fleet.devstack.influxdb import InfluxDB
from fleet.devstack.services import Mosquitto
from fleet.ingest.service import IngestService
from fleet.security.pki import Role
from fleet.storage.influx import InfluxClient
from fleet.storage.lineprotocol import Point
from fleet.storage.points import ns
from vigie_core.contract.codec import MAX_PAYLOAD_BYTES, encode
from vigie_core.contract.data import Reading, ReadingKind, StoredAck
from vigie_core.contract.topics import Topics

from .conftest import in_process_settings, mqtt_client, wait_until

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def publish(client: mqtt.Client, topic: str, payload: bytes) -> None:
    client.publish(topic, payload, qos=1).wait_for_publish(10)


def reading(agent_id: str, seq: int, systolic: float = 120.0) -> Reading:
    return Reading(
        agent_id=agent_id,
        seq=seq,
        measured_at=AT + timedelta(seconds=seq),
        kind=ReadingKind.BLOOD_PRESSURE,
        device="bp1",
        values={"systolic": systolic},
        units={"systolic": "mm[Hg]"},
    )


def test_bad_messages_are_dead_lettered_and_good_ones_behind_them_are_stored(
    service: IngestService,
    publisher: mqtt.Client,
    influx: InfluxClient,
    mqtt_prefix: str,
) -> None:
    topics = Topics(mqtt_prefix)
    good = encode(reading("booth-1", 1))
    body = json.loads(good)
    topic = f"{mqtt_prefix}/v1/booth-1/reading/blood_pressure"
    bad = {
        "not_json": (topic, b"\x00\xff not json"),
        "oversized": (topic, b"{" + b" " * MAX_PAYLOAD_BYTES + b"}"),
        "unknown_schema_version": (topic, json.dumps({**body, "schema_version": 2}).encode()),
        "invalid_payload": (topic, json.dumps({**body, "seq": "x"}).encode()),
        "agent_mismatch": (f"{mqtt_prefix}/v1/booth-2/reading/blood_pressure", good),
        "bad_topic": (f"{mqtt_prefix}/v1/booth-1/reading/nonsense", good),
    }
    # Many bad messages first: a consumer that leaked a slot per bad message would
    # stop before it reached the good one.
    for _ in range(30):
        for bad_topic, payload in bad.values():
            publish(publisher, bad_topic, payload)
    publish(publisher, topics.topic_for(reading("booth-1", 2)), encode(reading("booth-1", 2)))

    wait_until(lambda: influx.query('SELECT seq FROM "blood_pressure"'), 30, "the good reading")
    letters = wait_until(
        lambda: (
            (s := influx.query('SELECT count("size") FROM "dead_letter" GROUP BY reason'))
            and sum(item.values[0][1] for item in s) >= 30 * len(bad)
            and s
        ),
        30,
        "every dead letter",
    )
    assert {item.tags["reason"]: item.values[0][1] for item in letters} == dict.fromkeys(bad, 30)
    assert dict(service.stats.rejected) == dict.fromkeys(bad, 30)
    (stored,) = influx.query('SELECT seq, systolic FROM "blood_pressure"')
    assert [row["seq"] for row in stored.rows()] == [2]
    (sample,) = influx.query(
        "SELECT topic, detail, payload FROM \"dead_letter\" WHERE reason = 'agent_mismatch' LIMIT 1"
    )
    row = sample.rows()[0]
    assert row["topic"] == f"{mqtt_prefix}/v1/booth-2/reading/blood_pressure"
    assert "agent_id" in row["detail"]
    assert json.loads(row["payload"]) == body


def test_a_redelivered_message_overwrites_itself(
    service: IngestService,
    publisher: mqtt.Client,
    influx: InfluxClient,
    mqtt_prefix: str,
) -> None:
    message = reading("booth-1", 5)
    for _ in range(3):
        publish(publisher, Topics(mqtt_prefix).topic_for(message), encode(message))
    wait_until(lambda: service.stats.acknowledged >= 3, 30, "three deliveries")
    (stored,) = influx.query('SELECT * FROM "blood_pressure"')
    rows = stored.rows()
    assert len(rows) == 1
    assert rows[0]["time"] == ns(message.measured_at) + 5  # the seq below the µs
    assert rows[0]["seq"] == 5


def test_two_readings_within_one_second_of_a_whole_second_clock_are_both_stored(
    service: IngestService,
    publisher: mqtt.Client,
    influx: InfluxClient,
    mqtt_prefix: str,
) -> None:
    # A cuff's own clock has whole seconds: two measurements in that second share it.
    first, second = (
        reading("booth-1", seq, systolic).model_copy(update={"measured_at": AT})
        for seq, systolic in ((11, 121.0), (12, 132.0))
    )
    for message in (first, second, first):  # the first one sent twice, too
        publish(publisher, Topics(mqtt_prefix).topic_for(message), encode(message))
    wait_until(lambda: service.stats.acknowledged >= 3, 30, "three deliveries")
    (stored,) = influx.query('SELECT systolic, seq FROM "blood_pressure"')
    rows = stored.rows()
    assert sorted((row["seq"], row["systolic"]) for row in rows) == [(11, 121.0), (12, 132.0)]
    # Both keep the device's time, to the microsecond.
    assert {row["time"] // 1000 for row in rows} == {ns(AT) // 1000}


def test_a_point_influxdb_refuses_is_set_aside_without_sinking_its_batch(
    service: IngestService,
    publisher: mqtt.Client,
    influx: InfluxClient,
    mqtt_prefix: str,
) -> None:
    # A string already stored in 'systolic' makes every float there a type conflict,
    # which InfluxDB refuses for the one point: the rest of the batch must still land.
    # Field types are per shard (a week by default): conflict in the readings' own shard.
    influx.write([Point("blood_pressure", {"systolic": "text"}, ns(AT), {"agent_id": "other"})])
    topics = Topics(mqtt_prefix)
    conflicting = reading("booth-1", 1)
    fine = [
        Reading(
            agent_id="booth-1",
            seq=seq,
            measured_at=AT + timedelta(seconds=seq),
            kind=ReadingKind.BODY_WEIGHT,
            device="scale",
            values={"weight": 70.0 + seq},
        )
        for seq in range(2, 12)
    ]
    for message in [conflicting, *fine]:
        publish(publisher, topics.topic_for(message), encode(message))
    stored = wait_until(
        lambda: (
            (s := influx.query('SELECT seq FROM "body_weight"')) and len(s[0].values) == 10 and s
        ),
        30,
        "the ten good readings",
    )
    assert sorted(row["seq"] for row in stored[0].rows()) == list(range(2, 12))
    wait_until(
        lambda: influx.query("SELECT * FROM \"dead_letter\" WHERE reason = 'storage_refused'"),
        30,
        "the refused point set aside",
    )
    assert service.stats.rejected["storage_refused"] == 1


HOSTILE = [
    "a,b=c d",
    'quote " and \\ backslash',
    "new\nline",
    "ünïcødé ☂",
    "trailing\\",
    "=",
    ",",
    " ",
    '"',
    "tab\tx",
    "back\\slash",
    "'; DROP DATABASE x; --",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_string_fields_are_stored_exactly_and_never_split_a_point(
    influx: InfluxClient,
    text: str,
) -> None:
    influx.write([Point("m", {"s": text, "n": 1}, 42, {"t": "x"})])
    (series,) = influx.query('SELECT * FROM "m"')
    assert series.rows() == [{"time": 42, "n": 1, "s": text, "t": "x"}]


@pytest.mark.parametrize(
    "text", [t for t in HOSTILE if "\n" not in t and "\\" not in t] + ["back\\slash", "a\\b c"]
)
def test_hostile_tag_values_are_stored_exactly(influx: InfluxClient, text: str) -> None:
    influx.write([Point("m", {"n": 1}, 42, {"t": text})])
    (series,) = influx.query('SELECT * FROM "m"')
    assert series.rows() == [{"time": 42, "n": 1, "t": text}]


def test_nothing_is_acknowledged_while_influxdb_is_down_and_all_arrives_after(
    mosquitto: Mosquitto,
    publisher: mqtt.Client,
    tmp_path: Path,
    mqtt_prefix: str,
) -> None:
    """A fleet that stops while InfluxDB is away leaves the messages with the broker;
    the next run stores them all."""
    database = InfluxDB(workdir=tmp_path / "influxdb")
    database.start()
    config = FleetConfig.model_validate(
        {
            "schema_version": 1,
            "mqtt": {
                "port": mosquitto.port,
                "tls": mosquitto.credentials(f"fleet-{mqtt_prefix}", Role.SERVICE).as_config(),
                "topic_prefix": mqtt_prefix,
                "share_group": mqtt_prefix,
            },
            "influxdb": {"url": database.url, "database": "vigie"},
            "ingest": {"batch_max_delay_s": 0.05},
        }
    )
    with database.client("vigie") as influx:
        influx.create_database()
        first = IngestService(config, influx)
        first.start()
        assert first.subscribed.wait(10)
        database.stop()
        topics = Topics(mqtt_prefix)
        for seq in range(1, 21):
            publish(
                publisher,
                topics.topic_for(reading("booth-1", seq)),
                encode(reading("booth-1", seq)),
            )
        wait_until(lambda: first.stats.received >= 1, 10, "the first message")
        first.stop(timeout_s=15)
        assert first.stats.acknowledged == 0

        database.start()
        second = IngestService(config, influx)  # same client id: same broker session
        second.start()
        try:
            stored = wait_until(
                lambda: (
                    (s := influx.query('SELECT seq FROM "blood_pressure"'))
                    and len(s[0].values) == 20
                    and s
                ),
                60,
                "all twenty readings",
            )
        finally:
            second.stop()
            database.stop()
    assert sorted(row["seq"] for row in stored[0].rows()) == list(range(1, 21))


def test_with_a_spill_the_fleet_confirms_during_an_outage_and_stores_everything_after(
    mosquitto: Mosquitto,
    publisher: mqtt.Client,
    tmp_path: Path,
    mqtt_prefix: str,
) -> None:
    database = InfluxDB(workdir=tmp_path / "influxdb")
    database.start()
    config = FleetConfig.model_validate(
        {
            "schema_version": 1,
            "mqtt": {
                "port": mosquitto.port,
                "tls": mosquitto.credentials(f"fleet-{mqtt_prefix}", Role.SERVICE).as_config(),
                "topic_prefix": mqtt_prefix,
                "share_group": mqtt_prefix,
            },
            "influxdb": {"url": database.url, "database": "vigie", "timeout_s": 2},
            "ingest": {"batch_max_delay_s": 0.05, "spill_dir": str(tmp_path / "spill")},
        }
    )
    confirmed: list[int] = []
    listener = mqtt_client(mosquitto, f"listener-{mqtt_prefix}")
    listener.on_message = lambda _c, _u, m: confirmed.extend(
        StoredAck.model_validate_json(m.payload).seqs()
    )
    listener.connect(mosquitto.host, mosquitto.port or 0)
    listener.subscribe(Topics(mqtt_prefix).ack("booth-1"), qos=1)
    listener.loop_start()
    with database.client("vigie") as influx:
        influx.create_database()
        service = IngestService(config, influx)
        service.start()
        assert service.subscribed.wait(10)
        try:
            database.stop()
            topics = Topics(mqtt_prefix)
            for seq in range(1, 31):
                publish(
                    publisher,
                    topics.topic_for(reading("booth-1", seq)),
                    encode(reading("booth-1", seq)),
                )
            wait_until(
                lambda: sorted(set(confirmed)) == list(range(1, 31)),
                30,
                "confirmations while InfluxDB is down",
            )
            assert service.stats.acknowledged == 30
            assert service.stats.spilled_points == 30
            database.start()
            stored = wait_until(
                lambda: (
                    (s := influx.query('SELECT seq FROM "blood_pressure"'))
                    and len(s[0].values) == 30
                    and s
                ),
                60,
                "the spill drained into InfluxDB",
            )
        finally:
            service.stop()
            database.stop()
            listener.disconnect()
            listener.loop_stop()
    assert sorted(row["seq"] for row in stored[0].rows()) == list(range(1, 31))


def test_every_message_of_a_batch_is_acknowledged_in_one_write_and_none_comes_back(
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    influx: InfluxClient,
    publisher: mqtt.Client,
    mqtt_prefix: str,
) -> None:
    """The PUBACKs of a stored batch go as one buffer (``BrokerLink.ack_all``): if one
    were malformed the broker would drop the connection, and one left out would come
    back to the same session after a restart."""
    config = in_process_settings(mosquitto, influxdb, influx.database, mqtt_prefix)
    first = IngestService(config, influx)
    first.start()
    try:
        assert first.subscribed.wait(10)
        messages = [reading("booth-1", seq) for seq in range(1, 301)]
        for message in messages:
            publisher.publish(Topics(mqtt_prefix).topic_for(message), encode(message), qos=1)
        wait_until(lambda: first.stats.acknowledged >= 300, 30, "300 acknowledged")
    finally:
        first.stop()
    assert first.link.client.is_connected() is False

    # The same instance again, on the same persistent session: nothing is redelivered.
    again = IngestService(config, influx)
    again.start()
    try:
        assert again.subscribed.wait(10)
        time.sleep(2.0)
        assert again.stats.received == 0
    finally:
        again.stop()
    (stored,) = influx.query('SELECT count("seq") FROM "blood_pressure"')
    assert stored.rows()[0]["count"] == 300


def test_a_full_in_flight_window_is_written_at_once_not_at_the_batch_deadline(
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    influx: InfluxClient,
    publisher: mqtt.Client,
    mqtt_prefix: str,
) -> None:
    """The broker sends no more than its in-flight window (``max_inflight_messages``,
    1000 here) until the fleet acknowledges: a batch waiting for more points than that
    would wait for its deadline every time."""
    config = in_process_settings(
        mosquitto,
        influxdb,
        influx.database,
        mqtt_prefix,
        ingest={"batch_max_points": 100_000, "batch_max_delay_s": 10, "broker_max_inflight": 1000},
    )
    consumer = IngestService(config, influx)
    consumer.start()
    try:
        assert consumer.subscribed.wait(10)
        started = time.monotonic()
        # 2,500 readings: two full windows and a half one (which waits for the deadline).
        for seq in range(1, 2501):
            message = reading("booth-1", seq)
            publisher.publish(Topics(mqtt_prefix).topic_for(message), encode(message), qos=1)
        wait_until(lambda: consumer.stats.acknowledged >= 2000, 9, "two windows written")
        assert time.monotonic() - started < 10  # before the first batch's deadline
        wait_until(lambda: consumer.stats.acknowledged >= 2500, 30, "the rest, at its deadline")
    finally:
        consumer.stop()
