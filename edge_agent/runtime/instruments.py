"""The agent's instruments at run time: one task each, so that none can hold up
another or the connection; a failing one is reported and restarted after a pause, and
a pushed configuration starts, stops or retunes them without a restart."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from edge_agent.aio import wait_or_stop
from edge_agent.config import AgentConfig, DeviceConfig, device_profiles
from edge_agent.consultation import ConsultationWatch
from edge_agent.instruments.decoders.base import ReadingDraft
from edge_agent.instruments.drivers.base import Driver
from edge_agent.instruments.instrument import Instrument
from edge_agent.instruments.profiles import DeviceProfile
from edge_agent.instruments.readings import ReadingOrigin, build_reading
from edge_agent.instruments.simulation.devices import frame_for
from edge_agent.instruments.simulation.instruments import instrument_for
from edge_agent.runtime.recorder import Recorder
from vigie_core.contract.data import DeviceStatusCode, Reading, ReadingKind, Severity
from vigie_core.documents import describe_validation_error

log = logging.getLogger(__name__)

#: How long an instrument that failed unexpectedly rests before it is restarted.
INSTRUMENT_RESTART_S: Final = 30.0
#: A bus whose GPS shows this speed (km/h or knots) or more is on the move.
MOVING_SPEED: Final = 1.0


class InstrumentPool:
    def __init__(
        self,
        config: AgentConfig,
        recorder: Recorder,
        consultation: ConsultationWatch,
        clock: Callable[[], datetime],
        rng: random.Random,
    ) -> None:
        self.config = config
        self.timezone = ZoneInfo(config.opening_hours.timezone)
        self.recorder = recorder
        self.consultation = consultation
        self.clock = clock
        self.rng = rng
        profiles = device_profiles(config)
        self.instruments = [
            self._make(device, profiles.get(device.id)) for device in config.enabled_devices
        ]
        #: When the bus last moved (its GPS): a bus on the move is not restarted.
        self.moving_at: datetime | None = None
        #: Per running instrument, the event that stops it (set on shutdown too).
        self._halts: dict[str, asyncio.Event] = {}
        self._group: asyncio.TaskGroup | None = None
        self._refused_consultation: str | None = None

    def _make(self, device: DeviceConfig, profile: DeviceProfile | None) -> Instrument:
        return Instrument(
            config=device,
            profile=profile,
            timezone=self.timezone,
            submit_reading=self.submit_reading,
            record_event=self.recorder.record_event,
            # A simulator is always there; a real instrument is not until it answers.
            status=(
                DeviceStatusCode.OK
                if device.source == "simulated"
                else DeviceStatusCode.DISCONNECTED
            ),
        )

    # --- running -----------------------------------------------------------------------

    def start(self, group: asyncio.TaskGroup) -> None:
        """Start every instrument in ``group``; later ones (a push) start there too."""
        self._group = group
        for instrument in self.instruments:
            self._start(instrument)

    def halt(self) -> None:
        """Stop every instrument (shutdown)."""
        for halt in self._halts.values():
            halt.set()
        self._group = None

    def _start(self, instrument: Instrument) -> None:
        if self._group is None:
            return  # not running yet: start() starts every instrument in the list
        halt = asyncio.Event()
        self._halts[instrument.id] = halt
        self._group.create_task(self.read_until_stopped(instrument, halt), name=instrument.id)

    def _stop(self, instrument: Instrument) -> None:
        self.instruments.remove(instrument)
        halt = self._halts.pop(instrument.id, None)
        if halt is not None:
            halt.set()

    def reconfigure(self, new: AgentConfig, profiles: dict[str, DeviceProfile]) -> None:
        """Switch to ``new`` (``profiles``: its devices' profiles, read beforehand off
        the event loop): instruments stopped, started or retuned (intervals, dates and
        thresholds are read as they go)."""
        wanted = {device.id: device for device in new.enabled_devices}
        self.config = new
        self.timezone = ZoneInfo(new.opening_hours.timezone)
        for instrument in list(self.instruments):
            device = wanted.get(instrument.id)
            same_hardware = device is not None and (
                device.source,
                device.profile,
                device.address,
            ) == (instrument.config.source, instrument.config.profile, instrument.config.address)
            if device is not None and same_hardware:
                instrument.config = device
                continue
            self._stop(instrument)
        running = {instrument.id for instrument in self.instruments}
        for device_id, device in wanted.items():
            if device_id not in running:
                instrument = self._make(device, profiles.get(device_id))
                self.instruments.append(instrument)
                self._start(instrument)

    async def read_until_stopped(self, instrument: Instrument, stop: asyncio.Event) -> None:
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
                await wait_or_stop(stop, INSTRUMENT_RESTART_S)
            else:
                return

    async def _simulate(self, instrument: Instrument, stop: asyncio.Event) -> None:
        # Start at a random phase so that fifty booths started together do not read in step.
        delay = self.rng.uniform(0, instrument.config.interval_s)
        while not await wait_or_stop(stop, delay):
            self.read_simulated(instrument)
            if instrument.status is not DeviceStatusCode.OK:
                instrument.on_status(DeviceStatusCode.OK, "simulated")
            delay = instrument.config.interval_s  # a pushed configuration may change it

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

    # --- readings ------------------------------------------------------------------------

    def submit_reading(
        self, instrument: Instrument, draft: ReadingDraft, received_at: datetime
    ) -> Reading | None:
        """Queue the reading a decoder produced; None if it breaks the contract."""
        consultation = self.consultation.current
        if consultation.refused is not None and consultation.refused != self._refused_consultation:
            # Once per distinct problem; the file's content itself is never sent or logged.
            log.warning("consultation id not used: %s", consultation.refused)
            self.recorder.record_event(
                "consultation_id_refused", Severity.WARNING, consultation.refused
            )
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
            self.recorder.record_event(
                "reading_refused", Severity.WARNING, f"{instrument.id}: {reason}"
            )
            return None
        speed = reading.values.get("speed") if reading.kind is ReadingKind.POSITION else None
        if speed is not None and speed >= MOVING_SPEED:
            self.moving_at = received_at
        return self.recorder.submit(lambda seq: reading.model_copy(update={"seq": seq}))

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
