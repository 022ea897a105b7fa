"""The agent's own health report: the host (psutil), every instrument, the backlog,
the outbox's disk, and what delivery cost (resent, dropped, refused).

A disk running low is said before anything is dropped: ``disk_low`` in every report
while the outbox's file system has less than ``outbox.warn_free_bytes`` free, and a
``disk_low`` event when it goes under (``disk_ok`` once it has 10 % more again)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

from edge_agent import __version__
from edge_agent.instruments.instrument import Instrument
from edge_agent.runtime.recorder import Recorder
from vigie_core.contract.data import HealthReport, Severity

#: Back over the warning level by this factor before the disk counts as fine again:
#: no event storm from a disk hovering at the level.
RECOVERY_MARGIN = 1.1


@dataclass(frozen=True, slots=True)
class SystemSample:
    cpu_percent: float
    memory_percent: float
    disk_percent: float


def sample_system(disk_path: Path) -> SystemSample:
    """CPU, memory and disk use (of the file system holding ``disk_path``), in percent.

    ``cpu_percent(interval=None)`` never blocks; it measures since its previous call,
    so the very first sample of a process is 0.0 by psutil's design.
    """
    return SystemSample(
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        memory_percent=float(psutil.virtual_memory().percent),
        disk_percent=float(
            psutil.disk_usage(str(disk_path if disk_path.exists() else "/")).percent
        ),
    )


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    """What delivery cost since the agent started."""

    resent: int
    refused: int


class HealthReporter:
    def __init__(
        self,
        recorder: Recorder,
        state_dir: Path,
        instruments: Callable[[], Sequence[Instrument]],
        delivery: Callable[[], DeliveryCounts],
        clock: Callable[[], datetime],
        warn_free_bytes: int = 0,
    ) -> None:
        self.recorder = recorder
        self.warn_free_bytes = warn_free_bytes
        self.disk_low = False
        self.state_dir = state_dir
        self._instruments = instruments
        self._delivery = delivery
        self.clock = clock
        self._started = time.monotonic()

    async def report(self) -> HealthReport:
        """Sample everything (off the event loop: psutil and SQLite both read files)
        and queue the report."""
        system = await asyncio.to_thread(sample_system, self.state_dir)
        outbox = self.recorder.outbox
        backlog = await self.recorder.call(outbox.backlog)
        disk = await self.recorder.call(outbox.disk_use)
        self._watch_disk(disk.disk_free_bytes)
        now = self.clock()
        instruments = self._instruments()
        for instrument in instruments:
            instrument.check_calibration(now)
        delivery = self._delivery()
        return self.recorder.submit(
            lambda seq: HealthReport(
                agent_id=self.recorder.agent_id,
                seq=seq,
                measured_at=now,
                agent_version=__version__,
                uptime_s=round(time.monotonic() - self._started, 3),
                cpu_percent=system.cpu_percent,
                memory_percent=system.memory_percent,
                disk_percent=system.disk_percent,
                devices=[instrument.device_status(now) for instrument in instruments],
                backlog_messages=backlog.messages,
                backlog_oldest_s=round(backlog.oldest_age_s, 3),
                resent_messages=delivery.resent,
                refused_messages=delivery.refused,
                dropped_messages=outbox.dropped,
                disk_free_bytes=disk.disk_free_bytes,
                disk_low=self.disk_low,
                outbox_bytes=disk.outbox_bytes,
                held_messages=disk.held_messages,
            )
        )

    def _watch_disk(self, free: int) -> None:
        """An event when the disk goes low, and one when it is fine again."""
        if not self.disk_low and free < self.warn_free_bytes:
            self.disk_low = True
            self.recorder.record_event(
                "disk_low",
                Severity.WARNING,
                f"{free} bytes free where the outbox is (warning under "
                f"{self.warn_free_bytes}); old messages are dropped if it fills up",
            )
        elif self.disk_low and free >= self.warn_free_bytes * RECOVERY_MARGIN:
            self.disk_low = False
            self.recorder.record_event("disk_ok", Severity.INFO, f"{free} bytes free again")
