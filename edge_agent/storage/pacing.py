"""Pacing a backlog drain: a token bucket. Pure: the caller passes the time.

A bus back in coverage after hours, or a thousand booths after a broker restart, must
not send their backlogs at full speed: the broker (or a managed broker's rate limit)
would drop or throttle them all. Each agent drains at most ``rate`` messages a second,
with bursts up to ``burst``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float
    burst: float
    _tokens: float = field(init=False)
    _at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._tokens = self.burst

    def wait_for(self, count: int, now: float) -> float:
        """Seconds to wait before ``count`` messages may go (0: go now, tokens taken).

        A ``count`` larger than the burst goes once a full burst is available, and the
        rest is owed: the bucket goes negative, so the long-run rate still holds.
        """
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        needed = min(count, self.burst)
        # A tolerance: refills computed in floating point may leave a hair missing, and
        # a wait too small to move the clock would then never end.
        if self._tokens >= needed - 1e-6:
            self._tokens -= count
            return 0.0
        return (needed - self._tokens) / self.rate
