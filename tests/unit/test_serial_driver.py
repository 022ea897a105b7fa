"""The serial driver through a pseudo-terminal driven by an emulated instrument.

The pty's slave is reached through a symlink, as a real adapter is through
/dev/serial/by-id/...; "unplugging" closes the pty and removes the link, "plugging
back" creates a new pty behind the same link. The emulated GPS writes real NMEA
sentences (the widely reproduced examples of the NMEA 0183 standard), noise and
half sentences.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import pytest

from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders import registry
from edge_agent.instruments.drivers.serial_port import SerialDriver
from edge_agent.instruments.profiles import SerialSettings
from vigie_core.contract.data import DeviceStatusCode

GGA = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"
RMC = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n"


class EmulatedPort:
    """A pty behind a stable path, which a test can unplug and plug back."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master: int | None = None
        self._slave: int | None = None

    def plug(self) -> None:
        self.master, self._slave = os.openpty()
        os.set_blocking(self.master, False)
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(os.ttyname(self._slave))

    def unplug(self) -> None:
        self.link.unlink(missing_ok=True)
        for fd in (self.master, self._slave):
            if fd is not None:
                os.close(fd)
        self.master = self._slave = None

    def write(self, data: bytes) -> None:
        assert self.master is not None
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.master, view)
            except BlockingIOError:
                # The pty buffer is full until the driver reads: let it.
                continue
            view = view[written:]

    def drain_echo(self) -> None:
        """Discard whatever the slave side wrote (nothing, once pyserial set raw mode)."""
        if self.master is None:
            return
        try:
            while os.read(self.master, 4096):
                pass
        except (BlockingIOError, OSError):
            return


class Recorder:
    """An InstrumentListener that keeps everything it is told."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.statuses: list[tuple[DeviceStatusCode, str]] = []
        self.garbage: list[tuple[int, str]] = []

    def on_frame(self, format_name: str, data: bytes, received_at: datetime) -> None:
        assert format_name == "nmea"
        assert received_at.tzinfo is not None
        self.frames.append(data)

    def on_status(self, status: DeviceStatusCode, detail: str = "") -> None:
        self.statuses.append((status, detail))

    def on_garbage(self, size: int, reason: str) -> None:
        self.garbage.append((size, reason))

    @property
    def last_status(self) -> DeviceStatusCode | None:
        return self.statuses[-1][0] if self.statuses else None


def _settings(**overrides: object) -> SerialSettings:
    return SerialSettings.model_validate(
        {"baudrate": 4800, "decoder": "nmea", "silence_timeout_s": 60, **overrides}
    )


async def _until(condition: Callable[[], bool], what: str, limit_s: float = 10.0) -> None:
    """Wait for ``condition``; the limit is a hang guard, never a timing assertion."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        await asyncio.sleep(0.01)


def _run(
    scenario: Callable[[asyncio.Event], Awaitable[None]],
    *drivers: tuple[SerialDriver, Recorder],
) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(driver.run(rec, stop)) for driver, rec in drivers]
        try:
            await scenario(stop)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)

    asyncio.run(main())


def _driver(link: Path) -> SerialDriver:
    return SerialDriver(
        port=str(link),
        settings=_settings(),
        reconnect_initial_s=0.01,
        reconnect_max_s=0.05,
        rng=random.Random(1),
    )


def test_frames_survive_noise_and_half_frames(tmp_path: Path) -> None:
    port = EmulatedPort(tmp_path / "gps")
    port.plug()
    recorder = Recorder()

    async def scenario(stop: asyncio.Event) -> None:
        await _until(lambda: recorder.last_status is DeviceStatusCode.OK, "port open")
        port.write(b"\x00\xff garbage" + GGA[:20] + b"\r\n")  # noise, then a half sentence
        port.write(GGA)
        for byte in RMC:  # one byte at a time, as a slow UART delivers it
            port.write(bytes([byte]))
        await _until(lambda: recorder.frames[-1:] == [RMC.rstrip()], "the last sentence")

    try:
        _run(scenario, (_driver(port.link), recorder))
    finally:
        port.unplug()
    *noise, gga, rmc = recorder.frames
    assert [gga, rmc] == [GGA.rstrip(), RMC.rstrip()]
    draft = registry.decode("nmea", gga).reading()
    assert draft is not None
    assert draft.values["latitude"] == pytest.approx(48 + 7.038 / 60)
    # The noise and the half sentence reached the framer as garbage or the decoder as
    # a frame it refuses; in neither case did they take a good sentence with them.
    for frame in noise:
        with pytest.raises(DecodeError):
            registry.decode("nmea", frame)
    assert noise or recorder.garbage


def test_unplugged_port_is_reported_and_reopened_when_it_returns(tmp_path: Path) -> None:
    port = EmulatedPort(tmp_path / "gps")
    port.plug()
    recorder = Recorder()

    async def scenario(stop: asyncio.Event) -> None:
        await _until(lambda: recorder.last_status is DeviceStatusCode.OK, "port open")
        port.write(GGA)
        await _until(lambda: len(recorder.frames) == 1, "first frame")
        port.unplug()
        await _until(
            lambda: recorder.last_status is DeviceStatusCode.DISCONNECTED, "unplug noticed"
        )
        port.plug()
        await _until(lambda: recorder.last_status is DeviceStatusCode.OK, "port reopened")
        port.write(RMC)
        await _until(lambda: len(recorder.frames) == 2, "frame after replug")

    try:
        _run(scenario, (_driver(port.link), recorder))
    finally:
        port.unplug()
    assert recorder.frames == [GGA.rstrip(), RMC.rstrip()]
    codes = [status for status, _ in recorder.statuses]
    assert codes[0] is DeviceStatusCode.OK
    assert DeviceStatusCode.DISCONNECTED in codes
    assert all(detail for status, detail in recorder.statuses)


def test_missing_port_is_retried_until_it_appears(tmp_path: Path) -> None:
    port = EmulatedPort(tmp_path / "gps")
    recorder = Recorder()

    async def scenario(stop: asyncio.Event) -> None:
        await _until(lambda: len(recorder.statuses) >= 2, "two failed opens")
        assert {status for status, _ in recorder.statuses} == {DeviceStatusCode.DISCONNECTED}
        port.plug()
        await _until(lambda: recorder.last_status is DeviceStatusCode.OK, "port opened")
        port.write(GGA)
        await _until(lambda: len(recorder.frames) == 1, "frame")

    try:
        _run(scenario, (_driver(port.link), recorder))
    finally:
        port.unplug()
    assert str(port.link) in recorder.statuses[0][1] or "No such file" in recorder.statuses[0][1]


def test_a_device_flooding_garbage_does_not_starve_another(tmp_path: Path) -> None:
    noisy, quiet = EmulatedPort(tmp_path / "noisy"), EmulatedPort(tmp_path / "quiet")
    noisy.plug()
    quiet.plug()
    noisy_rec, quiet_rec = Recorder(), Recorder()
    flooding = True

    async def flood() -> None:
        junk = bytes(random.Random(2).randrange(256) for _ in range(2048)).replace(b"\n", b"")
        while flooding:
            await asyncio.to_thread(noisy.write, junk)
            await asyncio.sleep(0)

    async def scenario(stop: asyncio.Event) -> None:
        nonlocal flooding
        await _until(lambda: quiet_rec.last_status is DeviceStatusCode.OK, "quiet open")
        await _until(lambda: noisy_rec.last_status is DeviceStatusCode.OK, "noisy open")
        flooder = asyncio.create_task(flood())
        try:
            for _ in range(20):
                quiet.write(GGA)
                await asyncio.sleep(0.01)
            await _until(lambda: len(quiet_rec.frames) == 20, "every quiet frame")
            await _until(lambda: sum(size for size, _ in noisy_rec.garbage) > 0, "garbage seen")
        finally:
            flooding = False
            await flooder

    try:
        _run(scenario, (_driver(noisy.link), noisy_rec), (_driver(quiet.link), quiet_rec))
    finally:
        noisy.unplug()
        quiet.unplug()
    assert quiet_rec.frames == [GGA.rstrip()] * 20
    assert noisy_rec.frames == [] or all(b"$GPGGA" not in frame for frame in noisy_rec.frames)


def test_silence_is_reported_and_cleared(tmp_path: Path) -> None:
    port = EmulatedPort(tmp_path / "gps")
    port.plug()
    recorder = Recorder()
    driver = _driver(port.link)
    driver.settings = _settings(silence_timeout_s=0.3)

    async def scenario(stop: asyncio.Event) -> None:
        await _until(lambda: recorder.last_status is DeviceStatusCode.OK, "port open")
        await _until(
            lambda: recorder.last_status is DeviceStatusCode.DISCONNECTED, "silence noticed"
        )
        assert "nothing received" in recorder.statuses[-1][1]
        port.write(GGA)
        await _until(lambda: recorder.last_status is DeviceStatusCode.OK, "talking again")

    try:
        _run(scenario, (driver, recorder))
    finally:
        port.unplug()
    assert recorder.frames == [GGA.rstrip()]
