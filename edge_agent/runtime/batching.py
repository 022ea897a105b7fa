"""What the drain sends (pure): due outbox entries become MQTT messages, alone when
live, in bounded batches otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.config import DeliveryConfig
from edge_agent.storage.outbox import OutboxEntry
from vigie_core.contract.codec import BATCH_ENVELOPE_BYTES, MAX_PAYLOAD_BYTES, batch_payload


@dataclass(frozen=True, slots=True)
class Packet:
    """One MQTT message: a single data message, or a batch of them."""

    topic: str
    payload: bytes
    seqs: list[int]
    #: How many of its messages are sent again (not confirmed in time).
    resent: int


def packets(
    due: Sequence[OutboxEntry],
    *,
    agent_id: str,
    batch_topic: str,
    delivery: DeliveryConfig,
    now: float,
) -> list[Packet]:
    """Due messages as MQTT messages.

    One fresh message goes alone, on its own topic: live data stays cheap to read.
    Anything else (a backlog, messages sent again) goes in batches of at most
    ``batch_max_messages`` and ``MAX_PAYLOAD_BYTES``, marked historical when any of
    its messages is late or resent.
    """
    if not due:
        return []
    first = due[0]
    if len(due) == 1 and not first.attempts and now - first.enqueued_at < delivery.live_window_s:
        return [Packet(first.topic, first.payload, [first.seq], 0)]
    found: list[Packet] = []
    batch: list[OutboxEntry] = []
    size = BATCH_ENVELOPE_BYTES
    for entry in due:
        if batch and (
            len(batch) >= delivery.batch_max_messages
            or size + len(entry.payload) + 1 > MAX_PAYLOAD_BYTES
        ):
            found.append(_batch(batch, agent_id, batch_topic, delivery, now))
            batch, size = [], BATCH_ENVELOPE_BYTES
        batch.append(entry)
        size += len(entry.payload) + 1
    found.append(_batch(batch, agent_id, batch_topic, delivery, now))
    return found


def _batch(
    entries: list[OutboxEntry],
    agent_id: str,
    topic: str,
    delivery: DeliveryConfig,
    now: float,
) -> Packet:
    historical = any(
        entry.attempts or now - entry.enqueued_at >= delivery.live_window_s for entry in entries
    )
    payload = batch_payload(agent_id, historical, [entry.payload for entry in entries])
    resent = sum(1 for entry in entries if entry.attempts)
    return Packet(topic, payload, [entry.seq for entry in entries], resent)
