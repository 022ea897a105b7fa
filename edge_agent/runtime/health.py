"""The host's own health, sampled with psutil."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil


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
