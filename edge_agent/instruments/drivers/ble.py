"""BLE instruments over bleak: find, connect, pair, read, subscribe, write, reconnect.

The driver speaks to a :class:`BleBackend`, a two-method seam: the real one wraps
``bleak.BleakScanner`` and ``bleak.BleakClient`` (imported lazily, so an agent
without BLE instruments never loads bleak, and tests replay byte sequences through a
fake). bleak's exceptions are translated into :class:`BleError` at exactly one
boundary, :class:`BleakBackend`.

Every step is bounded by a timeout, so a device that stops answering in the middle of
a GATT operation costs its own task a few seconds and never holds up the other
instruments sharing the event loop. Nothing an instrument does makes ``run`` raise:
faults become statuses, and the driver reconnects with capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypeVar
from zoneinfo import ZoneInfo

from edge_agent.aio import wait_or_stop
from edge_agent.errors import BleError
from edge_agent.instruments.decoders.gatt import full_uuid, short_uuid
from edge_agent.instruments.decoders.gatt.date_time import encode_current_time, encode_date_time
from edge_agent.instruments.decoders.gatt.glucose import racp_report_all_records
from edge_agent.instruments.drivers.base import InstrumentListener
from edge_agent.instruments.profiles import BleMatch, BleSettings, BleWrite
from vigie_core.backoff import backoff_delay
from vigie_core.contract.data import DeviceStatusCode

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long a clean disconnect may take before it is abandoned.
DISCONNECT_TIMEOUT_S = 5.0


class BleConnection(Protocol):
    """The part of a GATT client the driver uses (a subset of BleakClient's)."""

    async def connect(self) -> None: ...
    async def disconnect(self) -> None: ...
    async def pair(self) -> None: ...
    def has_characteristic(self, uuid: str) -> bool: ...
    async def read(self, uuid: str) -> bytes: ...
    async def start_notify(self, uuid: str, callback: Callable[[bytes], None]) -> None: ...
    async def write(self, uuid: str, data: bytes, response: bool) -> None: ...


class BleBackend(Protocol):
    async def find(self, match: BleMatch, scan_s: float) -> str | None:
        """The address of a device advertising what ``match`` asks for, or None."""

    def connection(self, address: str, on_disconnect: Callable[[], None]) -> BleConnection:
        """A not-yet-connected client; ``on_disconnect`` is called when the link drops."""


def matches(match: BleMatch, address: str, name: str | None, service_uuids: list[str]) -> bool:
    """Whether an advertisement meets every criterion the profile gives."""
    if match.address is not None and address.upper() != match.address:
        return False
    if match.name_prefix is not None and not (name or "").startswith(match.name_prefix):
        return False
    advertised = set()
    for uuid in service_uuids:
        with contextlib.suppress(ValueError):  # vendor 128-bit UUIDs are not SIG ones
            advertised.add(short_uuid(uuid))
    return set(match.service_uuids) <= advertised


class _Outcome(enum.Enum):
    STOPPED = "stopped"
    TRANSFER_COMPLETE = "transfer_complete"
    LOST = "lost"


@dataclass
class BleDriver:
    """Reads one BLE instrument described by a profile's ``ble`` section."""

    settings: BleSettings
    address: str | None
    timezone: ZoneInfo
    clock: Callable[[], datetime]
    backend: BleBackend = field(default_factory=lambda: BleakBackend())  # noqa: PLW0108 - defined below
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    #: Delays the reconnection backoff chose, newest last (for tests and logs).
    delays: list[float] = field(default_factory=list)

    async def run(self, listener: InstrumentListener, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                outcome = await _until_stopped(self._session(listener), stop)
            except BleError as exc:
                code = DeviceStatusCode.ERROR if exc.needs_human else DeviceStatusCode.DISCONNECTED
                listener.on_status(code, str(exc))
            except Exception as exc:  # an instrument must never take the agent down
                log.exception("BLE instrument failed unexpectedly")
                listener.on_status(DeviceStatusCode.ERROR, f"unexpected: {exc!r}"[:200])
            else:
                if outcome is _Outcome.STOPPED:
                    return
                if outcome is _Outcome.TRANSFER_COMPLETE:
                    listener.on_status(
                        DeviceStatusCode.DISCONNECTED,
                        "transfer complete; waiting for the next measurement",
                    )
                    attempt = 0
                else:
                    listener.on_status(DeviceStatusCode.DISCONNECTED, "connection lost")
            delay = backoff_delay(attempt, self.reconnect_initial_s, self.reconnect_max_s, self.rng)
            self.delays.append(delay)
            attempt += 1
            if await wait_or_stop(stop, delay):
                return

    async def _session(self, listener: InstrumentListener) -> _Outcome:
        settings = self.settings
        address = await self._locate()
        lost = asyncio.Event()
        connection = self.backend.connection(address, lost.set)
        frames = 0

        def deliver(format_name: str) -> Callable[[bytes], None]:
            def on_value(data: bytes) -> None:
                nonlocal frames
                frames += 1
                listener.on_frame(format_name, bytes(data), self.clock())

            return on_value

        step = settings.connect_timeout_s
        try:
            await self._prepare(connection, address, listener)
            for item in settings.subscribe:
                if connection.has_characteristic(item.characteristic):
                    async with asyncio.timeout(step):
                        await connection.start_notify(
                            item.characteristic, deliver(item.format_name)
                        )
            listener.on_status(DeviceStatusCode.OK, f"connected to {address}")
            for write in settings.write:
                await self._write(connection, write, address, step)
            await lost.wait()
        except TimeoutError as exc:
            raise BleError(f"{address} did not answer within {step:g} s") from exc
        finally:
            with contextlib.suppress(BleError, TimeoutError):
                async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                    await connection.disconnect()
        if settings.disconnects_after_transfer and frames:
            return _Outcome.TRANSFER_COMPLETE
        return _Outcome.LOST

    async def _locate(self) -> str:
        settings = self.settings
        address = self.address or settings.match.address
        if address is not None:
            return address
        async with asyncio.timeout(settings.scan_timeout_s + DISCONNECT_TIMEOUT_S):
            found = await self.backend.find(settings.match, settings.scan_timeout_s)
        if found is None:
            raise BleError(f"no device matching the profile within {settings.scan_timeout_s:g} s")
        return found

    async def _prepare(
        self, connection: BleConnection, address: str, listener: InstrumentListener
    ) -> None:
        """Connect, bond if asked, check the characteristics, read the one-off values."""
        settings = self.settings
        step = settings.connect_timeout_s
        async with asyncio.timeout(step):
            await connection.connect()
        if settings.pair:
            try:
                async with asyncio.timeout(step):
                    await connection.pair()
            except (BleError, TimeoutError) as exc:
                raise BleError(f"pairing with {address} refused: {exc}", needs_human=True) from exc
        for item in (*settings.read, *settings.subscribe):
            if not item.optional and not connection.has_characteristic(item.characteristic):
                raise BleError(
                    f"{address} has no characteristic {item.characteristic}: wrong profile?",
                    needs_human=True,
                )
        for item in settings.read:
            if not connection.has_characteristic(item.characteristic):
                continue
            try:
                async with asyncio.timeout(step):
                    value = await connection.read(item.characteristic)
            except (BleError, TimeoutError) as exc:
                if not item.optional:
                    raise
                log.info("%s: optional read of %s failed: %s", address, item.characteristic, exc)
                continue
            listener.on_frame(item.format_name, value, self.clock())

    async def _write(
        self, connection: BleConnection, write: BleWrite, address: str, step: float
    ) -> None:
        if not connection.has_characteristic(write.characteristic):
            if write.optional:
                return
            raise BleError(
                f"{address} has no characteristic {write.characteristic}", needs_human=True
            )
        try:
            async with asyncio.timeout(step):
                await connection.write(
                    write.characteristic, self.write_value(write), write.response
                )
        except (BleError, TimeoutError) as exc:
            if not write.optional:
                raise BleError(
                    f"{address} refused the write to {write.characteristic}: {exc}"
                ) from exc
            # Many devices never had a settable clock: read them anyway.
            log.info("%s: optional write to %s refused: %s", address, write.characteristic, exc)

    def write_value(self, write: BleWrite) -> bytes:
        """The bytes of a write step, computed now for clock settings."""
        if write.hex is not None:
            return bytes.fromhex(write.hex)
        local = self.clock().astimezone(self.timezone).replace(tzinfo=None)
        if write.value == "current_time":
            return encode_current_time(local, frozenset({"external_reference_time_update"}))
        if write.value == "date_time":
            return encode_date_time(local)
        return racp_report_all_records()


async def _until_stopped(
    session: Coroutine[object, object, _Outcome], stop: asyncio.Event
) -> _Outcome:
    """Run ``session`` until it ends or ``stop`` is set, then cancel it."""
    task = asyncio.ensure_future(session)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, BleError, TimeoutError):
        await task
    return _Outcome.STOPPED


# --- bleak -------------------------------------------------------------------------------


class BleakBackend:
    """The real backend: BlueZ through bleak. bleak is imported on first use."""

    async def find(self, match: BleMatch, scan_s: float) -> str | None:
        from bleak import BleakScanner  # noqa: PLC0415 - lazily, see the module docstring

        def wanted(device: BLEDevice, advertisement: AdvertisementData) -> bool:
            name = advertisement.local_name or device.name
            return matches(match, device.address, name, list(advertisement.service_uuids))

        try:
            device = await BleakScanner.find_device_by_filter(wanted, timeout=scan_s)
        except Exception as exc:  # bleak raises BleakError, dbus-fast and OS errors
            raise _translate(exc) from exc
        return None if device is None else str(device.address)

    def connection(self, address: str, on_disconnect: Callable[[], None]) -> BleConnection:
        return _BleakConnection(address, on_disconnect)


class _BleakConnection:
    def __init__(self, address: str, on_disconnect: Callable[[], None]) -> None:
        from bleak import BleakClient  # noqa: PLC0415

        self._client = BleakClient(address, disconnected_callback=lambda _: on_disconnect())

    async def _call(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except Exception as exc:
            raise _translate(exc) from exc

    async def connect(self) -> None:
        await self._call(self._client.connect())

    async def disconnect(self) -> None:
        await self._call(self._client.disconnect())

    async def pair(self) -> None:
        await self._call(self._client.pair())

    def has_characteristic(self, uuid: str) -> bool:
        return self._client.services.get_characteristic(full_uuid(uuid)) is not None

    async def read(self, uuid: str) -> bytes:
        return bytes(await self._call(self._client.read_gatt_char(full_uuid(uuid))))

    async def start_notify(self, uuid: str, callback: Callable[[bytes], None]) -> None:
        # bleak calls back with (characteristic, bytearray) for notifications and
        # indications alike, and confirms indications itself.
        await self._call(
            self._client.start_notify(full_uuid(uuid), lambda _, data: callback(bytes(data)))
        )

    async def write(self, uuid: str, data: bytes, response: bool) -> None:
        await self._call(self._client.write_gatt_char(full_uuid(uuid), data, response=response))


def _translate(exc: BaseException) -> BleError:
    if isinstance(exc, BleError):
        return exc
    return BleError(" ".join(f"{type(exc).__name__}: {exc}".split())[:200])
