"""The recorder: numbers every message at once, stores it on the outbox's own thread,
in sequence order, and never lets the sender see a message that is not on disk."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.runtime.recorder import Recorder, Wakeup
from edge_agent.storage.outbox import Outbox
from vigie_core.contract.data import Severity
from vigie_core.contract.topics import Topics

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def recorder(path: Path) -> Recorder:
    return Recorder(Outbox(path / "outbox.sqlite3"), Topics(), "booth-01", lambda: AT)


def stored_seqs(rec: Recorder) -> list[tuple[int, int]]:
    """(row key, the seq in the payload) for every stored message."""
    rec.flush()
    return [(entry.seq, json.loads(entry.payload)["seq"]) for entry in rec.outbox.due(10_000)]


def test_numbers_continue_after_a_restart_and_match_the_payload(tmp_path: Path) -> None:
    first = recorder(tmp_path)
    assert [first.record_event("a", Severity.INFO).seq for _ in range(3)] == [1, 2, 3]
    first.close()
    again = recorder(tmp_path)
    assert again.record_event("b", Severity.INFO).seq == 4
    assert stored_seqs(again) == [(seq, seq) for seq in range(1, 5)]
    again.close()


def test_messages_from_many_threads_are_stored_once_each_in_order(tmp_path: Path) -> None:
    rec = recorder(tmp_path)

    def produce() -> None:
        for _ in range(100):
            rec.record_event("reading_taken", Severity.INFO)

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stored_seqs(rec) == [(seq, seq) for seq in range(1, 401)]
    assert rec.write_failures == 0
    rec.close()


def test_the_sender_sees_a_message_as_soon_as_it_was_submitted(tmp_path: Path) -> None:
    rec = recorder(tmp_path)

    async def submit_then_read() -> list[int]:
        rec.record_event("agent_started", Severity.INFO)
        # No flush: an outbox call runs after every write queued before it.
        due = await rec.call(rec.outbox.due, 10)
        return [entry.seq for entry in due]

    assert asyncio.run(submit_then_read()) == [1]
    rec.close()


def test_a_write_that_fails_is_counted_and_the_next_one_goes_on(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    rec.record_event("first", Severity.INFO)
    rec.flush()
    rec.outbox.add(2, "vigie/v1/booth-01/event", b"{}", "event")  # takes the next number
    rec.record_event("clash", Severity.INFO)  # seq 2 again: the insert fails
    rec.record_event("after", Severity.INFO)
    rec.flush()
    assert rec.write_failures == 1
    assert [entry.seq for entry in rec.outbox.due(10)] == [1, 2, 3]
    rec.close()


def test_a_wakeup_set_from_another_thread_wakes_the_loop() -> None:
    async def main() -> bool:
        wakeup = Wakeup()
        wakeup.bind()
        threading.Thread(target=wakeup.set).start()
        await asyncio.wait_for(wakeup.event.wait(), 5)
        return wakeup.event.is_set()

    assert asyncio.run(main())
