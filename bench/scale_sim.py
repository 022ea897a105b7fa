"""The light agent simulator of ``bench/scale.py``: thousands of agents in one process.

Each simulated agent keeps the real agent's contract (docs/protocol.md) but holds its
outbox in memory, not in SQLite: it connects over TLS with its own certificate, with a
Last Will (offline, this session's number) and a retained birth; numbers every
message; keeps it until the fleet's StoredAck names it; sends again what is not
confirmed within ``CONFIRM_TIMEOUT_S`` (doubling, up to 32 times) and everything
unconfirmed after each reconnection (several messages as one batch); reconnects with
the agent's capped, jittered backoff (``vigie_core.backoff``).

Transport: a paho client per agent, driven by this process's asyncio loop (its socket
is registered with ``add_reader``/``add_writer``, one timer runs every client's
``loop_misc``), or aiomqtt (``--client aiomqtt``), which is the same paho client with
a task, futures and a message queue per agent. The parent talks to a worker through a
``multiprocessing`` pipe (``serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from vigie_core.backoff import backoff_delay
from vigie_core.clock import utc_now
from vigie_core.contract.codec import batch_payload, decode, encode
from vigie_core.contract.data import (
    DeviceStatus,
    DeviceStatusCode,
    HealthReport,
    Reading,
    ReadingKind,
    StoredAck,
)
from vigie_core.contract.identifiers import AgentKind
from vigie_core.contract.presence import AgentState, Birth, DeviceInfo, OpeningHours
from vigie_core.contract.topics import QOS_DATA, QOS_STATE, Topics
from vigie_core.errors import ContractError
from vigie_core.tls import BrokerCredentials, client_context

#: The real agent's defaults (edge_agent/config.py): what a fleet of them would do.
HEALTH_INTERVAL_S: Final = 30.0
READING_INTERVAL_S: Final = 60.0
CONFIRM_TIMEOUT_S: Final = 30.0
RECONNECT_INITIAL_S: Final = 1.0
RECONNECT_MAX_S: Final = 60.0
KEEPALIVE_S: Final = 30
BATCH_MAX_MESSAGES: Final = 100
LIVE_WINDOW_S: Final = 60.0
#: The production timer's step: messages are spread over 0.1 s slots, not sent in bursts.
TICK_S: Final = 0.1
#: TLS handshakes run in threads (paho's connect blocks); OpenSSL releases the GIL.
CONNECT_THREADS: Final = 8


@dataclass(slots=True)
class Entry:
    """One message in an agent's in-memory outbox."""

    payload: bytes
    topic: str
    created: float
    sent_at: float = 0.0
    attempts: int = 0


@dataclass
class Counters:
    generated: int = 0
    published: int = 0
    resent: int = 0
    confirmed: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    bad_acks: int = 0
    latencies: list[float] = field(default_factory=list)


class SimAgent:
    """One agent: its numbering, its outbox, its session."""

    def __init__(self, agent_id: str, index: int, sim: Simulator) -> None:
        self.agent_id = agent_id
        self.index = index
        self.sim = sim
        topics = sim.topics
        self.state_topic = topics.state(agent_id)
        self.ack_topic = topics.ack(agent_id)
        self.health_topic = topics.health(agent_id)
        self.reading_topic = topics.reading(agent_id, ReadingKind.BLOOD_PRESSURE)
        self.batch_topic = topics.batch(agent_id)
        self.seq = 0
        self.session = 0
        self.outbox: dict[int, Entry] = {}
        self.connected = False
        #: When the current connection was acknowledged (monotonic: the same clock
        #: in every process of this machine).
        self.connected_at = 0.0
        self.producing = False
        self.attempt = 0
        self.started = time.monotonic()
        self.link: Any = None
        self._context: ssl.SSLContext | None = None

    # --- identity ------------------------------------------------------------------------

    def context(self) -> ssl.SSLContext:
        """Its own certificate (kept: loading one costs about a millisecond)."""
        if self._context is None:
            folder = self.sim.identities / self.agent_id
            self._context = client_context(
                BrokerCredentials(
                    ca_file=self.sim.ca_file,
                    cert_file=folder / "client.crt",
                    key_file=folder / "client.key",
                )
            )
        return self._context

    def will(self) -> bytes:
        return encode(AgentState(agent_id=self.agent_id, online=False, session=self.session))

    def birth(self) -> bytes:
        return encode(
            AgentState(
                agent_id=self.agent_id,
                online=True,
                session=self.session,
                since=utc_now(),
                birth=Birth(
                    agent_version="scale-sim",
                    site_id=f"site-{self.index:05d}",
                    site_name="bench/scale.py",
                    kind=AgentKind.BOOTH,
                    opening_hours=OpeningHours.always(),
                    devices=[DeviceInfo(id="bp", kind=ReadingKind.BLOOD_PRESSURE)],
                ),
            )
        )

    # --- messages --------------------------------------------------------------------------

    def produce_health(self) -> None:
        now = time.monotonic()
        oldest = min((entry.created for entry in self.outbox.values()), default=now)
        self.seq += 1
        report = HealthReport(
            agent_id=self.agent_id,
            seq=self.seq,
            measured_at=utc_now(),
            agent_version="scale-sim",
            uptime_s=now - self.started,
            cpu_percent=3.0,
            memory_percent=20.0,
            disk_percent=40.0,
            devices=[
                DeviceStatus(
                    device="bp", kind=ReadingKind.BLOOD_PRESSURE, status=DeviceStatusCode.OK
                )
            ],
            backlog_messages=len(self.outbox),
            backlog_oldest_s=now - oldest,
            resent_messages=0,
        )
        self._queue(self.health_topic, encode(report), now)

    def produce_reading(self) -> None:
        self.seq += 1
        rng = self.sim.rng
        reading = Reading(
            agent_id=self.agent_id,
            seq=self.seq,
            measured_at=utc_now(),
            kind=ReadingKind.BLOOD_PRESSURE,
            device="bp",
            values={
                "systolic": float(rng.randint(100, 160)),
                "diastolic": float(rng.randint(60, 100)),
                "pulse_rate": float(rng.randint(55, 95)),
            },
            units={"systolic": "mm[Hg]", "diastolic": "mm[Hg]", "pulse_rate": "/min"},
        )
        self._queue(self.reading_topic, encode(reading), time.monotonic())

    def _queue(self, topic: str, payload: bytes, now: float) -> None:
        entry = Entry(payload, topic, now)
        self.outbox[self.seq] = entry
        self.sim.counters.generated += 1
        if self.connected:
            self._send([entry], now)

    def _send(self, entries: list[Entry], now: float) -> None:
        """One message on its own topic, several as batches (as the agent's drain)."""
        counters = self.sim.counters
        for start in range(0, len(entries), BATCH_MAX_MESSAGES):
            chunk = entries[start : start + BATCH_MAX_MESSAGES]
            if len(chunk) == 1:
                topic, payload = chunk[0].topic, chunk[0].payload
            else:
                historical = any(e.attempts or now - e.created > LIVE_WINDOW_S for e in chunk)
                topic = self.batch_topic
                payload = batch_payload(self.agent_id, historical, [e.payload for e in chunk])
            for entry in chunk:
                counters.resent += entry.attempts > 0
                entry.attempts += 1
                entry.sent_at = now
            counters.published += len(chunk)
            self.link.publish(topic, payload, QOS_DATA, False)

    def resend_overdue(self, now: float) -> None:
        """What the fleet did not confirm in time (the broker may have lost it)."""
        if not self.connected:
            return
        overdue = [
            entry
            for entry in self.outbox.values()
            if entry.attempts
            and now - entry.sent_at > CONFIRM_TIMEOUT_S * 2 ** min(entry.attempts - 1, 5)
        ]
        if overdue:
            self._send(overdue, now)

    # --- the connection's events -------------------------------------------------------------

    def on_connected(self) -> None:
        """CONNACK: subscribe, say who we are, send again all that is unconfirmed."""
        self.attempt = 0
        self.connected = True
        self.connected_at = time.monotonic()
        self.producing = True
        self.sim.counters.connects += 1
        self.link.subscribe(self.ack_topic, QOS_DATA)
        self.link.publish(self.state_topic, self.birth(), QOS_STATE, True)
        if self.outbox:
            self._send(list(self.outbox.values()), time.monotonic())

    def on_lost(self, failed: bool) -> None:
        """The connection failed or went: try again after the backoff."""
        counters = self.sim.counters
        if failed:
            counters.connect_failures += 1
        elif self.connected:
            counters.disconnects += 1
        self.connected = False
        self.link = None
        delay = backoff_delay(self.attempt, RECONNECT_INITIAL_S, RECONNECT_MAX_S, self.sim.rng)
        self.attempt += 1
        self.sim.loop.call_later(delay, self.sim.connect, self)

    def on_ack(self, payload: bytes) -> None:
        try:
            _, ack = decode(self.sim.topics, self.ack_topic, payload)
        except ContractError:
            self.sim.counters.bad_acks += 1
            return
        if not isinstance(ack, StoredAck):
            return
        now = time.monotonic()
        counters = self.sim.counters
        for first, last in ack.ranges:
            for seq in range(first, last + 1):
                entry = self.outbox.pop(seq, None)
                if entry is not None:
                    counters.confirmed += 1
                    counters.latencies.append(now - entry.created)


class PahoLink:
    """One paho client on the simulator's event loop: no thread, no task of its own."""

    def __init__(self, agent: SimAgent) -> None:
        self.agent = agent
        self.loop = agent.sim.loop
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=agent.agent_id, protocol=mqtt.MQTTv5
        )
        client.tls_set_context(agent.context())
        client.will_set(agent.state_topic, agent.will(), qos=QOS_STATE, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        self.client = client
        self._closed = False

    async def connect(self, host: str, port: int) -> None:
        sim = self.agent.sim
        sim.connecting += 1
        try:
            await self.loop.run_in_executor(
                sim.executor, self.client.connect, host, port, KEEPALIVE_S
            )
        except (OSError, ssl.SSLError):
            self._lost(failed=True)
        finally:
            sim.connecting -= 1

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)

    def subscribe(self, topic: str, qos: int) -> None:
        self.client.subscribe(topic, qos=qos)

    def misc(self) -> None:
        self.client.loop_misc()

    def _lost(self, failed: bool) -> None:
        if not self._closed:
            self._closed = True
            self.agent.sim.links.discard(self)
            self.agent.on_lost(failed)

    # paho's callbacks: on the loop's thread, but for on_socket_open (the connect thread).

    def _on_loop(self, call: Callable[..., object], *args: object) -> None:
        """Now on the loop's thread; from the connect thread, through the loop (an
        unregister that ran before a scheduled register would leave a writer busy)."""
        if threading.get_ident() == self.agent.sim.thread:
            call(*args)
        else:
            self.loop.call_soon_threadsafe(call, *args)

    def _on_socket_open(self, client: mqtt.Client, _u: object, sock: Any) -> None:
        self._on_loop(self.loop.add_reader, sock, self._readable)

    def _readable(self) -> None:
        self.client.loop_read()
        sock = self.client.socket()
        # TLS may hold decrypted bytes the socket no longer signals (paho bug #131).
        while isinstance(sock, ssl.SSLSocket) and sock.pending():
            self.client.loop_read()
            sock = self.client.socket()

    def _on_socket_close(self, _c: mqtt.Client, _u: object, sock: Any) -> None:
        self.loop.remove_reader(sock)
        self.loop.remove_writer(sock)

    def _on_register_write(self, _c: mqtt.Client, _u: object, sock: Any) -> None:
        self._on_loop(self.loop.add_writer, sock, self.client.loop_write)

    def _on_unregister_write(self, _c: mqtt.Client, _u: object, sock: Any) -> None:
        self._on_loop(self.loop.remove_writer, sock)

    def _on_connect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object = None
    ) -> None:
        if reason.is_failure:
            self.client.disconnect()
            self._lost(failed=True)
            return
        self.agent.sim.links.add(self)
        self.agent.on_connected()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, _r: object, _p: object = None
    ) -> None:
        self._lost(failed=not self.agent.connected)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self.agent.on_ack(bytes(message.payload))


class AiomqttLink:
    """The same agent on aiomqtt (as the real agent): a task, futures, a queue each."""

    def __init__(self, agent: SimAgent) -> None:
        self.agent = agent
        self.client = aiomqtt.Client(
            agent.sim.host,
            agent.sim.port,
            identifier=agent.agent_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            keepalive=KEEPALIVE_S,
            will=aiomqtt.Will(agent.state_topic, agent.will(), qos=QOS_STATE, retain=True),
            tls_context=agent.context(),
            timeout=20,
        )
        self.client.pending_calls_threshold = 1000
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self, _host: str, _port: int) -> None:
        connected = False
        try:
            async with self.client as client:
                connected = True
                self.agent.on_connected()
                async for message in client.messages:
                    self.agent.on_ack(bytes(message.payload))
        except aiomqtt.MqttError:
            pass
        for task in self._tasks:
            task.cancel()
        self.agent.on_lost(failed=not connected)

    def _spawn(self, call: Any) -> None:
        task = asyncio.ensure_future(call)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # a failed publish: the connection is going; retrieved here

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self._spawn(self.client.publish(topic, payload, qos=qos, retain=retain))

    def subscribe(self, topic: str, qos: int) -> None:
        self._spawn(self.client.subscribe(topic, qos=qos))

    def misc(self) -> None:
        """aiomqtt runs a task of its own per client for this."""


class Simulator:
    """One worker process's agents, their production timer and their connections."""

    def __init__(
        self,
        agent_ids: list[tuple[int, str]],
        host: str,
        port: int,
        ca_file: Path,
        identities: Path,
        client: str,
        seed: int,
    ) -> None:
        self.host, self.port = host, port
        self.ca_file, self.identities = ca_file, identities
        self.topics = Topics()
        self.rng = random.Random(seed)
        self.counters = Counters()
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.executor = ThreadPoolExecutor(CONNECT_THREADS, thread_name_prefix="connect")
        self.link_type: Callable[[SimAgent], Any] = PahoLink if client == "paho" else AiomqttLink
        self.links: set[Any] = set()
        #: paho connects handed to the threads and not yet through the TLS handshake.
        self.connecting = 0
        self.agents = [SimAgent(agent_id, index, self) for index, agent_id in agent_ids]
        self.producing = True
        #: Per agent, the last seq generated when the parent said "mark".
        self.mark: dict[str, int] = {}
        # Each agent's place in the health and reading periods: flat traffic, no bursts.
        health_slots, reading_slots = (
            int(HEALTH_INTERVAL_S / TICK_S),
            int(READING_INTERVAL_S / TICK_S),
        )
        self.health_wheel: list[list[SimAgent]] = [[] for _ in range(health_slots)]
        self.reading_wheel: list[list[SimAgent]] = [[] for _ in range(reading_slots)]
        for agent in self.agents:
            self.health_wheel[self.rng.randrange(health_slots)].append(agent)
            self.reading_wheel[self.rng.randrange(reading_slots)].append(agent)
        self._tasks: set[asyncio.Task[None]] = set()

    def connect(self, agent: SimAgent) -> None:
        agent.session += 1  # every connection attempt is a new session, as the agent's
        agent.link = self.link_type(agent)
        task = self.loop.create_task(agent.link.connect(self.host, self.port))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ramp(self, rate: float) -> None:
        """Connect every agent, ``rate`` a second."""
        started = time.monotonic()
        for number, agent in enumerate(self.agents):
            # Always yield: a ramp that falls behind must not starve the connections
            # already made (their CONNACKs) nor the parent's questions.
            await asyncio.sleep(max(0.0, started + number / rate - time.monotonic()))
            # No queue of handshakes behind the threads: the rate is what they sustain.
            while self.connecting >= 4 * CONNECT_THREADS:
                await asyncio.sleep(0.01)
            self.connect(agent)

    async def produce(self) -> None:
        """Every TICK_S, the agents whose slot it is take a reading or report health."""
        started = time.monotonic()
        tick = 0
        while True:
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * TICK_S - time.monotonic()))
            if not self.producing:
                continue
            for agent in self.health_wheel[tick % len(self.health_wheel)]:
                if agent.producing:
                    agent.produce_health()
            for agent in self.reading_wheel[tick % len(self.reading_wheel)]:
                if agent.producing:
                    agent.produce_reading()

    async def housekeeping(self) -> None:
        """Once a second: keep-alives (paho's loop_misc), and overdue confirmations."""
        while True:
            await asyncio.sleep(1.0)
            for link in list(self.links):
                link.misc()
            now = time.monotonic()
            for agent in self.agents:
                if agent.outbox:
                    agent.resend_overdue(now)

    # --- what the parent asks ------------------------------------------------------------------

    def status(self, latencies: bool) -> dict[str, Any]:
        counters = self.counters
        found: dict[str, Any] = {
            "agents": len(self.agents),
            "connected": {a.agent_id: a.session for a in self.agents if a.connected},
            "outbox": sum(len(a.outbox) for a in self.agents),
            "backlog_before_mark": sum(
                1 for a in self.agents for seq in a.outbox if seq <= self.mark.get(a.agent_id, 0)
            ),
            "generated": counters.generated,
            "published": counters.published,
            "resent": counters.resent,
            "confirmed": counters.confirmed,
            "connects": counters.connects,
            "connect_failures": counters.connect_failures,
            "disconnects": counters.disconnects,
            "bad_acks": counters.bad_acks,
        }
        if latencies:
            found["latencies"] = counters.latencies
            counters.latencies = []
        return found

    def command(self, request: tuple[Any, ...]) -> Any:
        name = request[0]
        if name == "ramp":
            task = self.loop.create_task(self.ramp(request[1]))
            self._tasks.add(task)
            return None
        if name == "status":
            return self.status(request[1])
        if name == "mark":
            self.mark = {a.agent_id: a.seq for a in self.agents}
            return None
        if name == "quiesce":
            self.producing = False
            return None
        if name == "connected_before":
            return sum(a.connected and a.connected_at < request[1] for a in self.agents)
        if name == "seqs":
            return {a.agent_id: a.seq for a in self.agents}
        raise ValueError(f"unknown command {name!r}")


async def _serve(conn: Connection, options: dict[str, Any]) -> None:
    sim = Simulator(**options)
    done = asyncio.Event()
    background = [
        asyncio.create_task(sim.produce(), name="produce"),
        asyncio.create_task(sim.housekeeping(), name="housekeeping"),
    ]

    def on_request() -> None:
        try:
            request = conn.recv()
        except EOFError:
            done.set()
            return
        if request[0] == "stop":
            done.set()
            return
        conn.send(sim.command(request))

    sim.loop.add_reader(conn.fileno(), on_request)
    conn.send("ready")
    await done.wait()
    for task in background:
        task.cancel()


def serve(conn: Connection, options: dict[str, Any]) -> None:
    """A worker process's entry point: run the agents until the parent says stop."""
    # Ctrl-C is for the parent, which stops everything in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(BrokenPipeError):
        asyncio.run(_serve(conn, options))
