"""The agent runtime: instruments feed the outbox, one sender drains it to the broker.

Tasks (one asyncio.TaskGroup per agent):

- one producer per instrument (a BLE or serial driver, or a simulator), and one
  health reporter: they build contract messages and store them in the outbox; they
  never touch the network, so a broker outage never stalls a reading;
- the sender: connects with a Last Will, subscribes to its own ``ack`` topic, publishes
  the birth, then drains the outbox in sequence order, paced, in batches when more
  than one message is due; each message stays in the outbox until the fleet confirms
  it has stored it (a ``StoredAck``), and is sent again if that confirmation does not
  come; the sender reconnects with capped, jittered backoff when anything goes wrong;
- on the same connection it receives desired state: a configuration (applied at once,
  ``edge_agent/desired.py``) or a release (handed to the updater task,
  ``edge_agent/updater.py``), and publishes what it runs (``reported/...``).
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
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
from pydantic import ValidationError

from edge_agent import __version__
from edge_agent.config import AgentConfig, DeviceConfig, device_profiles
from edge_agent.consultation import current_consultation
from edge_agent.instruments.decoders.base import ReadingDraft
from edge_agent.instruments.drivers.base import Driver
from edge_agent.instruments.instrument import Instrument
from edge_agent.instruments.profiles import DeviceProfile
from edge_agent.instruments.readings import ReadingOrigin, build_reading
from edge_agent.instruments.simulation.devices import frame_for
from edge_agent.instruments.simulation.instruments import instrument_for
from edge_agent.remote_config.state import RemoteConfig
from edge_agent.runtime.health import sample_system
from edge_agent.storage.outbox import Outbox, OutboxEntry
from edge_agent.storage.pacing import TokenBucket
from edge_agent.updates.launcher import RESTART_EXIT_CODE
from edge_agent.updates.updater import Updater
from vigie_core.backoff import backoff_delay
from vigie_core.clock import utc_now
from vigie_core.contract.codec import MAX_PAYLOAD_BYTES, decode, encode
from vigie_core.contract.data import (
    DataMessage,
    DeviceStatusCode,
    Event,
    HealthReport,
    Reading,
    ReadingKind,
    Severity,
    StoredAck,
)
from vigie_core.contract.presence import AgentState, Birth
from vigie_core.contract.releases import DesiredRelease
from vigie_core.contract.settings import DesiredConfig, ReportedConfig
from vigie_core.contract.topics import QOS_DATA, QOS_STATE, Topics
from vigie_core.documents import describe_validation_error
from vigie_core.errors import ContractError
from vigie_core.tls import check_identity, client_context

log = logging.getLogger(__name__)

#: How long a clean shutdown may spend sending what is still in the outbox.
SHUTDOWN_FLUSH_S = 5.0
#: Room left in a batch payload for its envelope.
_ENVELOPE_BYTES = 200
#: How long an instrument that failed unexpectedly rests before it is restarted.
INSTRUMENT_RESTART_S = 30.0
#: At most one outbox-overflow event a minute.
_OVERFLOW_REPORT_S = 60.0
#: At most one log line this often about publishes the broker refuses.
_REFUSAL_LOG_S = 60.0


@dataclass(frozen=True, slots=True)
class _Packet:
    """One MQTT message: a single data message, or a batch of them."""

    topic: str
    payload: bytes
    seqs: list[int]
    resent: int


class _RefusalCountingClient(aiomqtt.Client):
    """aiomqtt discards a PUBACK's reason code; over MQTT 5 it is how the broker says
    it refused a publish (its ACL, e.g. a certificate for another agent). We count it:
    such a message is never confirmed and stays in the outbox, so a refusal must show.
    Overrides aiomqtt's (private) PUBACK hook, then lets it do its own work."""

    def __init__(self, on_refused: Callable[[str], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_refused = on_refused

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        if getattr(reason_code, "is_failure", False):
            self._on_refused(str(reason_code))
        super()._on_publish(client, userdata, mid, reason_code, properties)


def broker_identity(config: AgentConfig) -> dict[str, Any]:
    """aiomqtt's TLS and login arguments; raises TlsError before anything connects if
    the files are missing or the certificate belongs to another agent."""
    credentials = config.broker.tls
    if credentials is None:
        return {}
    check_identity(credentials, config.agent_id)
    password = credentials.password()
    return {
        "tls_context": client_context(credentials),
        "tls_insecure": False,
        "username": credentials.username,
        "password": password.get_secret_value() if password is not None else None,
    }


@dataclass
class Agent:
    """One booth's or bus's agent. Several can share an event loop (the simulated fleet)."""

    config: AgentConfig
    clock: Callable[[], datetime] = utc_now
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.topics = Topics(self.config.broker.topic_prefix)
        self._identity = broker_identity(self.config)
        self.outbox = Outbox(
            self.config.state_dir / "outbox.sqlite3",
            self.config.outbox.synchronous,
            self.config.outbox.max_bytes,
        )
        self.remote_config = RemoteConfig(base=self.config, record_event=self.record_event)
        self.instruments: list[Instrument] = []
        #: Per running instrument, the event that stops it (set on shutdown too).
        self._halts: dict[str, asyncio.Event] = {}
        self._group: asyncio.TaskGroup | None = None
        self.config = self.remote_config.load_saved()
        self.timezone = ZoneInfo(self.config.opening_hours.timezone)
        profiles = device_profiles(self.config)
        self.instruments = [
            self._make_instrument(device, profiles.get(device.id))
            for device in self.config.enabled_devices
        ]
        self.connected = asyncio.Event()
        self.resent = 0
        #: Publishes the broker refused (MQTT 5 reason code), since the agent started.
        self.refused = 0
        self._last_refusal_log = -_REFUSAL_LOG_S
        delivery = self.config.delivery
        self._pace = TokenBucket(delivery.drain_rate_per_s, delivery.drain_burst)
        #: Sent on this connection, not yet confirmed by the fleet.
        self._unconfirmed: set[int] = set()
        self._queued = asyncio.Event()  # something new in the outbox
        self._progress = asyncio.Event()  # the fleet confirmed something
        self._reported_drops = 0
        self._last_overflow_report = -_OVERFLOW_REPORT_S
        self._started = time.monotonic()
        self._refused_consultation: str | None = None
        self._session = 0
        #: The process's exit status when run() returns: 75 asks the launcher to start
        #: the new slot, 1 a failed trial (the launcher rolls back).
        self.exit_code = 0
        self._stop: asyncio.Event | None = None
        self._moving_at: datetime | None = None
        self.updater = (
            Updater(
                config=self.config,
                settings=self.config.updates,
                clock=self.clock,
                request_restart=lambda: self._exit(RESTART_EXIT_CODE),
                request_failure_exit=lambda: self._exit(1),
                is_healthy=self._healthy,
                moving_at=lambda: self._moving_at,
            )
            if self.config.updates is not None
            else None
        )

    def _make_instrument(self, device: DeviceConfig, profile: DeviceProfile | None) -> Instrument:
        return Instrument(
            config=device,
            profile=profile,
            timezone=self.timezone,
            submit_reading=self.submit_reading,
            record_event=self.record_event,
            # A simulator is always there; a real instrument is not until it answers.
            status=(
                DeviceStatusCode.OK
                if device.source == "simulated"
                else DeviceStatusCode.DISCONNECTED
            ),
        )

    # --- updates -------------------------------------------------------------------------

    def _exit(self, code: int) -> None:
        self.exit_code = code
        if self._stop is not None:
            self._stop.set()

    def _healthy(self) -> bool:
        """What a new release must show before it is committed: connected to the broker,
        and every instrument answering (a simulator at once, a real one once it read)."""
        return self.connected.is_set() and all(
            instrument.status is DeviceStatusCode.OK or instrument.last_reading_at is not None
            for instrument in self.instruments
        )

    # --- desired configuration ---------------------------------------------------------

    def reported_config(self) -> ReportedConfig:
        return self.remote_config.report(self.config, self.clock())

    def apply_desired(self, desired: DesiredConfig) -> bool:
        """Apply a desired configuration; True if what runs changed. A refused one
        leaves everything as it was, with the reason in the reported state."""
        merged = self.remote_config.accept(desired)
        if merged is None:
            return False
        self._reconfigure(merged)
        return True

    def _reconfigure(self, new: AgentConfig) -> None:
        """Switch to ``new`` without a restart: instruments stopped, started or retuned."""
        profiles = device_profiles(new)
        wanted = {device.id: device for device in new.enabled_devices}
        self.config = new
        self.timezone = ZoneInfo(new.opening_hours.timezone)
        if self.updater is not None:
            self.updater.config = new  # opening hours decide when it may restart
        for instrument in list(self.instruments):
            device = wanted.get(instrument.id)
            same_hardware = device is not None and (
                device.source,
                device.profile,
                device.address,
            ) == (instrument.config.source, instrument.config.profile, instrument.config.address)
            if device is not None and same_hardware:
                instrument.config = device  # interval, dates, thresholds: read as they go
                continue
            self._stop_instrument(instrument)
        running = {instrument.id for instrument in self.instruments}
        for device_id, device in wanted.items():
            if device_id not in running:
                instrument = self._make_instrument(device, profiles.get(device_id))
                self.instruments.append(instrument)
                self._start_instrument(instrument)

    def _start_instrument(self, instrument: Instrument) -> None:
        if self._group is None:
            return  # not running yet: run() starts every instrument in the list
        halt = asyncio.Event()
        self._halts[instrument.id] = halt
        self._group.create_task(self._read_instrument(instrument, halt), name=instrument.id)

    def _stop_instrument(self, instrument: Instrument) -> None:
        self.instruments.remove(instrument)
        halt = self._halts.pop(instrument.id, None)
        if halt is not None:
            halt.set()

    # --- producers --------------------------------------------------------------------

    def submit(self, build: Callable[[int], DataMessage]) -> DataMessage:
        """Give a message its sequence number and store it durably; sending comes later."""
        built: list[DataMessage] = []

        def store(seq: int) -> tuple[str, bytes, str]:
            message = build(seq)
            built.append(message)
            return self.topics.topic_for(message), encode(message), message.type

        self.outbox.enqueue(store)
        self._queued.set()
        self._report_overflow()
        return built[0]

    def _report_overflow(self) -> None:
        dropped = self.outbox.dropped - self._reported_drops
        now = time.monotonic()
        if dropped and now - self._last_overflow_report >= _OVERFLOW_REPORT_S:
            self._reported_drops = self.outbox.dropped
            self._last_overflow_report = now
            log.warning(
                "%s: outbox over its %d-byte budget, dropped %d messages",
                self.config.agent_id,
                self.outbox.max_bytes,
                dropped,
            )
            self.record_event(
                "outbox_overflow",
                Severity.ERROR,
                f"dropped {dropped} messages to stay within "
                f"{self.outbox.max_bytes} bytes (health thinned first)",
            )

    def submit_reading(
        self, instrument: Instrument, draft: ReadingDraft, received_at: datetime
    ) -> Reading | None:
        """Queue the reading a decoder produced; None if it breaks the contract."""
        consultation = current_consultation(self.config.consultation_file)
        if consultation.refused is not None and consultation.refused != self._refused_consultation:
            # Once per distinct problem; the file's content itself is never sent or logged.
            log.warning("consultation id not used: %s", consultation.refused)
            self.record_event("consultation_id_refused", Severity.WARNING, consultation.refused)
        self._refused_consultation = consultation.refused
        origin = ReadingOrigin(
            agent_id=self.config.agent_id,
            device_id=instrument.id,
            source=instrument.source(),
            timezone=self.timezone,
            consultation_id=consultation.consultation_id,
        )
        try:
            # Built before it takes a sequence number, so a refused draft leaves no gap.
            reading = build_reading(
                draft, origin, 0, received_at, stored=instrument.sends_stored_records
            )
        except ValidationError as exc:
            instrument.decode_errors += 1
            reason = describe_validation_error(exc).replace("\n", "; ")
            log.warning("%s: reading refused by the contract: %s", instrument.id, reason)
            self.record_event("reading_refused", Severity.WARNING, f"{instrument.id}: {reason}")
            return None
        speed = reading.values.get("speed") if reading.kind is ReadingKind.POSITION else None
        if speed is not None and speed >= 1.0:
            self._moving_at = received_at  # a bus on the move is not restarted
        message = self.submit(lambda seq: reading.model_copy(update={"seq": seq}))
        assert isinstance(message, Reading)  # noqa: S101
        return message

    def read_simulated(self, instrument: Instrument) -> None:
        """Take one simulated reading; through the real decoder when a profile is named."""
        now = self.clock()
        # Elapsed time from the wall clock: the bus's simulated tour follows the time of
        # day, and picks up where it was after a restart.
        sample = instrument_for(instrument.config.kind).sample(self.rng, now.timestamp())
        if instrument.profile is not None:
            local = now.astimezone(self.timezone).replace(tzinfo=None)
            frames = frame_for(instrument.profile, instrument.id, sample, local, now, self.rng)
            for format_name, frame in frames:
                instrument.on_frame(format_name, frame, now)
            return
        instrument.last_reading_at = now
        draft = ReadingDraft(
            kind=instrument.config.kind,
            values=sample.values,
            units=sample.units,
            invalid=sample.invalid,
        )
        self.submit_reading(instrument, draft, now)

    def report_health(self) -> HealthReport:
        system = sample_system(self.config.state_dir)
        backlog = self.outbox.backlog()
        now = self.clock()
        for instrument in self.instruments:
            instrument.check_calibration(now)
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
                devices=[instrument.device_status(now) for instrument in self.instruments],
                backlog_messages=backlog.messages,
                backlog_oldest_s=round(backlog.oldest_age_s, 3),
                resent_messages=self.resent,
                refused_messages=self.refused,
                dropped_messages=self.outbox.dropped,
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

    async def _simulate(self, instrument: Instrument, stop: asyncio.Event) -> None:
        # Start at a random phase so that fifty booths started together do not read in step.
        delay = self.rng.uniform(0, instrument.config.interval_s)
        while not await _wait(stop, delay):
            self.read_simulated(instrument)
            if instrument.status is not DeviceStatusCode.OK:
                instrument.on_status(DeviceStatusCode.OK, "simulated")
            delay = instrument.config.interval_s  # a pushed configuration may change it

    async def _read_instrument(self, instrument: Instrument, stop: asyncio.Event) -> None:
        """Read one instrument until stopped. Whatever it does, the agent and the other
        instruments go on: an unexpected failure is reported and the instrument
        restarted after a pause."""
        while not stop.is_set():
            try:
                if instrument.config.source == "simulated":
                    await self._simulate(instrument, stop)
                else:
                    await self._driver(instrument).run(instrument, stop)
            except Exception as exc:
                log.exception("%s: instrument failed", instrument.id)
                instrument.on_status(DeviceStatusCode.ERROR, f"failed: {exc!r}"[:200])
                await _wait(stop, INSTRUMENT_RESTART_S)
            else:
                return

    def _driver(self, instrument: Instrument) -> Driver:
        """The driver for a real instrument, imported lazily: a booth without BLE
        instruments never loads bleak."""
        profile, device = instrument.profile, instrument.config
        assert profile is not None  # noqa: S101 - config validation guarantees it
        if profile.ble is not None:
            from edge_agent.instruments.drivers.ble import BleDriver  # noqa: PLC0415

            return BleDriver(
                settings=profile.ble,
                address=device.address,
                timezone=self.timezone,
                clock=self.clock,
                rng=self.rng,
            )
        from edge_agent.instruments.drivers.serial_port import SerialDriver  # noqa: PLC0415

        assert profile.serial is not None  # noqa: S101
        port = device.address or profile.serial.port
        assert port is not None  # noqa: S101 - config validation guarantees it
        return SerialDriver(port=port, settings=profile.serial, rng=self.rng)

    async def _report_health(self, stop: asyncio.Event) -> None:
        while True:
            self.report_health()
            if await _wait(stop, self.config.health_interval_s):
                return

    # --- sender -----------------------------------------------------------------------

    def _on_refused(self, reason: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._last_refusal_log >= _REFUSAL_LOG_S:
            self._last_refusal_log = now
            log.error(
                "%s: the broker refused %d message(s) so far (%s): check that this "
                "agent's certificate is its own and the broker's ACL (fleet agent enroll)",
                self.config.agent_id,
                self.refused,
                reason,
            )

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
                devices=[device.info() for device in config.enabled_devices],
                tags=config.tags,
            ),
        )

    def _client(self, session: int) -> aiomqtt.Client:
        broker = self.config.broker
        last_will = AgentState(agent_id=self.config.agent_id, online=False, session=session)
        client = _RefusalCountingClient(
            self._on_refused,
            broker.host,
            broker.port,
            # MQTT 5: a PUBACK then says when the broker refused a publish (ACL).
            protocol=aiomqtt.ProtocolVersion.V5,
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
            **self._identity,
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
        await client.subscribe(self.topics.ack(self.config.agent_id), qos=QOS_DATA)
        await client.subscribe(self.topics.desired_config(self.config.agent_id), qos=QOS_STATE)
        await client.subscribe(self.topics.desired_release(self.config.agent_id), qos=QOS_STATE)
        self._session = session
        # Whatever was sent before and never confirmed may be lost (with the broker, or
        # with a fleet instance): send it all again, the fleet stores each message once.
        self.outbox.resend_all()
        self._unconfirmed.clear()
        await client.publish(state_topic, encode(self._birth(session)), qos=QOS_STATE, retain=True)
        await self._publish_reported(client)
        await self._publish_release(client)
        self.connected.set()
        log.info(
            "%s: connected, session %d, %d queued",
            self.config.agent_id,
            session,
            len(self.outbox),
        )
        # Not a TaskGroup: it would wrap MqttError in an ExceptionGroup, and the caller's
        # reconnect logic wants the plain error from whichever task saw the drop first.
        tasks = {
            asyncio.create_task(self._drain(client, stop), name="drain"),
            asyncio.create_task(self._receive_confirmations(client), name="confirmations"),
            asyncio.create_task(self._release_reports(client), name="release reports"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel_all(tasks)
        for task in done:
            task.result()  # re-raises the MqttError that ended the session
        # Clean shutdown (also the restart into a new release): the steps just taken
        # (installing, health_checking) go out before we leave.
        await self._publish_steps(client)
        # The broker does not send the Last Will on a normal disconnect, so say
        # "offline" ourselves, in the same session.
        offline = AgentState(
            agent_id=self.config.agent_id, online=False, session=session, since=self.clock()
        )
        await client.publish(state_topic, encode(offline), qos=QOS_STATE, retain=True)
        self.connected.clear()

    async def _publish_reported(self, client: aiomqtt.Client) -> None:
        topic = self.topics.reported_config(self.config.agent_id)
        await client.publish(topic, encode(self.reported_config()), qos=QOS_STATE, retain=True)

    async def _publish_release(self, client: aiomqtt.Client) -> None:
        """On connection: where the update is now (steps taken offline are not replayed)."""
        if self.updater is None:
            return
        self.updater.steps.clear()
        topic = self.topics.reported_release(self.config.agent_id)
        await client.publish(topic, encode(self.updater.report), qos=QOS_STATE, retain=True)

    async def _release_reports(self, client: aiomqtt.Client) -> None:
        """Say every step of an update as it happens, in order (retained: the last
        one stays for whoever looks later)."""
        if self.updater is None:
            await asyncio.Event().wait()  # nothing to report; ends with the session
            return
        while True:
            await self.updater.changed.wait()
            self.updater.changed.clear()
            await self._publish_steps(client)

    async def _publish_steps(self, client: aiomqtt.Client) -> None:
        """Publish the update steps not yet said, oldest first. A step leaves the queue
        only once published: one cut off by a shutdown goes out again, never lost."""
        if self.updater is None:
            return
        topic = self.topics.reported_release(self.config.agent_id)
        while self.updater.steps:
            step = self.updater.steps[0]
            await client.publish(topic, encode(step), qos=QOS_STATE, retain=True)
            if self.updater.steps and self.updater.steps[0] is step:  # unless it overflowed
                self.updater.steps.popleft()

    async def _on_desired(self, client: aiomqtt.Client, payload: bytes, error: str | None) -> None:
        """A desired configuration arrived (or an unreadable one): apply it, say so."""
        if error is not None:
            self.remote_config.reject(0, None, error.partition(": ")[0] or "payload", error)
            await self._publish_reported(client)
            return
        desired = DesiredConfig.model_validate_json(payload)
        changed = self.apply_desired(desired)
        await self._publish_reported(client)
        if changed:  # opening hours and instruments are in the birth: say it again
            birth = encode(self._birth(self._session))
            state = self.topics.state(self.config.agent_id)
            await client.publish(state, birth, qos=QOS_STATE, retain=True)

    async def _receive_confirmations(self, client: aiomqtt.Client) -> None:
        """Forget what the fleet has stored; apply desired configurations. Raises
        MqttError when the connection drops."""
        desired_topic = self.topics.desired_config(self.config.agent_id)
        async for message in client.messages:
            topic, payload = str(message.topic), bytes(message.payload)
            if not payload:
                continue  # a cleared retained message: nothing is asked any more
            try:
                _, ack = decode(self.topics, topic, payload)
            except ContractError as exc:
                if topic == desired_topic:
                    await self._on_desired(client, payload, exc.detail)
                    continue
                log.warning("%s: ignored a bad confirmation: %s", self.config.agent_id, exc)
                continue
            if isinstance(ack, DesiredConfig):
                await self._on_desired(client, payload, None)
                continue
            if isinstance(ack, DesiredRelease):
                if self.updater is not None:
                    self.updater.want(ack)
                else:
                    log.warning(
                        "%s: asked for release %s, but updates are not set up here",
                        self.config.agent_id,
                        ack.version,
                    )
                continue
            if isinstance(ack, StoredAck) and ack.agent_id == self.config.agent_id:
                seqs = ack.seqs()
                self.outbox.confirm(seqs)
                self._unconfirmed.difference_update(seqs)
                self._progress.set()

    async def _drain(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        delivery = self.config.delivery
        window = self.config.broker.publish_window * delivery.batch_max_messages
        deadline: float | None = None
        while True:
            if stop.is_set():
                deadline = deadline or time.monotonic() + SHUTDOWN_FLUSH_S
                if time.monotonic() > deadline:
                    return
            # Cleared before looking, so that anything queued or confirmed from here on
            # wakes the wait below at once.
            self._queued.clear()
            self._progress.clear()
            room = delivery.max_unconfirmed - len(self._unconfirmed)
            due = self.outbox.due(min(room, window)) if room > 0 else []
            if not due:
                if stop.is_set() and not self._unconfirmed and not len(self.outbox):
                    return
                wake_in = self.outbox.next_due_in()
                await _first_of(
                    self._queued,
                    self._progress,
                    stop,
                    at_most_s=min(1.0, wake_in) if wake_in is not None else 1.0,
                )
                continue
            await self._publish(client, self._packets(due))

    def _packets(self, due: list[OutboxEntry]) -> list[_Packet]:
        """Due messages as MQTT messages: alone when live, in batches otherwise."""
        delivery = self.config.delivery
        now = time.time()
        entry = due[0]
        if (
            len(due) == 1
            and not entry.attempts
            and now - entry.enqueued_at < delivery.live_window_s
        ):
            return [_Packet(entry.topic, entry.payload, [entry.seq], 0)]
        packets: list[_Packet] = []
        batch: list[OutboxEntry] = []
        size = _ENVELOPE_BYTES
        for entry in due:
            if batch and (
                len(batch) >= delivery.batch_max_messages
                or size + len(entry.payload) + 1 > MAX_PAYLOAD_BYTES
            ):
                packets.append(self._batch(batch, now))
                batch, size = [], _ENVELOPE_BYTES
            batch.append(entry)
            size += len(entry.payload) + 1
        packets.append(self._batch(batch, now))
        return packets

    def _batch(self, entries: list[OutboxEntry], now: float) -> _Packet:
        historical = any(
            entry.attempts or now - entry.enqueued_at >= self.config.delivery.live_window_s
            for entry in entries
        )
        # The stored payloads are already validated contract JSON: splice them into the
        # envelope instead of decoding and re-encoding a whole backlog.
        payload = (
            b'{"schema_version":1,"agent_id":"'
            + self.config.agent_id.encode()
            + b'","historical":'
            + (b"true" if historical else b"false")
            + b',"messages":['
            + b",".join(entry.payload for entry in entries)
            + b"]}"
        )
        resent = sum(1 for entry in entries if entry.attempts)
        return _Packet(
            self.topics.batch(self.config.agent_id),
            payload,
            [entry.seq for entry in entries],
            resent,
        )

    async def _publish(self, client: aiomqtt.Client, packets: list[_Packet]) -> None:
        for packet in packets:
            delay = self._pace.wait_for(len(packet.seqs), time.monotonic())
            while delay > 0:
                await asyncio.sleep(delay)
                delay = self._pace.wait_for(len(packet.seqs), time.monotonic())
        results = await asyncio.gather(
            *(client.publish(packet.topic, packet.payload, qos=QOS_DATA) for packet in packets),
            return_exceptions=True,
        )
        confirm_timeout = self.config.delivery.confirm_timeout_s
        for packet, result in zip(packets, results, strict=True):
            if not isinstance(result, BaseException):
                self.outbox.mark_sent(packet.seqs, confirm_timeout)
                self._unconfirmed.update(packet.seqs)
                self.resent += packet.resent
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
            self._stop = stop
            async with asyncio.TaskGroup() as group:
                self._group = group
                if self.updater is not None:
                    group.create_task(self.updater.run(stop), name="updater")
                group.create_task(self._send(stop), name="sender")
                group.create_task(self._report_health(stop), name="health")
                group.create_task(self._halt_instruments_on(stop), name="halt")
                for instrument in self.instruments:
                    self._start_instrument(instrument)
        finally:
            self._group = None
            self.outbox.close()

    async def _halt_instruments_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        for halt in self._halts.values():
            halt.set()


async def _cancel_all(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until they are gone. Python 3.11's ``wait_for`` (under
    aiomqtt's publish) can lose a cancellation that races with a PUBACK; a task that
    survived is cancelled again instead of being waited for forever."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved here; the caller re-raises the one that matters


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if ``stop`` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def _first_of(*events: asyncio.Event, at_most_s: float) -> None:
    """Wait until one of ``events`` is set, or ``at_most_s`` passed."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=at_most_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
