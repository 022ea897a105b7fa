"""The outbox: durable, ordered, scheduled resends, a disk budget that thins health first."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.errors import StorageBroken
from edge_agent.storage.outbox import Outbox
from edge_agent.storage.overflow import victims
from edge_agent.storage.pacing import TokenBucket
from edge_agent.storage.space import MIB


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


PLENTY = 100 * MIB


def plenty(_: Path) -> int:
    return PLENTY


def fill(outbox: Outbox, kinds: str, size: int = 1000) -> list[int]:
    """Store one message per letter of ``kinds`` (r: reading, h: health, e: event)."""
    names = {"r": "reading", "h": "health", "e": "event"}
    return [put(outbox, names[kind], size) for kind in kinds]


def kept(outbox: Outbox) -> set[int]:
    return {entry.seq for entry in outbox.due(1_000_000)}


def test_the_budget_is_what_the_files_occupy_and_health_is_thinned_before_readings(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "o.db", max_bytes=MIB, disk_free=plenty)
    seqs = fill(outbox, "rh" * 2000)  # 4 MB of messages into a 1 MiB budget
    assert outbox.usage().occupied_bytes <= MIB
    left = kept(outbox)
    # Nothing vanished uncounted, and the count is in the database.
    assert len(left) + outbox.dropped == len(seqs)
    assert outbox.dropped > 0
    assert {seqs[-1], seqs[-2]} <= left, "the newest messages went"
    dropped = outbox.dropped
    outbox.close()
    assert Outbox(tmp_path / "o.db", max_bytes=MIB, disk_free=plenty).dropped == dropped


def test_the_policy_thins_the_oldest_health_then_takes_the_oldest_readings_then_events(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "o.db", disk_free=plenty)
    kinds = "e" + "rrh" * 8  # seq 1 an event; health at 4, 7, 10, ... 25
    fill(outbox, kinds, size=100)
    health = [seq for seq, kind in enumerate(kinds, 1) if kind == "h"]
    size = 100 + len("t/10")
    # A little room: every other health report of the oldest half, oldest first.
    assert victims(outbox._db, "main", 2 * size - 10) == [health[1], health[3]]
    # More: then the oldest readings.
    assert victims(outbox._db, "main", 4 * size - 10) == [health[1], health[3], 2, 3]
    # Everything: the event last.
    everything = victims(outbox._db, "main", 10**9)
    assert sorted(everything) == list(range(1, len(kinds) + 1))
    assert everything[-1] == 1
    thinned = {health[1], health[3]}
    assert everything[-7:-1] == [seq for seq in health if seq not in thinned]


def test_past_the_health_the_oldest_readings_go_first_and_events_last(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_bytes=MIB, disk_free=plenty)
    event = put(outbox, "event", 1000)
    seqs = fill(outbox, "r" * 3000)
    left = sorted(kept(outbox))
    assert left[0] == event, "the event went before readings did"
    readings = left[1:]
    assert readings == seqs[-len(readings) :], "not the oldest readings that went"
    assert outbox.dropped == len(seqs) - len(readings)


def test_on_a_short_disk_the_file_stops_growing_and_old_messages_make_way(
    tmp_path: Path,
) -> None:
    free = {"bytes": PLENTY}
    outbox = Outbox(tmp_path / "o.db", disk_free=lambda _: free["bytes"], min_free_bytes=10 * MIB)
    fill(outbox, "r" * 500)
    size = outbox.usage().used_pages_bytes + outbox.usage().free_pages_bytes
    free["bytes"] = 10 * MIB  # somebody else filled the disk to the outbox's limit
    seqs = fill(outbox, "r" * 2000)
    usage = outbox.usage()
    assert usage.used_pages_bytes + usage.free_pages_bytes <= size + outbox.budget.slack_bytes
    left = kept(outbox)
    assert seqs[-1] in left
    assert len(left) + outbox.dropped == 2500


def test_when_sqlite_says_the_disk_is_full_messages_wait_in_memory_and_are_sent_from_there(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "o.db", disk_free=plenty, memory_max_bytes=256 * 1024)
    on_disk = fill(outbox, "r" * 10)
    # SQLite's own limit on the file's pages: a write past it fails with SQLITE_FULL,
    # as on a full disk, deletions included.
    (pages,) = outbox._db.execute("PRAGMA page_count").fetchone()
    outbox._db.execute(f"PRAGMA max_page_count={pages}")
    outbox._db.execute("PRAGMA journal_mode=DELETE")  # no WAL room to spare either
    held = fill(outbox, "r" * 100)
    assert outbox.disk_use().held_messages > 0
    assert kept(outbox) == set(on_disk + held), "a held message is not sent"
    # Sent from memory, confirmed from memory.
    outbox.mark_sent(held[:5], confirm_timeout_s=30)
    assert not set(held[:5]) & kept(outbox)
    assert outbox.confirm(held[:5]) == 5
    # The memory budget follows the same policy: 400 more messages overflow it.
    fill(outbox, "r" * 400)
    assert outbox.dropped > 0
    assert len(outbox) + outbox.dropped + 5 == 510
    # Room returns: what was held moves to disk, in order, and survives a restart.
    outbox._db.execute("PRAGMA max_page_count=1073741823")
    outbox.retry(now=True)
    assert outbox.disk_use().held_messages == 0
    waiting = kept(outbox)
    dropped = outbox.dropped
    outbox.close()
    again = Outbox(tmp_path / "o.db", disk_free=plenty)
    assert kept(again) == waiting
    assert again.dropped == dropped
    assert again.last_seq() == 510


def test_a_confirmation_the_full_disk_cannot_record_is_never_sent_again(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", disk_free=plenty)
    seqs = fill(outbox, "r" * 10)
    (pages,) = outbox._db.execute("PRAGMA page_count").fetchone()
    outbox._db.execute("PRAGMA journal_mode=DELETE")
    outbox._db.execute(f"PRAGMA max_page_count={pages}")
    # The deletion needs a rollback journal the "disk" has no room for.
    with outbox._db:
        pass
    assert outbox.confirm(seqs[:4]) == 4
    assert kept(outbox) == set(seqs[4:])
    assert len(outbox) == 6


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


def test_a_file_that_is_not_an_outbox_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"not a database, a video cache" * 100)
    with pytest.raises(StorageBroken, match=r"outbox\.sqlite3: file is not a database"):
        Outbox(path)
