"""The drain: the outbox to the broker, in sequence order, paced, inside a window of
messages sent and not yet confirmed by the fleet.

A message leaves the outbox only when the fleet confirms it stored it (the inbox
calls :meth:`Drain.confirmed`); one not confirmed in time becomes due again and is
sent again, doubling its wait each time (``Outbox.mark_sent``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Final

import aiomqtt

from edge_agent.aio import first_of
from edge_agent.config import BrokerConfig, DeliveryConfig
from edge_agent.runtime.batching import Packet, packets
from edge_agent.runtime.recorder import Recorder
from edge_agent.storage.pacing import TokenBucket
from vigie_core.contract.topics import QOS_DATA

#: How long a clean shutdown may spend sending what is still in the outbox.
SHUTDOWN_FLUSH_S: Final = 5.0


class Drain:
    def __init__(self, recorder: Recorder, broker: BrokerConfig, delivery: DeliveryConfig):
        self.recorder = recorder
        self.broker = broker
        self.delivery = delivery
        self.pace = TokenBucket(delivery.drain_rate_per_s, delivery.drain_burst)
        #: Sent on this connection (or being sent), not yet confirmed by the fleet.
        self.unconfirmed: set[int] = set()
        #: The fleet confirmed something: the window has room again.
        self.progress = asyncio.Event()
        #: Messages sent again since the agent started (not confirmed in time).
        self.resent = 0

    def reset(self) -> None:
        """A new connection: whatever was sent before is sent again."""
        self.unconfirmed.clear()

    def confirmed(self, seqs: Sequence[int]) -> None:
        self.unconfirmed.difference_update(seqs)
        self.progress.set()

    async def run(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        """Send until ``stop``, then for up to SHUTDOWN_FLUSH_S while anything is left.
        Raises MqttError when the connection fails."""
        outbox = self.recorder.outbox
        window = self.broker.publish_window * self.delivery.batch_max_messages
        deadline: float | None = None
        while True:
            if stop.is_set():
                deadline = deadline or time.monotonic() + SHUTDOWN_FLUSH_S
                if time.monotonic() > deadline:
                    return
            # Cleared before looking, so that anything queued or confirmed from here on
            # wakes the wait below at once.
            self.recorder.queued.event.clear()
            self.progress.clear()
            room = self.delivery.max_unconfirmed - len(self.unconfirmed)
            due = await self.recorder.call(outbox.due, min(room, window)) if room > 0 else []
            if not due:
                wake_in, left = await self.recorder.call(
                    lambda: (outbox.next_due_in(), len(outbox))
                )
                if stop.is_set() and not self.unconfirmed and not left:
                    return
                await first_of(
                    self.recorder.queued.event,
                    self.progress,
                    stop,
                    at_most_s=min(1.0, wake_in) if wake_in is not None else 1.0,
                )
                continue
            batch_topic = self.recorder.topics.batch(self.recorder.agent_id)
            await self._publish(
                client,
                packets(
                    due,
                    agent_id=self.recorder.agent_id,
                    batch_topic=batch_topic,
                    delivery=self.delivery,
                    now=time.time(),
                ),
            )

    async def _publish(self, client: aiomqtt.Client, sending: list[Packet]) -> None:
        for packet in sending:
            delay = self.pace.wait_for(len(packet.seqs), time.monotonic())
            while delay > 0:
                await asyncio.sleep(delay)
                delay = self.pace.wait_for(len(packet.seqs), time.monotonic())
        # In the window before the publish: a confirmation may come back before the
        # PUBACK does, and must find them there.
        for packet in sending:
            self.unconfirmed.update(packet.seqs)
        results = await asyncio.gather(
            *(client.publish(packet.topic, packet.payload, qos=QOS_DATA) for packet in sending),
            return_exceptions=True,
        )
        sent = [
            seq
            for packet, result in zip(sending, results, strict=True)
            if not isinstance(result, BaseException)
            for seq in packet.seqs
        ]
        for packet, result in zip(sending, results, strict=True):
            if isinstance(result, BaseException):
                self.unconfirmed.difference_update(packet.seqs)
            else:
                self.resent += packet.resent
        if sent:
            await self.recorder.call(
                self.recorder.outbox.mark_sent, sent, self.delivery.confirm_timeout_s
            )
        for result in results:
            if isinstance(result, BaseException):
                # A publish accepted locally but never acknowledged within the timeout:
                # the connection is not trustworthy any more, rebuild it.
                raise (
                    result
                    if isinstance(result, aiomqtt.MqttError)
                    else aiomqtt.MqttError(f"publish failed: {result!r}")
                )
