"""The seam between drivers and the agent."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Protocol

from vigie_core.contract.data import DeviceStatusCode


class InstrumentListener(Protocol):
    """What a driver tells the agent. Called on the event loop, never blocking."""

    def on_frame(self, format_name: str, data: bytes, received_at: datetime) -> None:
        """One complete frame (a notification's value, a line, a packet) arrived."""

    def on_status(self, status: DeviceStatusCode, detail: str = "") -> None:
        """The instrument connected, disconnected or failed; ``detail`` says why."""

    def on_garbage(self, size: int, reason: str) -> None:
        """Bytes that framing had to skip (noise, half frames)."""


class Driver(Protocol):
    async def run(self, listener: InstrumentListener, stop: asyncio.Event) -> None:
        """Read the instrument until ``stop`` is set, reconnecting as needed.

        Never raises for the instrument's faults: they become statuses.
        """
