"""The outbox: durable, ordered, scheduled resends, a disk budget that thins health first."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.storage.outbox import Outbox
from edge_agent.storage.pacing import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def put(outbox: Outbox, kind: str = "reading", size: int = 10) -> int:
    """Store a message as the agent does: numbered after the last one ever stored."""
    seq = outbox.last_seq() + 1
    outbox.add(seq, f"t/{seq}", b"x" * size, kind)
    return seq


def test_sequence_numbers_are_remembered_once_confirmed_and_never_reused(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    assert outbox.last_seq() == 0
    outbox.add(1, "t", b'{"seq":1}', "reading")
    second = put(outbox)
    assert second == 2
    assert outbox.due(10)[0].payload == b'{"seq":1}'
    outbox.confirm([1, 2])
    assert put(outbox) == 3
    outbox.close()
    reopened = Outbox(tmp_path / "o.db")
    assert put(reopened) == 4
    assert reopened.last_seq() == 4


def test_a_sent_message_waits_for_confirmation_then_is_sent_again_later_and_later(
    tmp_path: Path,
) -> None:
    clock = Clock()
    outbox = Outbox(tmp_path / "o.db", clock=clock)
    put(outbox)
    outbox.mark_sent([1], confirm_timeout_s=30)
    assert outbox.due(10) == []
    assert outbox.next_due_in() == pytest.approx(30)
    clock.now += 30
    (again,) = outbox.due(10)
    assert again.attempts == 1
    outbox.mark_sent([1], confirm_timeout_s=30)
    clock.now += 59
    assert outbox.due(10) == []  # the second wait is twice as long
    clock.now += 1
    assert [entry.seq for entry in outbox.due(10)] == [1]


def test_a_reconnection_makes_everything_unconfirmed_due_and_confirmation_forgets(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "o.db", clock=Clock())
    for _ in range(5):
        put(outbox)
    outbox.mark_sent([1, 2, 3], confirm_timeout_s=30)
    assert [entry.seq for entry in outbox.due(10)] == [4, 5]
    outbox.resend_all()
    assert [entry.seq for entry in outbox.due(10)] == [1, 2, 3, 4, 5]
    assert outbox.confirm([2, 4, 99]) == 2
    assert [entry.seq for entry in outbox.due(10)] == [1, 3, 5]
    assert outbox.backlog().messages == 3
    assert outbox.backlog().bytes == 30


def test_backlog_age_is_that_of_the_oldest_message(tmp_path: Path) -> None:
    clock = Clock()
    outbox = Outbox(tmp_path / "o.db", clock=clock)
    put(outbox)
    clock.now += 5
    put(outbox)
    clock.now += 2
    assert outbox.backlog().oldest_age_s == pytest.approx(7)
    outbox.confirm([1])
    assert outbox.backlog().oldest_age_s == pytest.approx(2)


def test_over_budget_health_is_thinned_before_any_reading_is_dropped(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_bytes=1000)
    readings = [put(outbox, "reading", 100) for _ in range(4)]  # 400 bytes
    health = [put(outbox, "health", 100) for _ in range(6)]  # 1000 bytes in all
    assert outbox.dropped == 0
    put(outbox, "health", 100)  # 1100: over budget
    left = {entry.seq for entry in outbox.due(100)}
    assert set(readings) <= left, "a reading was dropped while health could be thinned"
    assert outbox.dropped >= 1
    assert outbox.backlog().bytes <= 1000
    assert len(left & set(health)) < len(health)


def test_past_the_health_the_oldest_readings_go_first(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_bytes=1000)
    seqs = [put(outbox, "reading", 100) for _ in range(15)]
    left = [entry.seq for entry in outbox.due(100)]
    assert left == seqs[-len(left) :]
    assert outbox.backlog().bytes <= 1000
    assert outbox.dropped == len(seqs) - len(left)


def test_the_token_bucket_paces_a_drain() -> None:
    bucket = TokenBucket(rate=100, burst=50)
    assert bucket.wait_for(50, now=0.0) == 0  # the burst goes at once
    assert bucket.wait_for(10, now=0.0) == pytest.approx(0.1)
    assert bucket.wait_for(10, now=0.1) == 0
    # Over a long drain the rate holds: 1,000 messages in batches of 100 take ~9.5 s.
    now, sent = 0.2, 0
    while sent < 1000:
        wait = bucket.wait_for(100, now)
        if wait:
            now += wait
        else:
            sent += 100
    assert 9.0 <= now <= 10.5
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1)
