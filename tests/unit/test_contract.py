"""The wire contract: topics, payload validation, rejection reasons, opening hours."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from vigie_core.contract.codec import MAX_PAYLOAD_BYTES, batch_payload, decode, encode
from vigie_core.contract.data import (
    Batch,
    Event,
    Reading,
    ReadingKind,
    Severity,
    StoredAck,
    seq_ranges,
)
from vigie_core.contract.presence import AgentState, OpeningHours
from vigie_core.contract.topics import Channel, Topics
from vigie_core.errors import ContractError, RejectReason

T = Topics("vigie")
AT = datetime(2026, 11, 24, 9, 30, 0, 123456, tzinfo=UTC)


def reading(**overrides: object) -> Reading:
    fields: dict[str, object] = {
        "agent_id": "booth-01",
        "seq": 7,
        "measured_at": AT,
        "kind": ReadingKind.BLOOD_PRESSURE,
        "device": "bp1",
        "values": {"systolic": 128.0, "diastolic": 81.0, "pulse_rate": 72.0},
        "units": {"systolic": "mm[Hg]", "diastolic": "mm[Hg]", "pulse_rate": "/min"},
    }
    fields.update(overrides)
    return Reading.model_validate(fields)


def test_topics_put_the_agent_id_at_a_fixed_level() -> None:
    assert T.reading("booth-01", ReadingKind.BODY_WEIGHT) == "vigie/v1/booth-01/reading/body_weight"
    assert T.state("booth-01") == "vigie/v1/booth-01/state"
    assert T.health("bus-1") == "vigie/v1/bus-1/health"
    assert T.batch("bus-1") == "vigie/v1/bus-1/batch"
    assert T.ack("bus-1") == "vigie/v1/bus-1/ack"
    assert T.from_agents() == [
        "vigie/v1/+/state",
        "vigie/v1/+/reading/+",
        "vigie/v1/+/health",
        "vigie/v1/+/event",
        "vigie/v1/+/batch",
    ]
    grants = T.agent_grants("bus-1")
    # Everything an agent publishes is under its own branch, and it may read only its
    # acknowledgements and desired state: never another agent's, never write its acks.
    assert all(topic.startswith("vigie/v1/bus-1/") for _, topic in grants)
    writes = {topic for access, topic in grants if access == "write"}
    # Its data (what the fleet subscribes to), and its reported configuration.
    assert {w.replace("/bus-1/", "/+/") for w in writes} == {
        *T.from_agents(),
        "vigie/v1/+/reported/#",
    }
    assert T.reported_config("bus-1") in {"vigie/v1/bus-1/reported/config"}
    assert T.desired_config("bus-1") == "vigie/v1/bus-1/desired/config"
    assert {topic for access, topic in grants if access == "read"} == {
        "vigie/v1/bus-1/ack",
        "vigie/v1/bus-1/desired/#",
    }


@pytest.mark.parametrize("agent_id", ["a/b", "a+", "#", "A", "", "a b", "x\x00", "é"])
def test_agent_ids_that_could_escape_their_branch_are_refused(agent_id: str) -> None:
    with pytest.raises(ValueError, match="agent id"):
        T.state(agent_id)
    with pytest.raises(ValueError, match="agent_id"):
        reading(agent_id=agent_id)


def test_a_reading_round_trips_through_the_wire() -> None:
    message = reading()
    parsed, decoded = decode(T, T.topic_for(message), encode(message))
    assert decoded == message
    assert parsed.channel is Channel.READING
    assert parsed.kind is ReadingKind.BLOOD_PRESSURE
    assert json.loads(encode(message))["measured_at"] == "2026-11-24T09:30:00.123456Z"


def test_measurement_time_is_normalised_to_utc() -> None:
    paris = datetime.fromisoformat("2026-11-24T10:30:00+01:00")
    assert reading(measured_at=paris).measured_at == datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        reading(measured_at=datetime(2026, 1, 1))


def test_an_invalid_value_travels_as_null_with_its_reason() -> None:
    message = reading(
        values={"systolic": None, "pulse_rate": 70.0},
        units={"pulse_rate": "/min"},
        invalid={"systolic": "cuff_error"},
    )
    assert decode(T, T.topic_for(message), encode(message))[1] == message
    with pytest.raises(ValueError, match="without a reason"):
        reading(values={"systolic": None}, units={})
    with pytest.raises(ValueError, match="finite number"):
        reading(values={"systolic": float("nan")}, units={})


def test_fields_and_units_must_belong_to_the_kind() -> None:
    with pytest.raises(ValueError, match="not a field"):
        reading(values={"weight": 80.0}, units={})
    with pytest.raises(ValueError, match="not a unit"):
        reading(values={"systolic": 120.0}, units={"systolic": "kg"})


def _reject(topic: str, payload: bytes) -> RejectReason:
    with pytest.raises(ContractError) as info:
        decode(T, topic, payload)
    return info.value.reason


def test_each_kind_of_bad_message_has_its_reason() -> None:
    good = reading()
    topic = T.topic_for(good)
    body = json.loads(encode(good))
    assert _reject(topic, b"x" * (MAX_PAYLOAD_BYTES + 1)) is RejectReason.OVERSIZED
    assert _reject(topic, b"{not json") is RejectReason.NOT_JSON
    assert _reject(topic, b"\xff\xfe") is RejectReason.NOT_JSON
    assert _reject(topic, b"[1, 2]") is RejectReason.INVALID_PAYLOAD
    assert _reject(topic, json.dumps({**body, "schema_version": 9}).encode()) is (
        RejectReason.UNKNOWN_SCHEMA_VERSION
    )
    assert _reject(topic, json.dumps({**body, "seq": -1}).encode()) is RejectReason.INVALID_PAYLOAD
    assert _reject(topic, json.dumps({**body, "extra": 1}).encode()) is (
        RejectReason.INVALID_PAYLOAD
    )
    other = "vigie/v1/booth-02/reading/blood_pressure"
    assert _reject(other, encode(good)) is RejectReason.AGENT_MISMATCH
    wrong_kind = "vigie/v1/booth-01/reading/body_weight"
    assert _reject(wrong_kind, encode(good)) is RejectReason.INVALID_PAYLOAD
    for bad_topic in (
        "vigie/v2/booth-01/health",
        "other/v1/booth-01/health",
        "vigie/v1/booth-01/nope",
        "vigie/v1/booth-01/reading/x",
        "vigie/v1/booth-01/health/extra",
        "vigie/v1/BAD/health",
        "vigie/v1",
    ):
        assert _reject(bad_topic, encode(good)) is RejectReason.BAD_TOPIC, bad_topic


def test_each_documented_reason_is_the_one_its_message_gets() -> None:
    # docs/protocol.md, "Limits and rejections": the row each of these falls under.
    good = reading()
    topic = T.topic_for(good)
    body = json.loads(encode(good))
    without_version = {key: value for key, value in body.items() if key != "schema_version"}
    assert _reject(topic, json.dumps(without_version).encode()) is (
        RejectReason.UNKNOWN_SCHEMA_VERSION
    )
    for version in (1.0, "1", True, None):
        assert _reject(topic, json.dumps({**body, "schema_version": version}).encode()) is (
            RejectReason.UNKNOWN_SCHEMA_VERSION
        ), version
    # NaN and Infinity are Python's, not JSON's.
    nan = encode(good).replace(b'"systolic":128.0', b'"systolic":NaN')
    assert b"NaN" in nan
    assert _reject(topic, nan) is RejectReason.NOT_JSON
    # Another agent's message slipped into a batch: a mismatch, like a foreign agent_id.
    foreign = reading(agent_id="booth-02")
    batch = json.dumps(
        {
            "schema_version": 1,
            "agent_id": "booth-01",
            "historical": False,
            "messages": [json.loads(encode(good)), json.loads(encode(foreign))],
        }
    ).encode()
    assert _reject(T.batch("booth-01"), batch) is RejectReason.AGENT_MISMATCH
    inner = json.loads(batch)
    del inner["messages"][0]["schema_version"]
    inner["messages"].pop()
    assert _reject(T.batch("booth-01"), json.dumps(inner).encode()) is (
        RejectReason.UNKNOWN_SCHEMA_VERSION
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("seq", 2**63), ("seq", 10**30), ("measured_at", "0001-01-01T00:00:00+14:00")],
)
def test_numbers_and_times_beyond_what_can_be_stored_are_refused(field: str, value: object) -> None:
    body = json.loads(encode(reading()))
    topic = "vigie/v1/booth-01/reading/blood_pressure"
    assert _reject(topic, json.dumps({**body, field: value}).encode()) is (
        RejectReason.INVALID_PAYLOAD
    )
    largest = json.dumps({**body, "seq": 2**63 - 1}).encode()
    assert decode(T, topic, largest)[1].seq == 2**63 - 1  # type: ignore[union-attr]


def test_numbers_in_strings_and_other_encodings_are_refused() -> None:
    body = json.loads(encode(reading()))
    topic = "vigie/v1/booth-01/reading/blood_pressure"
    for field, value in (("seq", "7"), ("seq", 7.0), ("seq", True)):
        assert _reject(topic, json.dumps({**body, field: value}).encode()) is (
            RejectReason.INVALID_PAYLOAD
        ), (field, value)
    body["values"]["systolic"] = "128"
    assert _reject(topic, json.dumps(body).encode()) is RejectReason.INVALID_PAYLOAD
    assert _reject(topic, encode(reading()).decode().encode("utf-16")) is RejectReason.NOT_JSON
    assert _reject(topic, json.dumps({**body, "schema_version": True}).encode()) is (
        RejectReason.UNKNOWN_SCHEMA_VERSION
    )


def test_invalid_payload_detail_names_the_field() -> None:
    body = json.loads(encode(reading()))
    body["values"]["systolic"] = "high"
    with pytest.raises(ContractError, match=r"values\.systolic"):
        decode(T, "vigie/v1/booth-01/reading/blood_pressure", json.dumps(body).encode())


def test_state_messages_need_a_birth_when_online() -> None:
    will = AgentState(agent_id="booth-01", online=False, session=3)
    assert decode(T, T.state("booth-01"), encode(will))[1] == will
    with pytest.raises(ValueError, match="birth"):
        AgentState(agent_id="booth-01", online=True, session=3)


def test_events_round_trip() -> None:
    event = Event(
        agent_id="bus-1",
        seq=1,
        measured_at=AT,
        name="agent_started",
        severity=Severity.INFO,
        detail="version 0.1.0",
    )
    assert decode(T, T.topic_for(event), encode(event))[1] == event


HOURS = OpeningHours(
    timezone="Europe/Paris", week={"mon": ["08:30-12:00", "13:30-16:45"], "sat": ["09:00-24:00"]}
)


@pytest.mark.parametrize(
    ("utc", "is_open"),
    [
        ("2026-11-23T07:29:00", False),  # Monday 08:29 in Paris (UTC+1 in winter)
        ("2026-11-23T07:30:00", True),  # 08:30 opens
        ("2026-11-23T11:00:00", False),  # lunch
        ("2026-11-23T15:44:59", True),
        ("2026-11-23T15:45:00", False),  # 16:45 closes
        ("2026-11-24T09:00:00", False),  # Tuesday: closed all day
        ("2026-11-28T22:59:00", True),  # Saturday 23:59 local
        ("2026-07-06T06:30:00", True),  # a Monday in summer: UTC+2, 08:30 local
        ("2026-07-06T06:29:00", False),
    ],
)
def test_opening_hours_follow_the_site_time_zone(utc: str, is_open: bool) -> None:
    assert HOURS.is_open(datetime.fromisoformat(utc).replace(tzinfo=UTC)) is is_open


@pytest.mark.parametrize("bad", ["8:30-12:00", "12:00-08:00", "10:00-10:00", "25:00-26:00", "x"])
def test_malformed_opening_hours_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="mon"):
        OpeningHours(week={"mon": [bad]})


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        OpeningHours(timezone="Mars/Olympus")


def test_a_batch_carries_messages_of_every_kind_from_one_agent() -> None:
    event = Event(
        agent_id="booth-01", seq=8, measured_at=AT, name="agent_started", severity=Severity.INFO
    )
    batch = Batch(agent_id="booth-01", historical=True, messages=[reading(), event])
    parsed, decoded = decode(T, T.batch("booth-01"), encode(batch))
    assert parsed.channel is Channel.BATCH
    assert decoded == batch
    with pytest.raises(ValueError, match="batch's agent"):
        Batch(agent_id="booth-02", messages=[reading()])
    with pytest.raises(ValueError, match="at least 1"):
        Batch(agent_id="booth-01", messages=[])
    body = json.loads(encode(batch))
    body["messages"][0]["type"] = "weather"
    assert _reject(T.batch("booth-01"), json.dumps(body).encode()) is RejectReason.INVALID_PAYLOAD


@pytest.mark.parametrize("historical", [True, False])
def test_a_batch_spliced_from_stored_payloads_is_the_encoded_batch(historical: bool) -> None:
    event = Event(
        agent_id="booth-01", seq=8, measured_at=AT, name="agent_started", severity=Severity.INFO
    )
    messages = [reading(), event]
    spliced = batch_payload("booth-01", historical, [encode(message) for message in messages])
    expected = Batch(agent_id="booth-01", historical=historical, messages=messages)
    assert spliced == encode(expected)
    assert decode(T, T.batch("booth-01"), spliced)[1] == expected


def test_seq_ranges_merge_and_stored_acks_expand_them() -> None:
    assert seq_ranges([7, 1, 2, 3, 3, 9, 8]) == [(1, 3), (7, 9)]
    assert seq_ranges([]) == []
    ack = StoredAck(agent_id="booth-01", ranges=seq_ranges([5, 1, 2]))
    assert ack.seqs() == [1, 2, 5]
    assert decode(T, T.ack("booth-01"), encode(ack))[1] == ack
    with pytest.raises(ValueError, match="first <= last"):
        StoredAck(agent_id="booth-01", ranges=[(5, 4)])
