"""Reconnection backoff: capped, growing, jittered."""

from __future__ import annotations

import random

from vigie_core.backoff import backoff_delay


def test_delays_grow_then_cap_and_stay_within_half_to_full_step() -> None:
    rng = random.Random(1)
    for attempt in range(40):
        step = min(60.0, 1.0 * 2**attempt)
        for _ in range(50):
            delay = backoff_delay(attempt, 1.0, 60.0, rng)
            assert step / 2 <= delay <= step


def test_jitter_spreads_a_fleet_reconnecting_together() -> None:
    rng = random.Random(2)
    delays = [backoff_delay(6, 1.0, 60.0, rng) for _ in range(1000)]
    assert max(delays) - min(delays) > 25  # spread over most of the [30, 60] window
    assert len({round(delay, 3) for delay in delays}) > 900
