"""Presence ordering: sessions, late Last Wills, and closed sites."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleet.storage.presence import AgentStatus, PresenceRecord, agent_status, current_presence
from vigie_core.contract.presence import OpeningHours

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
BIRTH = {"site_id": "s"}


def rec(
    online: bool, session: int, minutes: int, birth: dict[str, str] | None = None
) -> PresenceRecord:
    return PresenceRecord(online, session, T0 + timedelta(minutes=minutes), birth)


def test_no_records_no_presence() -> None:
    assert current_presence([]) is None


def test_a_late_will_from_an_older_session_is_ignored() -> None:
    presence = current_presence([rec(True, 5, 0, BIRTH), rec(False, 4, 1)])
    assert presence is not None
    assert presence.online
    assert presence.session == 5


def test_offline_is_final_within_a_session_whatever_the_arrival_order() -> None:
    for records in (
        [rec(True, 5, 0, BIRTH), rec(False, 5, 1)],
        [rec(False, 5, 0), rec(True, 5, 1, BIRTH)],
    ):
        presence = current_presence(records)
        assert presence is not None
        assert not presence.online
        assert presence.birth == BIRTH


def test_birth_details_come_from_the_newest_birth() -> None:
    presence = current_presence(
        [rec(True, 1, 0, {"site_id": "old"}), rec(False, 1, 1), rec(True, 2, 2, {"site_id": "new"})]
    )
    assert presence is not None
    assert presence.birth == {"site_id": "new"}


def test_offline_outside_opening_hours_is_closed() -> None:
    hours = OpeningHours(timezone="UTC", week={"tue": ["09:00-17:00"]})
    tuesday_noon = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    tuesday_night = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
    assert agent_status(False, hours, tuesday_noon) is AgentStatus.OFFLINE
    assert agent_status(False, hours, tuesday_night) is AgentStatus.CLOSED
    assert agent_status(True, hours, tuesday_night) is AgentStatus.ONLINE
    assert agent_status(False, None, tuesday_night) is AgentStatus.OFFLINE


def test_delivery_accounting_finds_gaps_between_first_and_last() -> None:
    from fleet.cli.render import describe_delivery
    from fleet.storage.queries import summarize_delivery

    delivery = summarize_delivery([5, 1, 2, 3, 9, 10, 12, 3], duplicates=2, window="24h")
    assert (delivery.stored, delivery.first_seq, delivery.last_seq) == (7, 1, 12)
    assert delivery.missing == 5
    assert delivery.gaps == [(4, 4), (6, 8), (11, 11)]
    assert describe_delivery(delivery) == (
        "delivery (last 24h): 7 messages stored, seq 1-12, missing 5 (4, 6-8, 11), "
        "duplicates absorbed 2"
    )
    few = summarize_delivery([1, 3, 5, 7], duplicates=0, window="1h", max_gaps=2)
    assert few.missing == 3
    assert describe_delivery(few).endswith("missing 3 (2, 4, ...), duplicates absorbed 0")
    assert summarize_delivery([], 0, "1h").stored == 0


def test_calibration_due_is_spelled_for_a_technician() -> None:
    from fleet.cli.render import describe_calibration

    assert describe_calibration(None) == ""
    assert describe_calibration(0) == "today"
    assert describe_calibration(1) == "in 1 day"
    assert describe_calibration(12.0) == "in 12 days"
    assert describe_calibration(-3) == "OVERDUE by 3 days"
