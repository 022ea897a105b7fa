"""The fleet service's ingest loop: MQTT in, InfluxDB out, acknowledged after the write.

A message is acknowledged only once its points are in InfluxDB or in the durable
spill (the instance's connection, ``fleet.link``, leaves acknowledgements to us), so a
fleet process that dies holding messages gets them redelivered by the broker instead
of losing them.

Threads: paho's network thread decodes each message into points (cheap, pure) and
queues them; one writer thread batches the queue into line-protocol writes and then
acknowledges the batch's messages in arrival order, as MQTT requires. While InfluxDB
is down, batches go to the spill (``ingest.spill_dir``) and are acknowledged; without
a spill nothing is acknowledged: the broker stops sending once ``max_inflight``
messages are unacknowledged and keeps the rest in this instance's persistent session.
Nothing reaches InfluxDB before ``influx_ready`` is set (``fleet.service`` sets it once
InfluxDB has been checked): until then there is the spill, or waiting.

Bad messages are acknowledged *and* set aside (the ``dead_letter`` measurement), so a
stream of garbage can never wedge the consumer.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from fleet.config import FleetConfig
from fleet.ingest.accounting import IngestStats, RateLimitedLog, RecentSeqs
from fleet.ingest.decoding import UNSTORABLE, Decoded, UniqueClock, points_for
from fleet.ingest.storing import PointStore
from fleet.link import BrokerLink
from fleet.storage.influx import PointWriter
from fleet.storage.lineprotocol import Point, encode_point
from fleet.storage.points import delivery_point, fleet_event_point
from vigie_core.contract.codec import encode
from vigie_core.contract.data import MAX_ACK_RANGES, StoredAck, seq_ranges
from vigie_core.contract.topics import Topics

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Pending:
    """A received message's lines and what is needed to acknowledge it: the MQTT
    acknowledgement to the broker and the stored-acknowledgement to the agent."""

    #: Line protocol, one point a line (nothing for a message that stores nothing).
    lines: list[bytes]
    mid: int
    qos: int
    agent_id: str | None = None
    seqs: list[int] = field(default_factory=list)


class IngestService:
    """One fleet instance. Several may run against one broker and share the traffic."""

    def __init__(
        self,
        config: FleetConfig,
        writer: PointWriter,
        link: BrokerLink | None = None,
        rng: random.Random | None = None,
        influx_ready: threading.Event | None = None,
    ) -> None:
        """``influx_ready``: set once InfluxDB is checked; none means it already is."""
        self.config = config
        self.topics = Topics(config.mqtt.topic_prefix)
        self.stats = IngestStats()
        #: The instance's connection; one of its own when none is given (tests, tools).
        self.link = link or BrokerLink(config.mqtt)
        self._owns_link = link is None
        self.link.default = self._on_message
        self.link.add(self)
        self.link.guard.on_takeover = self._note_takeover
        self._rng = rng or random.Random()
        self._clock = UniqueClock()
        self._seen = RecentSeqs()
        # SimpleQueue: the C one, a third of queue.Queue's cost per message.
        self._pending: queue.SimpleQueue[Pending] = queue.SimpleQueue()
        #: Set by the network thread once a batch's worth of messages waits, or the
        #: broker's in-flight window is full: the writer sleeps until then (or the
        #: batch's deadline) instead of waking per message.
        self._batch_ready = threading.Event()
        self._stopping = threading.Event()
        self._rejections = RateLimitedLog()
        self._writer_thread = threading.Thread(
            target=self._write_loop, name="influx-writer", daemon=True
        )
        if influx_ready is None:
            influx_ready = threading.Event()
            influx_ready.set()
        self._store = PointStore(
            writer,
            config.ingest.spill_dir,
            config.ingest.spill_max_bytes,
            self.stats,
            self._clock,
            self._stopping,
            self._rng,
            influx_ready,
        )

    @property
    def subscribed(self) -> threading.Event:
        """Set once the broker confirmed the subscriptions: from then on it keeps this
        instance's messages in its persistent session, even while it is away."""
        return self.link.subscribed

    # --- MQTT side (paho's network thread) -------------------------------------------

    def subscriptions(self) -> list[str]:
        group = self.config.mqtt.share_group
        return [f"$share/{group}/{topic}" for topic in self.topics.from_agents()]

    def on_connection(self, connected: bool) -> None:
        """Nothing to do: what was received and not yet acknowledged is redelivered."""

    def _note_takeover(self, detail: str) -> None:
        """Kept in InfluxDB for the operators (``fleet_event``); the guard counts."""
        point = fleet_event_point(self.link.client_id, "session_taken_over", detail, self._clock())
        self._pending.put(Pending([f"{encode_point(point)}\n".encode()], 0, 0))

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        self.stats.received += 1
        try:
            decoded = points_for(self.topics, message.topic, bytes(message.payload), self._clock)
        except Exception:  # points_for dead-letters everything; this is the last guard
            log.exception("could not even dead-letter a message on %r", message.topic[:200])
            decoded = Decoded([], ((UNSTORABLE, "internal error"),))
        for reason, detail in decoded.refused:
            self.stats.rejected[reason] += 1
            self._rejections.warning(
                reason, f"dead-lettered a message on {message.topic[:200]!r}: {reason}: {detail}"
            )
        # Always queued: even a message that stores nothing is acknowledged in its turn.
        self._pending.put(
            Pending(decoded.lines, message.mid, message.qos, decoded.agent_id, list(decoded.seqs))
        )
        if self._pending.qsize() >= self.config.ingest.batch_max_points or self._window_full():
            self._batch_ready.set()

    def _window_full(self) -> bool:
        """The broker's whole in-flight window is here: nothing more comes until acked."""
        unacknowledged = self.stats.received - self.stats.acknowledged
        return unacknowledged >= self.config.ingest.broker_max_inflight

    # --- InfluxDB side (writer thread) -------------------------------------------------

    def _next_batch(self) -> list[Pending]:
        settings = self.config.ingest
        try:
            first = self._pending.get(timeout=0.5)
        except queue.Empty:
            return []
        batch, count = [first], len(first.lines)
        deadline = time.monotonic() + settings.batch_max_delay_s
        while count < settings.batch_max_points:
            try:
                item = self._pending.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._window_full():
                    break
                # Waiting in get() would wake this thread for every message, a thread
                # switch each (measured: a tenth of the ingest's CPU); sleep until the
                # deadline, or until the network thread says a batch's worth waits (only
                # a wake-up: the conditions are checked again here).
                self._batch_ready.wait(remaining)
                self._batch_ready.clear()
                continue
            batch.append(item)
            count += len(item.lines)
        return batch

    def _write_loop(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                if self._stopping.is_set():
                    return
                continue
            if not self._store.store([line for item in batch for line in item.lines]):
                # Shutting down with InfluxDB away: leave the batch unacknowledged, the
                # broker redelivers it to this session (or a sibling) later.
                return
            # In arrival order, as MQTT requires; the fleet subscribes with QoS 1.
            self.link.ack_all([item.mid for item in batch if item.qos == 1])
            self.stats.acknowledged += len(batch)
            try:
                self._confirm_stored(batch)
            except Exception:  # the data is stored and acknowledged; agents resend
                log.exception("could not confirm a stored batch to its agents")

    def _confirm_stored(self, batch: list[Pending]) -> None:
        """Tell each agent which of its messages are stored, so it can forget them."""
        stored: dict[str, list[int]] = {}
        for item in batch:
            if item.agent_id is not None:
                stored.setdefault(item.agent_id, []).extend(item.seqs)
        redelivered: list[Point] = []
        for agent_id, seqs in stored.items():
            repeats = self._seen.count_repeats(agent_id, seqs)
            if repeats:
                self.stats.duplicates += repeats
                redelivered.append(delivery_point(agent_id, repeats, self._clock()))
            ranges = seq_ranges(seqs)
            for start in range(0, len(ranges), MAX_ACK_RANGES):
                ack = StoredAck(agent_id=agent_id, ranges=ranges[start : start + MAX_ACK_RANGES])
                # Fire and forget: a lost confirmation only makes the agent send again,
                # and the second copy overwrites the first.
                self.link.publish(self.topics.ack(agent_id), encode(ack))
        # Accounting, best effort: the data itself is already safe.
        self._store.store_best_effort(redelivered)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._writer_thread.start()
        self._store.start()
        if self._owns_link:
            self.link.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write and acknowledge what was received (then leave the broker, when the
        connection is its own)."""
        self._stopping.set()
        self._writer_thread.join(timeout_s)
        self._store.stop(timeout_s)
        if self._owns_link:
            self.link.stop()
