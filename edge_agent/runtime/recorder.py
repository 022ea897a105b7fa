"""Every message the agent produces is numbered here and written to the outbox.

Producers (instruments, the health reporter, anything that records an event) must
never wait for the disk: with ``synchronous=FULL`` each write is an fsync, tens of
milliseconds on a booth's SD card, and one stall on the event loop would hold up every
instrument and the connection. So :meth:`Recorder.submit` numbers and builds the
message at once and hands its write to the outbox's own thread. The sender reads the
outbox through that same thread (:meth:`Recorder.call`), so it never sees a message
before it is on disk, and sees them in sequence order.

The standard library's single-worker executor is the whole mechanism: a queue and one
thread that owns the SQLite connection (what aiosqlite does, without making the pure
outbox asynchronous).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Final, TypeVar

from edge_agent.storage.outbox import Outbox
from vigie_core.contract.codec import encode
from vigie_core.contract.data import DataMessage, Event, Severity
from vigie_core.contract.topics import Topics

log = logging.getLogger(__name__)

T = TypeVar("T")
MessageT = TypeVar("MessageT", bound=DataMessage)

#: At most one outbox-overflow event a minute.
OVERFLOW_REPORT_S: Final = 60.0


class Wakeup:
    """An asyncio.Event that any thread may set: the outbox's, a download's, or the
    loop's own. Only the loop's thread may wait on it."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self) -> None:
        """Called on the loop that will wait: setting from elsewhere goes through it."""
        self._loop = asyncio.get_running_loop()

    def set(self) -> None:
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            self.event.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self.event.set)


class Recorder:
    """Numbers, builds and stores the agent's data messages (readings, health, events).

    Thread-safe: ``submit`` may be called from the event loop or from a worker thread.
    """

    def __init__(
        self,
        outbox: Outbox,
        topics: Topics,
        agent_id: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.outbox = outbox
        self.topics = topics
        self.agent_id = agent_id
        self.clock = clock
        #: Something new was submitted: the sender may have work.
        self.queued = Wakeup()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"outbox-{agent_id}")
        self._lock = threading.Lock()
        #: Writes queued and not yet done; ``flush`` waits for none.
        self._pending = 0
        self._idle = threading.Condition()
        self._next_seq = outbox.last_seq() + 1
        #: Drops are counted since the outbox was created; only new ones are reported.
        self._reported_drops = outbox.dropped
        self._last_overflow_report = -OVERFLOW_REPORT_S
        self.write_failures = 0

    # --- producing ---------------------------------------------------------------------

    def submit(self, build: Callable[[int], MessageT]) -> MessageT:
        """Give the message ``build(seq)`` makes its sequence number and queue its
        durable write; returns the message (sending comes later)."""
        with self._lock:
            seq = self._next_seq
            message = build(seq)
            self._next_seq += 1
            with self._idle:
                self._pending += 1
            # Queued under the lock: writes reach the disk in sequence order.
            written = self._executor.submit(
                self.outbox.add, seq, self.topics.topic_for(message), encode(message), message.type
            )
        written.add_done_callback(self._after_write)
        self.queued.set()
        return message

    def record_event(self, name: str, severity: Severity, detail: str = "") -> Event:
        now = self.clock()
        return self.submit(
            lambda seq: Event(
                agent_id=self.agent_id,
                seq=seq,
                measured_at=now,
                name=name,
                severity=severity,
                detail=detail[:1000],
            )
        )

    def _after_write(self, written: Future[None]) -> None:
        """After each write (on the outbox's thread, as a rule)."""
        try:
            error = written.exception()
            if error is not None:
                self.write_failures += 1
                log.error("%s: a message could not be stored: %s", self.agent_id, error)
            else:
                self._report_overflow()  # may queue one more write: counted before ours ends
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _report_overflow(self) -> None:
        dropped = self.outbox.dropped - self._reported_drops
        now = time.monotonic()
        if dropped and now - self._last_overflow_report >= OVERFLOW_REPORT_S:
            self._reported_drops = self.outbox.dropped
            self._last_overflow_report = now
            budget = self.outbox.budget.max_bytes
            log.warning(
                "%s: the outbox had no room (budget %d bytes, or the disk), dropped %d messages",
                self.agent_id,
                budget,
                dropped,
            )
            self.record_event(
                "outbox_overflow",
                Severity.ERROR,
                f"dropped {dropped} messages for want of room: the outbox's {budget}-byte "
                "budget or the disk's free space (health thinned first, then the oldest "
                "readings)",
            )

    # --- the outbox's thread -------------------------------------------------------------

    async def call(self, function: Callable[..., T], *args: object) -> T:
        """Run an outbox operation on the outbox's thread, after every write queued so far."""
        return await asyncio.wrap_future(self._executor.submit(function, *args))

    def flush(self) -> None:
        """Block until every queued write is done, those it caused included (an
        overflow report): for tests and tools, never on the event loop."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0)

    def close(self) -> None:
        """Finish the queued writes, then close the outbox on its own thread."""
        self._executor.submit(self.outbox.close)
        self._executor.shutdown(wait=True)
