"""The agent runtime: instruments feed the outbox, one sender drains it to the broker.

Tasks (one asyncio.TaskGroup per agent):

- one producer per instrument, and one health reporter: they build contract messages
  and store them in the outbox; they never touch the network, so a broker outage
  never stalls a reading;
- the sender: connects with a Last Will, publishes the birth, drains the outbox in
  order with a bounded window of QoS 1 publishes, deletes each message on its PUBACK,
  and reconnects with capped, jittered backoff when anything goes wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import aiomqtt

from edge_agent import __version__
from edge_agent.backoff import backoff_delay
from edge_agent.config import AgentConfig, DeviceConfig
from edge_agent.contract import (
    QOS_DATA,
    QOS_STATE,
    AgentState,
    Birth,
    DataMessage,
    DeviceStatus,
    DeviceStatusCode,
    Event,
    HealthReport,
    Reading,
    Severity,
    Topics,
    encode,
    utc_now,
)
from edge_agent.health import sample_system
from edge_agent.outbox import Outbox, OutboxEntry
from edge_agent.simulation.instruments import SimulatedInstrument, instrument_for

log = logging.getLogger(__name__)

#: How long a clean shutdown may spend sending what is still in the outbox.
SHUTDOWN_FLUSH_S = 5.0


@dataclass
class _DeviceState:
    config: DeviceConfig
    instrument: SimulatedInstrument
    last_reading_at: datetime | None = None


@dataclass
class Agent:
    """One booth's or bus's agent. Several can share an event loop (the simulated fleet)."""

    config: AgentConfig
    clock: Callable[[], datetime] = utc_now
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.topics = Topics(self.config.broker.topic_prefix)
        self.outbox = Outbox(
            self.config.state_dir / "outbox.sqlite3", self.config.outbox.synchronous
        )
        self.devices = [
            _DeviceState(device, instrument_for(device.kind)) for device in self.config.devices
        ]
        self.connected = asyncio.Event()
        self._queued = asyncio.Event()
        self._started = time.monotonic()

    # --- producers --------------------------------------------------------------------

    def submit(self, build: Callable[[int], DataMessage]) -> DataMessage:
        """Give a message its sequence number and store it durably; sending comes later."""
        built: list[DataMessage] = []

        def store(seq: int) -> tuple[str, bytes]:
            message = build(seq)
            built.append(message)
            return self.topics.topic_for(message), encode(message)

        self.outbox.enqueue(store)
        self._queued.set()
        return built[0]

    def read_device(self, device: _DeviceState) -> Reading:
        """Take one reading from a (simulated) instrument and queue it."""
        now = self.clock()
        # Elapsed time from the wall clock: the bus's simulated tour follows the time of
        # day, and picks up where it was after a restart.
        sample = device.instrument.sample(self.rng, now.timestamp())
        device.last_reading_at = now
        message = self.submit(
            lambda seq: Reading(
                agent_id=self.config.agent_id,
                seq=seq,
                measured_at=now,
                kind=device.config.kind,
                device=device.config.id,
                values=sample.values,
                units=sample.units,
                invalid=sample.invalid,
            )
        )
        assert isinstance(message, Reading)  # noqa: S101
        return message

    def report_health(self) -> HealthReport:
        system = sample_system(self.config.state_dir)
        now = self.clock()
        message = self.submit(
            lambda seq: HealthReport(
                agent_id=self.config.agent_id,
                seq=seq,
                measured_at=now,
                agent_version=__version__,
                uptime_s=round(time.monotonic() - self._started, 3),
                cpu_percent=system.cpu_percent,
                memory_percent=system.memory_percent,
                disk_percent=system.disk_percent,
                devices=[
                    DeviceStatus(
                        device=device.config.id,
                        kind=device.config.kind,
                        status=DeviceStatusCode.OK,
                        last_reading_at=device.last_reading_at,
                    )
                    for device in self.devices
                ],
            )
        )
        assert isinstance(message, HealthReport)  # noqa: S101
        return message

    def record_event(self, name: str, severity: Severity, detail: str = "") -> None:
        now = self.clock()
        self.submit(
            lambda seq: Event(
                agent_id=self.config.agent_id,
                seq=seq,
                measured_at=now,
                name=name,
                severity=severity,
                detail=detail[:1000],
            )
        )

    async def _poll_device(self, device: _DeviceState, stop: asyncio.Event) -> None:
        interval = device.config.interval_s
        # Start at a random phase so that fifty booths started together do not read in step.
        delay = self.rng.uniform(0, interval)
        while not await _wait(stop, delay):
            self.read_device(device)
            delay = interval

    async def _report_health(self, stop: asyncio.Event) -> None:
        while True:
            self.report_health()
            if await _wait(stop, self.config.health_interval_s):
                return

    # --- sender -----------------------------------------------------------------------

    def _birth(self, session: int) -> AgentState:
        config = self.config
        return AgentState(
            agent_id=config.agent_id,
            online=True,
            session=session,
            since=self.clock(),
            birth=Birth(
                agent_version=__version__,
                site_id=config.site.id,
                site_name=config.site.name,
                kind=config.kind,
                opening_hours=config.opening_hours,
                devices=[device.info() for device in config.devices],
            ),
        )

    def _client(self, session: int) -> aiomqtt.Client:
        broker = self.config.broker
        last_will = AgentState(agent_id=self.config.agent_id, online=False, session=session)
        client = aiomqtt.Client(
            broker.host,
            broker.port,
            # A stable client id: the broker can then tell a reconnection from a newcomer
            # and drop the stale connection of the same agent.
            identifier=self.config.agent_id,
            keepalive=broker.keepalive_s,
            will=aiomqtt.Will(
                self.topics.state(self.config.agent_id),
                encode(last_will),
                qos=QOS_STATE,
                retain=True,
            ),
            timeout=broker.ack_timeout_s,
        )
        # aiomqtt warns past 10 pending publishes; our window holds more by design.
        client.pending_calls_threshold = broker.publish_window
        return client

    async def _send(self, stop: asyncio.Event) -> None:
        broker = self.config.broker
        attempt = 0
        while not stop.is_set():
            session = self.outbox.next_session()
            try:
                async with self._client(session) as client:
                    attempt = 0
                    await self._connected_session(client, session, stop)
                    return
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                delay = backoff_delay(
                    attempt, broker.reconnect_initial_s, broker.reconnect_max_s, self.rng
                )
                attempt += 1
                log.warning(
                    "%s: broker %s:%d unavailable (%s); retrying in %.1f s",
                    self.config.agent_id,
                    broker.host,
                    broker.port,
                    exc,
                    delay,
                )
                await _wait(stop, delay)

    async def _connected_session(
        self, client: aiomqtt.Client, session: int, stop: asyncio.Event
    ) -> None:
        state_topic = self.topics.state(self.config.agent_id)
        await client.publish(state_topic, encode(self._birth(session)), qos=QOS_STATE, retain=True)
        self.connected.set()
        log.info(
            "%s: connected, session %d, %d queued", self.config.agent_id, session, len(self.outbox)
        )
        # Not a TaskGroup: it would wrap MqttError in an ExceptionGroup, and the caller's
        # reconnect logic wants the plain error from whichever task saw the drop first.
        tasks = {
            asyncio.create_task(self._drain(client, stop), name="drain"),
            asyncio.create_task(_watch_connection(client), name="watch-connection"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # re-raises the MqttError that ended the session
        # Clean shutdown: the broker does not send the Last Will on a normal disconnect,
        # so say "offline" ourselves, in the same session.
        offline = AgentState(
            agent_id=self.config.agent_id, online=False, session=session, since=self.clock()
        )
        await client.publish(state_topic, encode(offline), qos=QOS_STATE, retain=True)
        self.connected.clear()

    async def _drain(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        window = self.config.broker.publish_window
        flush_deadline: float | None = None
        while True:
            if stop.is_set():
                flush_deadline = flush_deadline or time.monotonic() + SHUTDOWN_FLUSH_S
                if time.monotonic() > flush_deadline:
                    return
            batch = self.outbox.peek(window)
            if not batch:
                if stop.is_set():
                    return
                self._queued.clear()
                await _first_of(self._queued, stop)
                continue
            await self._publish_batch(client, batch)

    async def _publish_batch(self, client: aiomqtt.Client, batch: list[OutboxEntry]) -> None:
        # Publishes leave in sequence order on one connection, so the broker delivers them
        # in order; waiting for the whole window keeps at most `window` unacknowledged.
        results = await asyncio.gather(
            *(client.publish(entry.topic, entry.payload, qos=QOS_DATA) for entry in batch),
            return_exceptions=True,
        )
        acknowledged = [
            entry.seq
            for entry, result in zip(batch, results, strict=True)
            if not isinstance(result, BaseException)
        ]
        self.outbox.remove(acknowledged)
        for result in results:
            if isinstance(result, BaseException):
                # A publish accepted locally but never acknowledged within the timeout:
                # the connection is not trustworthy any more, rebuild it.
                raise (
                    result
                    if isinstance(result, aiomqtt.MqttError)
                    else aiomqtt.MqttError(f"publish failed: {result!r}")
                )

    # --- lifecycle --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then flush briefly, say goodbye and return."""
        self.record_event("agent_started", Severity.INFO, f"version {__version__}")
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._send(stop), name="sender")
                group.create_task(self._report_health(stop), name="health")
                for device in self.devices:
                    group.create_task(self._poll_device(device, stop), name=device.config.id)
        finally:
            self.outbox.close()


async def _watch_connection(client: aiomqtt.Client) -> None:
    """Raise MqttError as soon as the connection drops (aiomqtt's iterator does)."""
    async for _ in client.messages:
        pass  # nothing is subscribed yet; desired state will arrive here


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if ``stop`` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
