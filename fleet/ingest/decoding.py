"""What one received message becomes: the lines that store it, or a dead letter.

Nothing a message holds can make this raise: a message the contract refuses, and one
it accepts but that cannot become points (a bug, or a value line protocol cannot
carry), both become a dead letter with their reason. The ingest then acknowledges it
like any other; one bad message never stops the messages behind it.

Pure but for the clock it is handed: no network, no disk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from fleet.errors import LineProtocolError
from fleet.storage.lineprotocol import encode_point
from fleet.storage.points import dead_letter_point, message_points, receive_slots
from vigie_core.contract.codec import Message, SalvagedBatch, decode, encode, salvage_batch
from vigie_core.contract.data import Batch, Event, HealthReport, Reading
from vigie_core.contract.topics import Topics
from vigie_core.errors import ContractError, RejectReason

log = logging.getLogger("fleet.ingest")

#: A message the contract accepted but that could not become points: the fleet's own
#: reason (``dead_letter``'s ``reason`` tag), beside the contract's RejectReason.
UNSTORABLE: Final = "unstorable"


_SALVAGEABLE: Final = frozenset(
    {RejectReason.INVALID_PAYLOAD, RejectReason.AGENT_MISMATCH, RejectReason.UNKNOWN_SCHEMA_VERSION}
)


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

    #: Line protocol, one point a line, each ending in a newline: its points, and a
    #: dead letter for each part refused.
    lines: list[bytes]
    #: (reason, detail) of each dead letter: a RejectReason's value, or UNSTORABLE.
    refused: tuple[tuple[str, str], ...] = ()
    agent_id: str | None = None
    #: The data messages' sequence numbers, to confirm to the agent once stored (a
    #: message set aside as a dead letter is stored too: it must not come back forever).
    seqs: tuple[int, ...] = ()


def points_for(topics: Topics, topic: str, payload: bytes, clock: UniqueClock) -> Decoded:
    """Decode one message into the lines that store it, or into dead letters."""
    try:
        _, message = decode(topics, topic, payload)
    except ContractError as error:
        # Only what parsed and failed validation is looked at again (never an oversized
        # payload, whose size is checked so that it is never parsed at all).
        salvaged = (
            None if error.reason not in _SALVAGEABLE else salvage_batch(topics, topic, payload)
        )
        if salvaged is None:
            return dead_letter(error.reason.value, error.detail, topic, payload, clock)
        return _salvaged(salvaged, topic, clock)
    if isinstance(message, Batch):
        agent_id, seqs = message.agent_id, tuple(item.seq for item in message.messages)
    elif isinstance(message, Reading | HealthReport | Event):
        agent_id, seqs = message.agent_id, (message.seq,)
    else:
        agent_id, seqs = None, ()
    try:
        lines = _lines(message, clock)
    except Exception as exc:  # a bug, or a value line protocol cannot carry
        return _unstorable(exc, topic, payload, clock, agent_id, seqs)
    return Decoded(lines, agent_id=agent_id, seqs=seqs)


def _lines(message: Message, clock: UniqueClock) -> list[bytes]:
    points = message_points(message, clock(receive_slots(message)))
    return [f"{encode_point(point)}\n".encode() for point in points]


def _unstorable(
    exc: Exception,
    topic: str,
    payload: bytes,
    clock: UniqueClock,
    agent_id: str | None,
    seqs: tuple[int, ...],
) -> Decoded:
    if not isinstance(exc, LineProtocolError):
        log.exception("could not store a valid message on %r", topic[:200])
    letter = dead_letter(UNSTORABLE, f"{type(exc).__name__}: {exc}", topic, payload, clock)
    # Set aside is stored: the agent is told, or it would send it again forever.
    return Decoded(letter.lines, letter.refused, agent_id, seqs)


def _salvaged(salvaged: SalvagedBatch, topic: str, clock: UniqueClock) -> Decoded:
    """The good messages of a batch stored, each refused one set aside on its own."""
    letters = [
        dead_letter(
            item.error.reason.value,
            f"messages.{item.index}: {item.error.detail}",
            topic,
            item.payload,
            clock,
        )
        for item in salvaged.refused
    ]
    lines = [line for letter in letters for line in letter.lines]
    refused = tuple(why for letter in letters for why in letter.refused)
    seqs = tuple(item.seq for item in salvaged.refused if item.seq is not None)
    batch = salvaged.batch()
    if batch is None:
        return Decoded(lines, refused, salvaged.agent_id, seqs)
    good = tuple(item.seq for item in batch.messages)
    try:
        lines += _lines(batch, clock)
    except Exception as exc:
        unstorable = _unstorable(exc, topic, encode(batch), clock, salvaged.agent_id, good)
        return Decoded(
            lines + unstorable.lines, refused + unstorable.refused, salvaged.agent_id, seqs + good
        )
    return Decoded(lines, refused, salvaged.agent_id, seqs + good)


def dead_letter(
    reason: str, detail: str, topic: str, payload: bytes, clock: UniqueClock
) -> Decoded:
    """The dead letter that keeps a refused message (its topic, an excerpt, why)."""
    point = dead_letter_point(reason, detail, topic, payload, clock())
    # Topic, detail and payload are hostile text, but only ever string fields, which
    # line protocol carries whatever they hold (a lone surrogate is replaced): this
    # cannot fail.
    line = f"{encode_point(point)}\n".encode(errors="replace")
    return Decoded([line], ((reason, detail),))
