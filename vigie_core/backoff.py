"""Reconnection delays: capped exponential backoff with jitter. Pure."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait before reconnection attempt ``attempt`` (0 for the first retry).

    "Equal jitter": half the capped exponential step is fixed and half is random, so a
    fleet that lost its broker at the same instant comes back spread over time (paho's
    own backoff has no jitter), while no agent ever retries in a tight loop.
    """
    step: float = min(max_s, initial_s * 2.0 ** min(attempt, 32))
    return step / 2 + rng.uniform(0, step / 2)
