"""Serial instruments over pyserial: open, read, frame, survive unplugging.

pyserial is blocking, so each port is read in a worker thread, one short read at a
time (the port's timeout bounds it); the framer runs in that thread too, so a device
that floods garbage costs its own thread, not the event loop the other instruments
share. An unplugged USB adapter shows as an exception on read (or on open, while it
is away): the port is reported disconnected and reopened with capped, jittered
backoff until it is back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import serial

from edge_agent.aio import wait_or_stop
from edge_agent.instruments.decoders.registry import new_framer
from edge_agent.instruments.decoders.serial.framing import Framer, Garbage
from edge_agent.instruments.drivers.base import InstrumentListener
from edge_agent.instruments.profiles import SerialSettings
from vigie_core.backoff import backoff_delay
from vigie_core.clock import utc_now
from vigie_core.contract.data import DeviceStatusCode

#: How long one blocking read may wait, so that stopping is never slower than this.
READ_TIMEOUT_S: Final = 0.2
#: At most this much is read per call: a flooding device yields between chunks.
READ_CHUNK: Final = 4096

_PARITY: Final = {
    "none": serial.PARITY_NONE,
    "even": serial.PARITY_EVEN,
    "odd": serial.PARITY_ODD,
    "mark": serial.PARITY_MARK,
    "space": serial.PARITY_SPACE,
}


@dataclass
class SerialDriver:
    """Reads one serial instrument described by a profile's ``serial`` section."""

    port: str
    settings: SerialSettings
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    #: Opens the port; tests may substitute, the default is pyserial.
    open_port: Callable[[], serial.Serial] | None = None

    def _open(self) -> serial.Serial:
        if self.open_port is not None:
            return self.open_port()
        settings = self.settings
        return serial.Serial(
            port=self.port,
            baudrate=settings.baudrate,
            bytesize=settings.bytesize,
            parity=_PARITY[settings.parity],
            stopbits=settings.stopbits,
            timeout=READ_TIMEOUT_S,
            exclusive=True,  # a second reader would steal half the frames
        )

    async def run(self, listener: InstrumentListener, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                port = await asyncio.to_thread(self._open)
            except (serial.SerialException, OSError, ValueError) as exc:
                listener.on_status(DeviceStatusCode.DISCONNECTED, _one_line(exc))
                delay = backoff_delay(
                    attempt, self.reconnect_initial_s, self.reconnect_max_s, self.rng
                )
                attempt += 1
                if await wait_or_stop(stop, delay):
                    return
                continue
            attempt = 0
            try:
                await self._session(port, listener, stop)
            except (serial.SerialException, OSError) as exc:
                listener.on_status(DeviceStatusCode.DISCONNECTED, _one_line(exc))
            finally:
                await asyncio.to_thread(port.close)

    async def _session(
        self, port: serial.Serial, listener: InstrumentListener, stop: asyncio.Event
    ) -> None:
        framer = new_framer(self.settings.decoder)
        for write in self.settings.write:
            await asyncio.to_thread(port.write, write.payload())
        listener.on_status(DeviceStatusCode.OK, f"{self.port} open")
        last_byte = time.monotonic()
        silent = False
        while not stop.is_set():
            size, events = await asyncio.to_thread(_read_frames, port, framer)
            now = time.monotonic()
            if size:
                last_byte = now
                if silent:
                    silent = False
                    listener.on_status(DeviceStatusCode.OK, f"{self.port} talking again")
            elif not silent and now - last_byte > self.settings.silence_timeout_s:
                silent = True
                listener.on_status(
                    DeviceStatusCode.DISCONNECTED,
                    f"{self.port}: nothing received for {self.settings.silence_timeout_s:g} s",
                )
            received_at = utc_now()
            for event in events:
                if isinstance(event, Garbage):
                    listener.on_garbage(event.size, event.reason)
                else:
                    listener.on_frame(self.settings.decoder, event, received_at)


def _read_frames(port: serial.Serial, framer: Framer) -> tuple[int, list[bytes | Garbage]]:
    """One blocking read (at most READ_TIMEOUT_S), fed to the framer: runs in a thread."""
    data = port.read(max(1, min(READ_CHUNK, port.in_waiting)))
    return len(data), framer.feed(data) if data else []


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
