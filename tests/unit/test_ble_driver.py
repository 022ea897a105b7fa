"""The BLE driver against a fake backend that replays real byte sequences.

The blood-pressure value is Nordic's full 0x2A35 test vector (see
tests/unit/decoders/test_gatt.py); the fake device disconnects at awkward moments,
hangs, refuses pairing and writes, and comes back.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from edge_agent.errors import BleError
from edge_agent.instruments.decoders import registry
from edge_agent.instruments.drivers.ble import BleDriver, matches
from edge_agent.instruments.profiles import BleMatch, BleSettings
from vigie_core.contract.data import DeviceStatusCode

BP = bytes.fromhex("1E8A00580078000000041114293B3C00012700")
BATTERY = b"\x5a"
SERIAL = b"5120345"
NOW = datetime(2026, 11, 25, 9, 30, 15, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


@dataclass
class FakeDevice:
    """One device's behaviour, shared by every connection to it."""

    address: str = "AA:BB:CC:DD:EE:01"
    name: str = "A&D_UA-651"
    services: list[str] = field(default_factory=lambda: ["00001810-0000-1000-8000-00805f9b34fb"])
    characteristics: set[str] = field(
        default_factory=lambda: {"2a35", "2a19", "2a25", "2a2b", "2a52"}
    )
    values: dict[str, bytes] = field(default_factory=lambda: {"2a19": BATTERY, "2a25": SERIAL})
    #: What happens after subscribing, per connection: a script run by the fake.
    script: Callable[[FakeConnection], Awaitable[None]] | None = None
    refuse_pairing: bool = False
    refuse_writes: set[str] = field(default_factory=set)
    hang_on: set[str] = field(default_factory=set)  # "connect", "read"
    drop_during: set[str] = field(default_factory=set)  # "subscribe", "write"
    connections: int = 0
    writes: list[tuple[str, bytes]] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)
    visible: bool = True


class FakeConnection:
    def __init__(self, device: FakeDevice, on_disconnect: Callable[[], None]) -> None:
        self.device = device
        self.on_disconnect = on_disconnect
        self.callbacks: dict[str, Callable[[bytes], None]] = {}
        self.connected = False

    async def connect(self) -> None:
        if "connect" in self.device.hang_on:
            await asyncio.sleep(3600)
        self.device.connections += 1
        self.connected = True

    async def disconnect(self) -> None:
        self.connected = False

    async def pair(self) -> None:
        if self.device.refuse_pairing:
            raise BleError("AuthenticationFailed")

    def has_characteristic(self, uuid: str) -> bool:
        return uuid in self.device.characteristics

    async def read(self, uuid: str) -> bytes:
        if "read" in self.device.hang_on:
            await asyncio.sleep(3600)
        return self.device.values[uuid]

    async def start_notify(self, uuid: str, callback: Callable[[bytes], None]) -> None:
        if "subscribe" in self.device.drop_during:
            self.device.drop_during.discard("subscribe")
            self.drop()
            raise BleError("Not connected")
        self.callbacks[uuid] = callback
        self.device.subscriptions.append(uuid)

    async def write(self, uuid: str, data: bytes, response: bool) -> None:
        if "write" in self.device.drop_during:
            self.device.drop_during.discard("write")
            self.drop()
            raise BleError("Not connected")
        if uuid in self.device.refuse_writes:
            raise BleError("Write not permitted")
        self.device.writes.append((uuid, data))
        if self.device.script is not None:
            asyncio.get_running_loop().create_task(self.device.script(self))

    def notify(self, uuid: str, data: bytes) -> None:
        self.callbacks[uuid](data)

    def drop(self) -> None:
        self.connected = False
        self.on_disconnect()


class FakeBackend:
    def __init__(self, *devices: FakeDevice) -> None:
        self.devices = list(devices)

    async def find(self, match: BleMatch, scan_s: float) -> str | None:
        await asyncio.sleep(0)
        for device in self.devices:
            if device.visible and matches(match, device.address, device.name, device.services):
                return device.address
        return None

    def connection(self, address: str, on_disconnect: Callable[[], None]) -> FakeConnection:
        device = next(device for device in self.devices if device.address == address)
        return FakeConnection(device, on_disconnect)


class Recorder:
    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.statuses: list[tuple[DeviceStatusCode, str]] = []

    def on_frame(self, format_name: str, data: bytes, received_at: datetime) -> None:
        self.frames.append((format_name, data))

    def on_status(self, status: DeviceStatusCode, detail: str = "") -> None:
        self.statuses.append((status, detail))

    def on_garbage(self, size: int, reason: str) -> None:
        raise AssertionError("BLE has no framing garbage")

    def codes(self) -> list[DeviceStatusCode]:
        return [code for code, _ in self.statuses]


def _settings(**overrides: object) -> BleSettings:
    document: dict[str, object] = {
        "match": {"service_uuids": ["1810"], "name_prefix": "A&D"},
        "pair": True,
        "scan_timeout_s": 1,
        "connect_timeout_s": 0.5,
        "read": [
            {"characteristic": "2a25", "optional": True},
            {"characteristic": "2a19", "optional": True},
        ],
        "subscribe": [{"characteristic": "2a35"}, {"characteristic": "2a36", "optional": True}],
        "write": [{"characteristic": "2a2b", "value": "current_time", "optional": True}],
        "disconnects_after_transfer": True,
    }
    document.update(overrides)
    return BleSettings.model_validate(document)


def _driver(backend: FakeBackend, **overrides: object) -> BleDriver:
    return BleDriver(
        settings=_settings(**overrides),
        address=None,
        timezone=PARIS,
        clock=lambda: NOW,
        backend=backend,  # type: ignore[arg-type]
        reconnect_initial_s=0.01,
        reconnect_max_s=0.04,
        rng=random.Random(3),
    )


async def _until(condition: Callable[[], bool], what: str, limit_s: float = 10.0) -> None:
    """A hang guard, never a timing assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        await asyncio.sleep(0.005)


def _run(
    scenario: Callable[[asyncio.Event], Awaitable[None]], *pairs: tuple[BleDriver, Recorder]
) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(driver.run(rec, stop)) for driver, rec in pairs]
        try:
            await scenario(stop)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)

    asyncio.run(main())


async def _send_stored(connection: FakeConnection, count: int = 3) -> None:
    for _ in range(count):
        connection.notify("2a35", BP)
        await asyncio.sleep(0)
    connection.drop()


def test_discovery_needs_every_criterion() -> None:
    match = BleMatch(service_uuids=["1810"], name_prefix="A&D")
    full = ["00001810-0000-1000-8000-00805f9b34fb"]
    assert matches(match, "AA:BB:CC:DD:EE:01", "A&D_UA-651", full)
    assert not matches(match, "AA:BB:CC:DD:EE:01", "Omron", full)
    assert not matches(
        match, "AA:BB:CC:DD:EE:01", "A&D_UA-651", ["0000180d-0000-1000-8000-00805f9b34fb"]
    )
    assert not matches(BleMatch(address="AA:BB:CC:DD:EE:02"), "AA:BB:CC:DD:EE:01", None, [])


def test_happy_path_reads_subscribes_sets_the_clock_and_delivers_in_order() -> None:
    impostor = FakeDevice(address="AA:BB:CC:DD:EE:09", name="Omron")  # wrong name prefix
    device = FakeDevice(script=_send_stored)
    backend = FakeBackend(impostor, device)
    recorder = Recorder()
    driver = _driver(backend)

    async def scenario(stop: asyncio.Event) -> None:
        await _until(lambda: DeviceStatusCode.DISCONNECTED in recorder.codes(), "transfer done")

    _run(scenario, (driver, recorder))
    assert impostor.connections == 0
    assert recorder.frames[:5] == [("2a25", SERIAL), ("2a19", BATTERY), *[("2a35", BP)] * 3]
    assert recorder.codes()[:2] == [DeviceStatusCode.OK, DeviceStatusCode.DISCONNECTED]
    assert "transfer complete" in recorder.statuses[1][1]
    assert device.subscriptions[0] == "2a35"  # 2a36 is optional and absent: skipped
    ((uuid, value), *_) = device.writes
    assert uuid == "2a2b"
    written = registry.decode("2a2b", value).as_json()
    assert written["timestamp"] == "2026-11-25T10:30:15"  # 09:30:15 UTC in Paris
    assert written["day_of_week"] == "wednesday"
    assert registry.decode("2a35", recorder.frames[2][1]).as_json()["systolic"] == 138.0


def test_racp_request_is_written_after_subscribing() -> None:
    device = FakeDevice(characteristics={"2a18", "2a52"}, script=_send_stored)
    device.values = {}
    recorder = Recorder()
    driver = _driver(
        FakeBackend(device),
        subscribe=[{"characteristic": "2a18"}, {"characteristic": "2a52"}],
        write=[{"characteristic": "2a52", "value": "racp_all_records", "optional": False}],
        read=[],
    )

    async def scenario(stop: asyncio.Event) -> None:
        await _until(lambda: device.writes != [], "RACP written")

    _run(scenario, (driver, recorder))
    assert device.subscriptions[:2] == ["2a18", "2a52"]
    assert device.writes[0] == ("2a52", bytes([0x01, 0x01]))


@pytest.mark.parametrize("moment", ["subscribe", "write"])
def test_a_drop_mid_setup_reconnects_without_doubling_callbacks(moment: str) -> None:
    sent: list[int] = []

    async def one_reading(connection: FakeConnection) -> None:
        connection.notify("2a35", BP)
        sent.append(1)

    device = FakeDevice(script=one_reading, drop_during={moment})
    recorder = Recorder()
    driver = _driver(FakeBackend(device), disconnects_after_transfer=False)

    async def scenario(stop: asyncio.Event) -> None:
        await _until(lambda: len(sent) >= 1, "a reading after the reconnection")

    _run(scenario, (driver, recorder))
    assert device.connections >= 2
    assert DeviceStatusCode.DISCONNECTED in recorder.codes()
    assert [frame for frame in recorder.frames if frame[0] == "2a35"] == [("2a35", BP)]


def test_after_a_transfer_the_backoff_starts_again_from_its_first_step() -> None:
    device = FakeDevice(script=_send_stored)
    recorder = Recorder()
    driver = _driver(FakeBackend(device))
    driver.reconnect_initial_s, driver.reconnect_max_s = 0.02, 10.0

    async def scenario(stop: asyncio.Event) -> None:
        await _until(lambda: device.connections >= 3, "three transfers")

    _run(scenario, (driver, recorder))
    bp_frames = [frame for frame in recorder.frames if frame[0] == "2a35"]
    assert len(bp_frames) >= 9
    # Every wait after a complete transfer is within the first step (0.01-0.02 s).
    assert all(delay <= 0.02 for delay in driver.delays[:2])


def test_a_hanging_device_is_bounded_and_does_not_stall_a_healthy_one() -> None:
    hanging = FakeDevice(address="AA:BB:CC:DD:EE:07", hang_on={"connect"})
    healthy = FakeDevice(script=_send_stored)
    stuck_rec, good_rec = Recorder(), Recorder()
    stuck = _driver(FakeBackend(hanging))
    stuck.address = hanging.address
    good = _driver(FakeBackend(healthy))

    async def scenario(stop: asyncio.Event) -> None:
        await _until(lambda: healthy.connections >= 3, "healthy device read three times")
        await _until(lambda: stuck_rec.statuses != [], "the hang reported")

    _run(scenario, (stuck, stuck_rec), (good, good_rec))
    assert "did not answer" in stuck_rec.statuses[0][1]
    assert len([f for f in good_rec.frames if f[0] == "2a35"]) >= 9


def test_a_hanging_optional_read_is_skipped() -> None:
    device = FakeDevice(script=_send_stored, hang_on={"read"})
    recorder = Recorder()

    async def scenario(stop: asyncio.Event) -> None:
        await _until(lambda: ("2a35", BP) in recorder.frames, "measurement despite the hang")

    _run(scenario, (_driver(FakeBackend(device)), recorder))
    assert ("2a19", BATTERY) not in recorder.frames


def test_refused_pairing_needs_a_human() -> None:
    device = FakeDevice(refuse_pairing=True)
    recorder = Recorder()

    async def scenario(stop: asyncio.Event) -> None:
        await _until(lambda: recorder.statuses != [], "a status")

    _run(scenario, (_driver(FakeBackend(device)), recorder))
    code, detail = recorder.statuses[0]
    assert code is DeviceStatusCode.ERROR
    assert "pairing" in detail


def test_missing_required_characteristic_needs_a_human() -> None:
    device = FakeDevice(characteristics={"2a19"})
    recorder = Recorder()

    async def scenario(stop: asyncio.Event) -> None:
        await _until(lambda: recorder.statuses != [], "a status")

    _run(scenario, (_driver(FakeBackend(device)), recorder))
    assert recorder.statuses[0][0] is DeviceStatusCode.ERROR
    assert "2a35" in recorder.statuses[0][1]


def test_refused_writes_optional_goes_on_required_retries() -> None:
    optional = FakeDevice(script=_send_stored, refuse_writes={"2a2b"})
    rec_optional = Recorder()

    async def scenario(stop: asyncio.Event) -> None:
        await _until(lambda: DeviceStatusCode.OK in rec_optional.codes(), "connected")

    _run(scenario, (_driver(FakeBackend(optional)), rec_optional))
    assert rec_optional.codes()[0] is DeviceStatusCode.OK

    required = FakeDevice(refuse_writes={"2a2b"})
    rec_required = Recorder()
    driver = _driver(
        FakeBackend(required), write=[{"characteristic": "2a2b", "hex": "00", "optional": False}]
    )

    async def scenario_required(stop: asyncio.Event) -> None:
        await _until(lambda: required.connections >= 2, "retried")

    _run(scenario_required, (driver, rec_required))
    assert any("refused the write" in detail for _, detail in rec_required.statuses)


@pytest.mark.parametrize("phase", ["scanning", "connected", "backing off"])
def test_stop_is_prompt_in_every_phase(phase: str) -> None:
    device = FakeDevice(visible=phase != "scanning")
    recorder = Recorder()
    driver = _driver(FakeBackend(device), disconnects_after_transfer=False)
    if phase == "backing off":
        device.refuse_pairing = True
        driver.reconnect_initial_s = driver.reconnect_max_s = 3600

    async def scenario(stop: asyncio.Event) -> None:
        if phase == "connected":
            await _until(lambda: DeviceStatusCode.OK in recorder.codes(), "connected")
        elif phase == "backing off":
            await _until(lambda: recorder.statuses != [], "failed once")
        else:
            await asyncio.sleep(0.05)

    _run(scenario, (driver, recorder))  # _run's wait_for(5 s) is the hang guard
