"""What an operator (and a test) can count about one fleet instance's ingest."""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

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
    """The last sequence numbers stored per agent, to count redeliveries.

    Bounded per agent; a redelivery that lands on another fleet instance is counted by
    the agent instead (``resent_messages`` in its health report).
    """

    def __init__(self, per_agent: int = 20_000) -> None:
        self._per_agent = per_agent
        self._seen: dict[str, OrderedDict[int, None]] = {}

    def count_repeats(self, agent_id: str, seqs: list[int]) -> int:
        seen = self._seen.setdefault(agent_id, OrderedDict())
        repeats = 0
        for seq in seqs:
            if seq in seen:
                repeats += 1
                seen.move_to_end(seq)
            else:
                seen[seq] = None
                if len(seen) > self._per_agent:
                    seen.popitem(last=False)
        return repeats


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
