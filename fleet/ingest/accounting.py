"""What an operator (and a test) can count about one fleet instance's ingest."""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("fleet.ingest")


@dataclass
class IngestStats:
    """Counters an operator (and a test) can read."""

    received: int = 0
    stored_points: int = 0
    acknowledged: int = 0
    #: Data messages this instance stored more than once (redeliveries it absorbed).
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    #: Points written to the spill while InfluxDB was away (drained since or not).
    spilled_points: int = 0


class RecentSeqs:
    """Which sequence numbers of each agent's messages were stored here, to count
    redeliveries (a message stored again: the broker or the agent sent it twice).

    Per agent, a sliding window over its sequence numbers: the highest seen and a bitmap
    of the ``window`` numbers up to it (a ring: number ``n`` is bit ``n % window``).
    Numbers may come out of order (a backlog drains while live readings go on): a batch
    reaching above the highest slides the window up to its own highest, then each of its
    numbers inside the window is looked up and recorded. A number ``window`` or more
    below the highest (that batch's included) is neither counted nor recorded: a
    redelivery that old, like one that lands on another fleet instance (which keeps its
    own windows), is counted by the agent instead (``resent_messages`` in its health
    report), and so is one of an agent this instance forgot.

    Bounded in total: ``max_agents`` agents at most, the one stored for least recently
    forgotten first (if it comes back, its window starts empty). Memory: the bitmap is
    ``window / 8`` bytes, 1.2 KiB an agent with its bookkeeping at the default 8,192
    numbers (two days of an agent sending every 20 s), so 24 MiB at most for the default
    20,000 agents (measured: 23 MiB, agent ids aside). (The ordered set of each agent's
    last 20,000 numbers this replaces took 2 to 3 MiB an agent, with no bound on agents:
    20 GiB for 10,000.)

    Cost per call (one agent's share of a stored batch, in the writer thread): a few
    µs for consecutive numbers whatever their count, about 0.2 µs a number otherwise.
    """

    def __init__(self, window: int = 8192, max_agents: int = 20_000) -> None:
        if window < 8 or window % 8 or max_agents < 1:
            raise ValueError("window must be a positive multiple of 8, max_agents positive")
        self._window = window
        self._max_agents = max_agents
        #: agent id -> [highest seq seen, bitmap]; the least recently stored for first.
        self._agents: OrderedDict[str, list[Any]] = OrderedDict()

    def __len__(self) -> int:
        """How many agents are kept."""
        return len(self._agents)

    def count_repeats(self, agent_id: str, seqs: list[int]) -> int:
        """Record ``seqs`` (one agent's stored messages, in the order stored); return
        how many were already recorded, a repeat inside ``seqs`` included."""
        if not seqs:
            return 0
        agents = self._agents
        state = agents.get(agent_id)
        if state is None:
            state = agents[agent_id] = [seqs[0] - 1, bytearray(self._window // 8)]
            if len(agents) > self._max_agents:
                agents.popitem(last=False)
        else:
            agents.move_to_end(agent_id)
        first, last, count = seqs[0], seqs[-1], len(seqs)
        if count == 1 or (last - first == count - 1 and seqs == list(range(first, last + 1))):
            # The usual batch: consecutive numbers (the list comparison runs in C), and
            # most often right after the highest: nothing to look up, only bits to set.
            window = self._window
            if first == state[0] + 1 and count <= window:
                position = first % window
                end = position + count
                bitmap: bytearray = state[1]
                if count == 1:
                    bitmap[position >> 3] |= 1 << (position & 7)
                elif end <= window:
                    _write_bits(bitmap, position, end, seen=True)
                else:
                    _write_bits(bitmap, position, window, seen=True)
                    _write_bits(bitmap, 0, end - window, seen=True)
                state[0] = last
                return 0
            return self._record(state, first, last)
        return self._record_each(state, seqs)

    def _record_each(self, state: list[Any], seqs: list[int]) -> int:
        """Record ``seqs`` one by one (a batch with gaps, repeats or out of order)."""
        bitmap: bytearray = state[1]
        window = self._window
        top = max(seqs)
        if top > state[0]:  # slide up first; the numbers skipped are unseen
            if top - state[0] >= window:
                bitmap[:] = bytes(len(bitmap))
            else:
                self._write(bitmap, state[0] + 1, top, seen=False)
            state[0] = top
        lowest = state[0] - window + 1
        repeats = 0
        for seq in seqs:
            if seq >= lowest:
                position = seq % window
                index, bit = position >> 3, 1 << (position & 7)
                byte = bitmap[index]
                if byte & bit:
                    repeats += 1
                else:
                    bitmap[index] = byte | bit
        return repeats

    def _record(self, state: list[Any], first: int, last: int) -> int:
        """Record ``first..last`` (consecutive); how many of them were recorded before."""
        highest: int = state[0]
        bitmap: bytearray = state[1]
        window = self._window
        if last > highest:  # slide up: the bits of the numbers left behind are reused
            above = max(first, highest + 1)
            reused = max(highest + 1, last - window + 1)
            if reused < above:  # a gap between the old highest and this run: unseen
                self._write(bitmap, reused, above - 1, seen=False)
            self._write(bitmap, max(above, reused), last, seen=True)
            state[0] = highest = last
            last = above - 1  # what is left: at or below the old highest
        first = max(first, highest - window + 1)
        if last < first:
            return 0
        position = first % window
        end = position + last - first + 1
        if end <= window:
            return _test_and_set(bitmap, position, end)
        return _test_and_set(bitmap, position, window) + _test_and_set(bitmap, 0, end - window)

    def _write(self, bitmap: bytearray, first: int, last: int, *, seen: bool) -> None:
        position = first % self._window
        end = position + last - first + 1
        if end <= self._window:
            _write_bits(bitmap, position, end, seen=seen)
        else:
            _write_bits(bitmap, position, self._window, seen=seen)
            _write_bits(bitmap, 0, end - self._window, seen=seen)


def _write_bits(bitmap: bytearray, start: int, end: int, *, seen: bool) -> None:
    """Set (``seen``) or clear bits ``start`` to ``end`` (excluded) of ``bitmap``."""
    low, high = start >> 3, (end - 1) >> 3  # the first and last bytes
    head = (0xFF << (start & 7)) & 0xFF
    tail = 0xFF >> (7 - ((end - 1) & 7))
    if low == high:
        head &= tail
        bitmap[low] = bitmap[low] | head if seen else bitmap[low] & ~head
    elif seen:
        bitmap[low] |= head
        bitmap[low + 1 : high] = b"\xff" * (high - low - 1)
        bitmap[high] |= tail
    else:
        bitmap[low] &= ~head
        bitmap[low + 1 : high] = bytes(high - low - 1)
        bitmap[high] &= ~tail


def _test_and_set(bitmap: bytearray, start: int, end: int) -> int:
    """Set bits ``start`` to ``end`` (excluded) of ``bitmap``; how many already were."""
    low, high = start >> 3, (end + 7) >> 3
    mask = ((1 << (end - start)) - 1) << (start & 7)
    if high - low == 1:
        byte = bitmap[low]
        bitmap[low] = byte | mask
        return (byte & mask).bit_count()
    chunk = int.from_bytes(bitmap[low:high], "little")
    bitmap[low:high] = (chunk | mask).to_bytes(high - low, "little")
    return (chunk & mask).bit_count()


class RateLimitedLog:
    """Logs a reason the first time, then at most once a minute with the count since."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def warning(self, reason: str, message: str) -> None:
        now = time.monotonic()
        last = self._last.get(reason)
        if last is not None and now - last < self._interval_s:
            self._suppressed[reason] += 1
            return
        self._last[reason] = now
        suppressed = self._suppressed.pop(reason, 0)
        extra = f" ({suppressed} more since last report)" if suppressed else ""
        log.warning("%s%s", message, extra)
