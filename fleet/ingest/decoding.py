"""What one received message becomes: the points that store it, or a dead letter.

Pure but for the clock it is handed: no network, no disk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleet.errors import LineProtocolError
from fleet.storage.lineprotocol import Point, encode_point
from fleet.storage.points import dead_letter_point, message_points, receive_slots
from vigie_core.contract.codec import decode
from vigie_core.contract.data import Batch, Event, HealthReport, Reading
from vigie_core.contract.topics import Topics
from vigie_core.errors import ContractError


def line_of(point: Point) -> str:
    try:
        return encode_point(point)
    except LineProtocolError as exc:
        return f"(not encodable: {exc})"


class UniqueClock:
    """Wall-clock nanoseconds that never repeat: points timed by reception must not
    overwrite each other when two messages arrive within the clock's resolution."""

    def __init__(self, now_ns: Callable[[], int] = time.time_ns) -> None:
        self._now_ns = now_ns
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self, count: int = 1) -> int:
        """The first of ``count`` consecutive unused nanoseconds."""
        with self._lock:
            first = max(self._now_ns(), self._last + 1)
            self._last = first + count - 1
            return first


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one received message becomes."""

    points: list[Point]
    error: ContractError | None = None
    agent_id: str | None = None
    #: The data messages' sequence numbers, to confirm to the agent once stored.
    seqs: tuple[int, ...] = ()


def points_for(topics: Topics, topic: str, payload: bytes, clock: UniqueClock) -> Decoded:
    """Decode one message into the points that store it, or into a dead letter."""
    try:
        _, message = decode(topics, topic, payload)
    except ContractError as error:
        point = dead_letter_point(error.reason, error.detail, topic, payload, clock())
        return Decoded([point], error)
    points = message_points(message, clock(receive_slots(message)))
    if isinstance(message, Batch):
        return Decoded(points, None, message.agent_id, tuple(m.seq for m in message.messages))
    if isinstance(message, Reading | HealthReport | Event):
        return Decoded(points, None, message.agent_id, (message.seq,))
    return Decoded(points)
