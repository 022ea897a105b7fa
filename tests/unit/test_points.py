"""Contract messages become exactly these points."""

from __future__ import annotations

import calendar
import json
from datetime import UTC, datetime, timedelta

import pytest

from fleet.errors import LineProtocolError
from fleet.ingest import decoding
from fleet.ingest.decoding import UNSTORABLE, UniqueClock, points_for
from fleet.storage.lineprotocol import measurement_of
from fleet.storage.points import SEQ_NS_SPREAD, message_points, ns
from vigie_core.contract.codec import encode
from vigie_core.contract.data import (
    Batch,
    DeviceSource,
    DeviceStatus,
    DeviceStatusCode,
    HealthReport,
    Reading,
    ReadingKind,
)
from vigie_core.contract.identifiers import AgentKind
from vigie_core.contract.presence import AgentState, Birth, DeviceInfo, OpeningHours
from vigie_core.contract.topics import Topics
from vigie_core.errors import RejectReason

AT = datetime(2026, 11, 24, 9, 30, 0, 123456, tzinfo=UTC)
AT_NS = calendar.timegm((2026, 11, 24, 9, 30, 0)) * 10**9 + 123_456_000
RECEIVED = AT_NS + 10**9  # one second after the measurement


def test_ns_is_exact() -> None:
    assert ns(AT) == AT_NS
    assert ns(datetime(1970, 1, 1, tzinfo=UTC)) == 0


def test_reading_point_uses_the_measurement_time_and_stable_tags() -> None:
    message = Reading(
        agent_id="booth-01",
        seq=42,
        measured_at=AT,
        kind=ReadingKind.PULSE_OXIMETRY,
        device="ox1",
        values={"spo2": None, "pulse_rate": 71.0},
        units={"pulse_rate": "/min"},
        invalid={"spo2": "no_finger"},
    )
    (point,) = message_points(message, received_ns=RECEIVED)
    assert point.measurement == "pulse_oximetry"
    # The measured time, exact to the microsecond, plus the seq below it (unique).
    assert point.time_ns == AT_NS + 42
    assert dict(point.tags) == {"agent_id": "booth-01", "device": "ox1"}
    assert dict(point.fields) == {
        "historical": False,
        "delay_s": 1.0,
        "pulse_rate": 71.0,
        "seq": 42,
        "units": "pulse_rate=/min",
        "invalid": "spo2=no_finger",
    }


def test_a_real_instruments_reading_carries_its_source_clock_and_quality() -> None:
    device_time = AT - timedelta(seconds=95)
    message = Reading(
        agent_id="booth-01",
        seq=43,
        measured_at=device_time,
        kind=ReadingKind.BODY_TEMPERATURE,
        device="thermo",
        values={"temperature": 37.6},
        units={"temperature": "Cel"},
        received_at=AT,
        device_time=device_time,
        source=DeviceSource(
            profile="sig_thermometer", address="AA:BB:CC:DD:EE:FF", serial_number="T-1"
        ),
        quality=["measurement_ongoing", "body_movement"],
        context={"temperature_type": "tympanum"},
    )
    (point,) = message_points(message, received_ns=RECEIVED)
    assert point.time_ns == ns(device_time) + message.seq % SEQ_NS_SPREAD
    fields = dict(point.fields)
    assert fields["device_clock_offset_s"] == 95.0
    assert (fields["profile"], fields["address"], fields["serial_number"]) == (
        "sig_thermometer",
        "AA:BB:CC:DD:EE:FF",
        "T-1",
    )
    assert fields["quality"] == "body_movement;measurement_ongoing"
    assert fields["context"] == "temperature_type=tympanum"
    assert dict(point.tags) == {"agent_id": "booth-01", "device": "thermo"}


def test_health_gives_one_agent_point_and_one_per_device() -> None:
    message = HealthReport(
        agent_id="bus-1",
        seq=3,
        measured_at=AT,
        agent_version="0.1.0",
        uptime_s=12.5,
        cpu_percent=3.0,
        memory_percent=40.0,
        disk_percent=10.0,
        devices=[
            DeviceStatus(
                device="gps",
                kind=ReadingKind.POSITION,
                status=DeviceStatusCode.OK,
                last_reading_at=AT - timedelta(seconds=4),
            ),
            DeviceStatus(
                device="bp1",
                kind=ReadingKind.BLOOD_PRESSURE,
                status=DeviceStatusCode.DISCONNECTED,
                battery_percent=40,
                calibration_due_days=-3,
                detail="transfer complete; waiting for the next measurement",
            ),
        ],
    )
    agent, gps, bp = message_points(message, received_ns=RECEIVED)
    assert agent.measurement == "agent_health"
    assert agent.fields["devices_ok"] == 1
    assert agent.fields["devices_total"] == 2
    assert agent.time_ns == gps.time_ns == bp.time_ns == AT_NS + message.seq
    assert dict(gps.tags) == {"agent_id": "bus-1", "device": "gps", "kind": "position"}
    assert gps.fields == {"status": "ok", "ok": 1, "last_reading_age_s": 4.0}
    assert bp.fields == {
        "status": "disconnected",
        "ok": 0,
        "battery_percent": 40,
        "calibration_due_days": -3,
        "detail": "transfer complete; waiting for the next measurement",
    }


def test_presence_carries_the_birth_and_is_timed_by_reception() -> None:
    hours = OpeningHours.always()
    state = AgentState(
        agent_id="booth-01",
        online=True,
        session=4,
        since=AT,
        birth=Birth(
            agent_version="0.1.0",
            site_id="mairie",
            site_name="Mairie, Le Mans",
            kind=AgentKind.BOOTH,
            opening_hours=hours,
            devices=[DeviceInfo(id="bp1", kind=ReadingKind.BLOOD_PRESSURE)],
        ),
    )
    (point,) = message_points(state, received_ns=99)
    assert point.time_ns == 99
    assert point.fields["online"] is True
    assert point.fields["session"] == 4
    assert json.loads(str(point.fields["devices"])) == [
        {"id": "bp1", "kind": "blood_pressure", "model": "simulated"}
    ]
    assert OpeningHours.model_validate_json(str(point.fields["opening_hours"])) == hours


def test_a_bad_message_becomes_a_dead_letter() -> None:
    decoded = points_for(
        Topics("vigie"), "vigie/v1/booth-01/health", b"\x00garbage", UniqueClock(lambda: 5)
    )
    assert decoded.refused == ((RejectReason.NOT_JSON.value, decoded.refused[0][1]),)
    assert decoded.agent_id is None  # nothing to confirm to anyone
    (letter,) = decoded.lines
    assert letter.startswith(b"dead_letter,reason=not_json ")
    assert b'topic="vigie/v1/booth-01/health"' in letter
    assert b"size=8i" in letter
    assert letter.endswith(b" 5\n")


def weight(seq: int, at: datetime = AT) -> Reading:
    return Reading(
        agent_id="b",
        seq=seq,
        measured_at=at,
        kind=ReadingKind.BODY_WEIGHT,
        device="s",
        values={"weight": 70.0 + seq},
    )


def test_a_good_message_names_its_agent_and_sequence_number_for_confirmation() -> None:
    decoded = points_for(
        Topics("vigie"), "vigie/v1/b/reading/body_weight", encode(weight(1)), UniqueClock(lambda: 5)
    )
    assert decoded.refused == ()
    assert (decoded.agent_id, decoded.seqs) == ("b", (1,))
    assert [measurement_of(line) for line in decoded.lines] == ["body_weight"]


def test_a_batch_becomes_the_points_of_its_messages_marked_historical() -> None:
    batch = Batch(agent_id="b", historical=True, messages=[weight(1), weight(2), weight(3)])
    decoded = points_for(
        Topics("vigie"), "vigie/v1/b/batch", encode(batch), UniqueClock(lambda: RECEIVED)
    )
    assert decoded.seqs == (1, 2, 3)
    assert [b"weight=%.1f" % (70 + n) in line for n, line in enumerate(decoded.lines, 1)] == [
        True
    ] * 3
    assert all(b"historical=true" in line for line in decoded.lines)
    assert [int(line.rsplit(b" ", 1)[1]) for line in decoded.lines] == [
        AT_NS + n for n in (1, 2, 3)
    ]


def test_a_wrong_clock_gets_the_receive_time_flagged_never_1970() -> None:
    received = AT_NS + 10**9
    for wrong in (datetime(1970, 1, 1, tzinfo=UTC), AT + timedelta(hours=1)):
        (point,) = message_points(weight(1, wrong), received_ns=received)
        assert point.time_ns == received
        assert point.fields["clock_suspect"] is True
        assert point.fields["reported_time_ns"] == ns(wrong)
    (fine,) = message_points(weight(1, AT + timedelta(minutes=4)), received_ns=received)
    assert fine.time_ns == ns(AT + timedelta(minutes=4)) + 1
    assert "clock_suspect" not in fine.fields


def test_unique_clock_never_repeats_and_reserves_runs() -> None:
    clock = UniqueClock(now_ns=lambda: 1000)
    assert [clock(), clock(), clock(3), clock()] == [1000, 1001, 1002, 1005]


def test_readings_are_shown_with_units_and_invalid_values_as_a_dash() -> None:
    from fleet.cli.render import format_values

    row = {
        "kind": "blood_pressure",
        "systolic": 128.0,
        "pulse_rate": 72.0,
        "units": "pulse_rate=/min;systolic=mm[Hg]",
        "invalid": "diastolic=cuff_error",
    }
    assert format_values(row) == "systolic 128 mmHg  diastolic - (cuff_error)  pulse_rate 72 /min"


@pytest.mark.parametrize("failure", [RuntimeError("a bug"), LineProtocolError("no fields")])
def test_a_valid_message_that_cannot_become_points_is_set_aside_and_confirmed(
    failure: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> list[object]:
        raise failure

    monkeypatch.setattr(decoding, "message_points", broken)
    decoded = points_for(
        Topics("vigie"), "vigie/v1/b/reading/body_weight", encode(weight(4)), UniqueClock()
    )
    ((reason, detail),) = decoded.refused
    assert reason == UNSTORABLE
    assert str(failure) in detail
    assert [measurement_of(line) for line in decoded.lines] == ["dead_letter"]
    assert b"reason=unstorable" in decoded.lines[0]
    # Kept as a dead letter, so confirmed: the agent must not send it again forever.
    assert (decoded.agent_id, decoded.seqs) == ("b", (4,))


def test_a_batch_with_bad_messages_stores_the_good_ones_and_sets_each_bad_one_aside() -> None:
    good = [json.loads(encode(weight(seq))) for seq in (1, 2, 5)]
    bad = [
        {**json.loads(encode(weight(3))), "measured_at": "0001-01-01T00:00:00+14:00"},
        {**json.loads(encode(weight(4))), "agent_id": "someone-else"},
        {**json.loads(encode(weight(6))), "seq": 2**64},
        "not even an object",
    ]
    body = {"schema_version": 1, "agent_id": "b", "historical": True}
    payload = json.dumps(
        {**body, "messages": [good[0], bad[0], good[1], bad[1], good[2], bad[2], bad[3]]}
    )
    decoded = points_for(Topics("vigie"), "vigie/v1/b/batch", payload.encode(), UniqueClock())
    stored = [line for line in decoded.lines if measurement_of(line) == "body_weight"]
    assert [b"seq=%di" % seq in line for seq, line in zip((1, 2, 5), stored, strict=True)] == [
        True
    ] * 3
    assert all(b"historical=true" in line for line in stored)
    assert [reason for reason, _ in decoded.refused] == [
        "invalid_payload",
        "agent_mismatch",
        "invalid_payload",
        "invalid_payload",
    ]
    assert len(decoded.lines) == 3 + 4
    # Each dead letter says which message of the batch it keeps.
    assert [detail.split(":")[0] for _, detail in decoded.refused] == [
        "messages.1",
        "messages.3",
        "messages.5",
        "messages.6",
    ]
    # Confirmed: the good ones, and the bad ones that say a sequence number that fits.
    assert sorted(decoded.seqs) == [1, 2, 3, 4, 5]
    assert decoded.agent_id == "b"


def test_a_batch_whose_envelope_is_wrong_is_refused_whole() -> None:
    payload = json.dumps(
        {"schema_version": 1, "agent_id": "other", "messages": [json.loads(encode(weight(1)))]}
    ).encode()
    decoded = points_for(Topics("vigie"), "vigie/v1/b/batch", payload, UniqueClock())
    assert [reason for reason, _ in decoded.refused] == ["agent_mismatch"]
    assert [measurement_of(line) for line in decoded.lines] == ["dead_letter"]
    assert decoded.seqs == ()


def test_an_oversized_batch_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*_: object) -> None:
        raise AssertionError("an oversized payload was parsed")

    monkeypatch.setattr(decoding, "salvage_batch", never)
    messages = [json.loads(encode(weight(seq))) for seq in range(1, 400)]
    payload = json.dumps({"schema_version": 1, "agent_id": "b", "messages": messages}).encode()
    assert len(payload) > 64 * 1024
    decoded = points_for(Topics("vigie"), "vigie/v1/b/batch", payload, UniqueClock())
    assert [reason for reason, _ in decoded.refused] == ["oversized"]


def test_two_readings_in_one_whole_second_never_share_a_point_and_a_copy_does() -> None:
    second = datetime(2026, 11, 24, 9, 30, 5, tzinfo=UTC)  # a cuff's clock: no fraction
    first, again, other = (
        message_points(weight(seq, second), received_ns=RECEIVED)[0] for seq in (7, 7, 8)
    )
    assert first.time_ns != other.time_ns
    assert first.time_ns == again.time_ns  # the same message sent twice: one point
    # The device's second is kept: only nanoseconds below the microsecond differ.
    assert {point.time_ns // 1000 for point in (first, other)} == {ns(second) // 1000}
