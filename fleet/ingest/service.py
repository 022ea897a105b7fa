"""The fleet service's ingest loop: MQTT in, InfluxDB out, acknowledged after the write.

paho-mqtt is used directly (not aiomqtt) because it can leave QoS 1 acknowledgements
to the application (``manual_ack``): a message is acknowledged only once its points are
in InfluxDB, so a fleet process that dies holding messages gets them redelivered by the
broker instead of losing them. aiomqtt acknowledges on receipt.

Threads: paho's network thread decodes each message into points (cheap, pure) and
queues them; one writer thread batches the queue into line-protocol writes and then
acknowledges the batch's messages in arrival order, as MQTT requires. While InfluxDB
is down, nothing is acknowledged; the broker stops sending once ``max_inflight``
messages are unacknowledged and keeps the rest in this instance's persistent session.

Bad messages are acknowledged *and* set aside (the ``dead_letter`` measurement), so a
stream of garbage can never wedge the consumer.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleet.config import FleetConfig
from fleet.errors import InfluxRejected, InfluxUnavailable, LineProtocolError
from fleet.ingest.spill import Spill
from fleet.storage.influx import PointWriter
from fleet.storage.lineprotocol import Point, encode_batch, encode_point
from fleet.storage.points import dead_letter_point, delivery_point, message_points, receive_slots
from vigie_core.backoff import backoff_delay
from vigie_core.contract.codec import decode, encode
from vigie_core.contract.data import (
    MAX_ACK_RANGES,
    Batch,
    Event,
    HealthReport,
    Reading,
    StoredAck,
    seq_ranges,
)
from vigie_core.contract.topics import QOS_DATA, Topics
from vigie_core.errors import ContractError
from vigie_core.tls import client_context

log = logging.getLogger(__name__)

#: A rejected point, named for what refused it.
STORAGE_REFUSED = "storage_refused"


def _line_of(point: Point) -> str:
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


@dataclass(slots=True)
class Pending:
    """A received message's points and what is needed to acknowledge it: the MQTT
    acknowledgement to the broker and the stored-acknowledgement to the agent."""

    points: list[Point]
    mid: int
    qos: int
    agent_id: str | None = None
    seqs: list[int] = field(default_factory=list)


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


class IngestService:
    """One fleet instance. Several may run against one broker and share the traffic."""

    def __init__(
        self,
        config: FleetConfig,
        writer: PointWriter,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.topics = Topics(config.mqtt.topic_prefix)
        self.stats = IngestStats()
        self.connected = threading.Event()
        #: Set once the broker has confirmed the subscription: from then on the broker
        #: keeps this instance's messages in its persistent session, even while it is away.
        self.subscribed = threading.Event()
        self._writer = writer
        self._rng = rng or random.Random()
        self._clock = UniqueClock()
        self._seen = RecentSeqs()
        self._pending: queue.Queue[Pending] = queue.Queue()
        self._stopping = threading.Event()
        self._rejections = RateLimitedLog()
        self._client = self._make_client()
        self._writer_thread = threading.Thread(
            target=self._write_loop, name="influx-writer", daemon=True
        )
        settings = config.ingest
        self._spill = (
            Spill(settings.spill_dir / "spill.sqlite3", settings.spill_max_bytes)
            if settings.spill_dir is not None
            else None
        )
        self._spill_waiting = threading.Event()
        self._spill_thread = threading.Thread(
            target=self._drain_spill, name="spill-drainer", daemon=True
        )

    # --- MQTT side (paho's network thread) -------------------------------------------

    def _make_client(self) -> mqtt.Client:
        settings = self.config.mqtt
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=False,  # the broker queues for us while we are away
            manual_ack=True,
        )
        if settings.tls is not None:
            client.tls_set_context(client_context(settings.tls))
            password = settings.tls.password()
            if settings.tls.username is not None and password is not None:
                client.username_pw_set(settings.tls.username, password.get_secret_value())
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_subscribe = self._on_subscribe
        # paho's own backoff has no jitter; a restarted broker sees every fleet instance
        # at once, but they are few. Agents, which are many, use jittered backoff.
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        return client

    @property
    def subscriptions(self) -> list[str]:
        group = self.config.mqtt.share_group
        return [f"$share/{group}/{topic}" for topic in self.topics.from_agents()]

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: object, _p: object = None
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.error("broker refused the connection: %s", reason)
            return
        # Subscribe on every connect: Mosquitto 2.0 does not restore shared subscriptions
        # from its persistence file (measured: docs/protocol.md), and a new broker in a
        # cluster knows none; without this the instance would be connected and deaf.
        client.subscribe([(topic, QOS_DATA) for topic in self.subscriptions])
        self.connected.set()
        log.info(
            "connected to %s:%d, subscribing to %s",
            self.config.mqtt.host,
            self.config.mqtt.port,
            ", ".join(self.subscriptions),
        )

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _mid: int, reasons: list[Any], _p: object = None
    ) -> None:
        if any(getattr(reason, "is_failure", False) for reason in reasons):
            log.error("broker refused the subscriptions %s: %s", self.subscriptions, reasons)
            return
        self.subscribed.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: object, _p: object = None
    ) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            log.warning("lost the broker (%s); reconnecting", reason)

    def _on_connect_fail(self, _c: mqtt.Client, _u: object) -> None:
        log.warning(
            "broker %s:%d unreachable; retrying", self.config.mqtt.host, self.config.mqtt.port
        )

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self.stats.received += 1
        decoded = points_for(self.topics, message.topic, bytes(message.payload), self._clock)
        if decoded.error is not None:
            self.stats.rejected[decoded.error.reason.value] += 1
            self._rejections.warning(
                decoded.error.reason.value,
                f"dead-lettered a message on {message.topic[:200]!r}: {decoded.error}",
            )
        self._pending.put(
            Pending(decoded.points, message.mid, message.qos, decoded.agent_id, list(decoded.seqs))
        )

    # --- InfluxDB side (writer thread) -------------------------------------------------

    def _next_batch(self) -> list[Pending]:
        settings = self.config.ingest
        try:
            first = self._pending.get(timeout=0.5)
        except queue.Empty:
            return []
        batch, count = [first], len(first.points)
        deadline = time.monotonic() + settings.batch_max_delay_s
        while count < settings.batch_max_points:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = self._pending.get(timeout=remaining)
            except queue.Empty:
                break
            batch.append(item)
            count += len(item.points)
        return batch

    def _write_loop(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                if self._stopping.is_set():
                    return
                continue
            if not self._store([point for item in batch for point in item.points]):
                # Shutting down with InfluxDB away: leave the batch unacknowledged, the
                # broker redelivers it to this session (or a sibling) later.
                return
            for item in batch:
                if item.qos > 0:
                    self._client.ack(item.mid, item.qos)
            self.stats.acknowledged += len(batch)
            self._confirm_stored(batch)

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
                self._client.publish(self.topics.ack(agent_id), encode(ack), qos=QOS_DATA)
        if redelivered:
            # Accounting, best effort: the data itself is already safe.
            with contextlib.suppress(InfluxUnavailable, InfluxRejected):
                self._writer.write(redelivered)

    def _store(self, points: Sequence[Point]) -> bool:
        """Write until InfluxDB (or the spill) has the points (True); only shutdown gives
        up (False)."""
        attempt = 0
        while True:
            # While the spill drains, InfluxDB was away a moment ago: add to the spill
            # rather than probe it with every batch.
            if self._spill is not None and len(self._spill) and self._spill_put(points):
                return True
            try:
                self._write_isolating_rejects(points)
            except InfluxUnavailable as exc:
                if self._spill is not None and self._spill_put(points):
                    log.warning(
                        "%s; spilling to %s until it is back", exc, self.config.ingest.spill_dir
                    )
                    return True
                if self._stopping.is_set():
                    log.warning(
                        "stopping with %d points unwritten; the broker keeps them", len(points)
                    )
                    return False
                delay = backoff_delay(attempt, 0.5, 10.0, self._rng)
                if attempt == 0:
                    log.warning("%s; holding %d points, retrying", exc, len(points))
                attempt += 1
                self._stopping.wait(delay)
                continue
            if attempt:
                log.info("InfluxDB is back; wrote %d held points", len(points))
            self.stats.stored_points += len(points)
            return True

    def _spill_put(self, points: Sequence[Point]) -> bool:
        assert self._spill is not None  # noqa: S101
        body = encode_batch(points)
        if not self._spill.put(body):
            self._rejections.warning("spill_full", "the spill is full; holding acknowledgements")
            return False
        self.stats.spilled_points += len(points)
        self._spill_waiting.set()
        return True

    def _write_isolating_rejects(self, points: Sequence[Point]) -> None:
        try:
            self._writer.write(points)
        except (InfluxRejected, LineProtocolError) as exc:
            if len(points) == 1:
                self._set_aside(_line_of(points[0]), points[0].measurement, str(exc))
                return
        else:
            return
        # One bad point (a field type conflict, say) must not sink its batch: bisect to
        # find it. Points are idempotent, so rewriting the good ones does no harm.
        middle = len(points) // 2
        self._write_isolating_rejects(points[:middle])
        self._write_isolating_rejects(points[middle:])

    def _set_aside(self, line: str, measurement: str, why: str) -> None:
        self.stats.rejected[STORAGE_REFUSED] += 1
        self._rejections.warning(STORAGE_REFUSED, f"InfluxDB refused a point: {why}")
        letter = dead_letter_point(STORAGE_REFUSED, why, measurement, line.encode(), self._clock())
        try:
            self._writer.write([letter])
        except InfluxRejected:
            log.exception("InfluxDB refused even the dead letter; dropping it")

    def _drain_spill(self) -> None:
        """Move spilled batches into InfluxDB, oldest first, whenever it answers."""
        assert self._spill is not None  # noqa: S101
        attempt = 0
        while not self._stopping.is_set():
            try:
                with self._spill.oldest() as body:
                    if body is None:
                        self._spill_waiting.clear()
                        self._spill_waiting.wait(1.0)
                        continue
                    self._write_body_isolating_rejects(body)
                    self.stats.stored_points += body.count(b"\n")
            except InfluxUnavailable:
                self._stopping.wait(backoff_delay(attempt, 0.5, 10.0, self._rng))
                attempt += 1
                continue
            if attempt:
                log.info("InfluxDB is back; draining the spill (%d batches)", len(self._spill))
            attempt = 0

    def _write_body_isolating_rejects(self, body: bytes) -> None:
        try:
            self._writer.write_body(body)
        except InfluxRejected as exc:
            for line in body.splitlines():
                try:
                    self._writer.write_body(line + b"\n")
                except InfluxRejected:
                    self._set_aside(line.decode(errors="replace"), "(spill)", str(exc))

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        settings = self.config.mqtt
        self._writer_thread.start()
        if self._spill is not None:
            self._spill_waiting.set()  # a spill left by an earlier run drains first
            self._spill_thread.start()
        self._client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
        self._client.loop_start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write and acknowledge what was received, then leave the broker."""
        self._stopping.set()
        self._writer_thread.join(timeout_s)
        if self._spill is not None:
            self._spill_thread.join(timeout_s)
            self._spill.close()
        self._client.disconnect()
        self._client.loop_stop()
