"""Real instruments, opt-in: they need a BLE adapter or a serial port with a device.

    VIGIE_TEST_BLE_PROFILE=sig_blood_pressure [VIGIE_TEST_BLE_ADDRESS=AA:BB:...] \\
        .venv/bin/pytest tests/hardware -s      # then take a measurement on the device
    VIGIE_TEST_SERIAL_PROFILE=nonin_df2 VIGIE_TEST_SERIAL_PORT=/dev/ttyUSB0 \\
        .venv/bin/pytest tests/hardware -s

Each test waits (up to VIGIE_TEST_WAIT_S, 120 s by default) for one frame that the
profile's decoder turns into a valid reading. Without the variables they are skipped.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from edge_agent.instruments.decoders import registry
from edge_agent.instruments.drivers.base import Driver
from edge_agent.instruments.profiles import DEFAULT_PROFILES_DIR, DeviceProfile, load_profiles
from edge_agent.instruments.readings import ReadingOrigin, build_reading
from vigie_core.clock import utc_now
from vigie_core.contract.data import DeviceStatusCode

WAIT_S = float(os.environ.get("VIGIE_TEST_WAIT_S", "120"))


class FirstReading:
    def __init__(self, done: asyncio.Event) -> None:
        self.done = done
        self.readings: list[object] = []
        self.statuses: list[tuple[DeviceStatusCode, str]] = []

    def on_frame(self, format_name: str, data: bytes, received_at: datetime) -> None:
        draft = registry.decode(format_name, data).reading()
        if draft is not None:
            origin = ReadingOrigin("hardware-test", "d1", None, ZoneInfo("Europe/Paris"))
            self.readings.append(build_reading(draft, origin, 1, received_at))
            self.done.set()

    def on_status(self, status: DeviceStatusCode, detail: str = "") -> None:
        self.statuses.append((status, detail))
        print(f"status: {status.value} {detail}")

    def on_garbage(self, size: int, reason: str) -> None:
        print(f"garbage: {size} bytes, {reason}")


def _profile(variable: str) -> DeviceProfile:
    name = os.environ.get(variable)
    if not name:
        pytest.skip(f"needs hardware: set {variable}")
    return load_profiles(DEFAULT_PROFILES_DIR)[name]


def _first_reading(driver: Driver) -> FirstReading:
    async def main() -> FirstReading:
        done, stop = asyncio.Event(), asyncio.Event()
        listener = FirstReading(done)
        task = asyncio.create_task(driver.run(listener, stop))
        try:
            await asyncio.wait_for(done.wait(), WAIT_S)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        return listener

    return asyncio.run(main())


def test_a_real_ble_instrument_gives_a_reading() -> None:
    profile = _profile("VIGIE_TEST_BLE_PROFILE")
    from edge_agent.instruments.drivers.ble import BleDriver

    assert profile.ble is not None
    driver = BleDriver(
        settings=profile.ble,
        address=os.environ.get("VIGIE_TEST_BLE_ADDRESS"),
        timezone=ZoneInfo("Europe/Paris"),
        clock=utc_now,
    )
    listener = _first_reading(driver)
    assert listener.readings
    assert DeviceStatusCode.OK in [status for status, _ in listener.statuses]


def test_a_real_serial_instrument_gives_a_reading() -> None:
    profile = _profile("VIGIE_TEST_SERIAL_PROFILE")
    port = os.environ.get("VIGIE_TEST_SERIAL_PORT")
    if not port:
        pytest.skip("needs hardware: set VIGIE_TEST_SERIAL_PORT")
    from edge_agent.instruments.drivers.serial_port import SerialDriver

    assert profile.serial is not None
    listener = _first_reading(SerialDriver(port=port, settings=profile.serial))
    assert listener.readings
