"""The agent: its parts wired together and run in one ``asyncio.TaskGroup``.

- **instruments** (``runtime/instruments.py``): one task per instrument (a BLE or
  serial driver, or a simulator); readings go to the recorder, never to the network,
  so a broker outage never stalls a reading;
- **recorder** (``runtime/recorder.py``): numbers every message and writes it to the
  durable outbox on the outbox's own thread;
- **health** (``runtime/health.py``): the agent's own health report, every
  ``health_interval_s``;
- **session** (``runtime/session.py``): the connection, with a Last Will and a birth;
  on it the **drain** (``runtime/drain.py``) sends the outbox in sequence order, paced
  and batched (``runtime/batching.py``), and the **inbox** (``runtime/inbox.py``)
  takes the fleet's "stored" confirmations and the desired state;
- **remote configuration** (``remote_config/``): a pushed configuration, applied here
  without a restart; **updates** (``updates/``): a desired release, installed by the
  updater task.

Several agents can share an event loop (``edge-agent simulate``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import aiomqtt

from edge_agent import __version__
from edge_agent.aio import wait_or_stop
from edge_agent.config import AgentConfig, device_profiles
from edge_agent.consultation import ConsultationWatch
from edge_agent.instruments.instrument import Instrument
from edge_agent.instruments.profiles import DeviceProfile
from edge_agent.remote_config.state import RemoteConfig
from edge_agent.runtime.drain import Drain
from edge_agent.runtime.health import DeliveryCounts, HealthReporter
from edge_agent.runtime.inbox import Inbox
from edge_agent.runtime.instruments import InstrumentPool
from edge_agent.runtime.recorder import Recorder
from edge_agent.runtime.session import Session, broker_identity
from edge_agent.storage.outbox import Outbox
from edge_agent.updates.launcher import RESTART_EXIT_CODE
from edge_agent.updates.updater import Updater
from vigie_core.clock import utc_now
from vigie_core.contract.data import DeviceStatusCode, Severity
from vigie_core.contract.presence import AgentState, Birth
from vigie_core.contract.releases import DesiredRelease
from vigie_core.contract.settings import DesiredConfig, ReportedConfig
from vigie_core.contract.topics import Topics

log = logging.getLogger(__name__)


@dataclass
class Agent:
    """One booth's or bus's agent."""

    config: AgentConfig
    clock: Callable[[], datetime] = utc_now
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        # The identity first: a certificate for another agent stops us before any file
        # is opened.
        identity = broker_identity(self.config)
        self.topics = Topics(self.config.broker.topic_prefix)
        settings = self.config.outbox
        outbox = Outbox(
            self.config.state_dir / "outbox.sqlite3",
            settings.synchronous,
            settings.max_bytes,
            min_free_bytes=settings.min_free_bytes,
            memory_max_bytes=settings.memory_max_bytes,
        )
        self.recorder = Recorder(outbox, self.topics, self.config.agent_id, self.clock)
        self.remote_config = RemoteConfig(base=self.config, record_event=self.recorder.record_event)
        self.config = self.remote_config.load_saved()
        self.consultation = ConsultationWatch(self.config.consultation_file)
        self.pool = InstrumentPool(
            self.config, self.recorder, self.consultation, self.clock, self.rng
        )
        #: The process's exit status when run() returns: 75 asks the launcher to start
        #: the new slot, 1 a failed trial (the launcher rolls back).
        self.exit_code = 0
        self._stop: asyncio.Event | None = None
        self.updater = (
            Updater(
                config=self.config,
                settings=self.config.updates,
                clock=self.clock,
                request_restart=lambda: self._exit(RESTART_EXIT_CODE),
                request_failure_exit=lambda: self._exit(1),
                is_healthy=self._healthy,
                moving_at=lambda: self.pool.moving_at,
            )
            if self.config.updates is not None
            else None
        )
        self.drain = Drain(self.recorder, self.config.broker, self.config.delivery)
        self.inbox = Inbox(
            self.topics,
            self.config.agent_id,
            on_stored=self._stored,
            on_desired_config=self._on_desired_config,
            on_desired_release=self._on_desired_release,
        )
        self.session = Session(
            config=self.config,
            identity=identity,
            drain=self.drain,
            inbox=self.inbox,
            next_session=lambda: self.recorder.call(outbox.next_session),
            resend_all=lambda: self.recorder.call(outbox.resend_all),
            birth=self._birth,
            reported_config=self.reported_config,
            updater=self.updater,
            clock=self.clock,
            rng=self.rng,
        )
        self.health = HealthReporter(
            self.recorder,
            self.config.state_dir,
            instruments=lambda: self.pool.instruments,
            delivery=lambda: DeliveryCounts(self.drain.resent, self.session.refused),
            clock=self.clock,
            warn_free_bytes=settings.warn_free_bytes,
        )

    @property
    def outbox(self) -> Outbox:
        return self.recorder.outbox

    @property
    def instruments(self) -> list[Instrument]:
        return self.pool.instruments

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then flush briefly, say goodbye and return."""
        self.recorder.queued.bind()
        self.recorder.record_event("agent_started", Severity.INFO, f"version {__version__}")
        self._stop = stop
        try:
            async with asyncio.TaskGroup() as group:
                if self.updater is not None:
                    group.create_task(self.updater.run(stop), name="updater")
                group.create_task(self.session.run(stop), name="session")
                group.create_task(self._report_health(stop), name="health")
                group.create_task(self.consultation.watch(stop), name="consultation")
                group.create_task(self._halt_on(stop), name="halt")
                self.pool.start(group)
        finally:
            await asyncio.to_thread(self.recorder.close)

    async def _halt_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.pool.halt()

    async def _report_health(self, stop: asyncio.Event) -> None:
        while True:
            await self.health.report()
            # Read each time: a pushed configuration may change the interval.
            if await wait_or_stop(stop, self.config.health_interval_s):
                return

    def _exit(self, code: int) -> None:
        self.exit_code = code
        if self._stop is not None:
            self._stop.set()

    def _healthy(self) -> bool:
        """What a new release must show before it is committed: connected to the broker,
        and every instrument answering (a simulator at once, a real one once it read)."""
        return self.session.connected.is_set() and all(
            instrument.status is DeviceStatusCode.OK or instrument.last_reading_at is not None
            for instrument in self.pool.instruments
        )

    # --- what the agent says about itself ------------------------------------------------

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

    def reported_config(self) -> ReportedConfig:
        return self.remote_config.report(self.config, self.clock())

    # --- what the fleet sends ------------------------------------------------------------

    async def _stored(self, seqs: list[int]) -> None:
        await self.recorder.call(self.recorder.outbox.confirm, seqs)
        self.drain.confirmed(seqs)

    async def apply_desired(self, desired: DesiredConfig) -> bool:
        """Apply a desired configuration; True if what runs changed. A refused one
        leaves everything as it was, with the reason in the reported state."""

        def prepare() -> tuple[AgentConfig, dict[str, DeviceProfile]] | None:
            # Off the event loop: the saved copy is written (fsync), profiles are read.
            merged = self.remote_config.accept(desired)
            return None if merged is None else (merged, device_profiles(merged))

        prepared = await asyncio.to_thread(prepare)
        if prepared is None:
            return False
        new, profiles = prepared
        self.config = new
        if self.updater is not None:
            self.updater.config = new  # opening hours decide when it may restart
        self.pool.reconfigure(new, profiles)
        return True

    async def _on_desired_config(
        self, client: aiomqtt.Client, desired: DesiredConfig | str
    ) -> None:
        """A desired configuration arrived (or an unreadable one): apply it, say so."""
        if isinstance(desired, str):
            self.remote_config.reject(0, None, desired.partition(": ")[0] or "payload", desired)
            changed = False
        else:
            changed = await self.apply_desired(desired)
        await self.session.publish_reported(client)
        if changed:  # opening hours and instruments are in the birth: say it again
            await self.session.publish_birth(client)

    def _on_desired_release(self, desired: DesiredRelease) -> None:
        if self.updater is not None:
            self.updater.want(desired)
        else:
            log.warning(
                "%s: asked for release %s, but updates are not set up here",
                self.config.agent_id,
                desired.version,
            )
