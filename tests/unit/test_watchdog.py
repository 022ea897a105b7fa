"""systemd's notifications (vigie_core/watchdog.py) over a real AF_UNIX datagram socket,
and the two main loops that send them: the agent's event loop and the fleet service's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import edge_agent.cli
import fleet.service
from fleet.config import FleetConfig
from fleet.ingest.accounting import IngestStats
from fleet.storage.influx import InfluxClient
from vigie_core.watchdog import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket where systemd's would be, named in $NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    assert len(str(path)) < 100  # sun_path holds 108 bytes
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        yield sock


def received(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recv(64) for _ in range(count)]


def test_ready_and_alive_reach_the_socket(notify_socket: socket.socket) -> None:
    notifier = Notifier.from_environment()
    assert notifier.enabled
    notifier.ready()
    notifier.alive()
    assert received(notify_socket, 2) == [b"READY=1", b"WATCHDOG=1"]


def test_an_abstract_socket_is_named_with_an_at_sign() -> None:
    name = f"vigie-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        Notifier.from_environment({"NOTIFY_SOCKET": f"@{name}"}).ready()
        assert sock.recv(64) == b"READY=1"


def test_without_systemd_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ping_interval_s is None
    notifier.ready()
    notifier.alive()


def test_the_pings_come_three_times_per_watchdog_period() -> None:
    environment = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "60000000"}
    assert Notifier.from_environment(environment).ping_interval_s == 20.0
    assert Notifier.from_environment({"WATCHDOG_USEC": "60000000"}).ping_interval_s is None
    bad = {**environment, "WATCHDOG_USEC": "soon"}
    assert Notifier.from_environment(bad).ping_interval_s is None


def test_a_process_that_only_inherited_the_variables_keeps_quiet() -> None:
    environment = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "60000000"}
    for pid in (os.getpid(), os.getppid()):  # the main process, or the launcher's child
        assert Notifier.from_environment({**environment, "WATCHDOG_PID": str(pid)}).enabled
    stranger = {**environment, "WATCHDOG_PID": str(os.getpid() + 100_000)}
    assert not Notifier.from_environment(stranger).enabled


def test_a_socket_that_is_gone_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "absent"), 60_000_000)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            notifier.alive()
    assert [record.message for record in caplog.records] == [
        f"cannot notify systemd at {tmp_path / 'absent'}: No such file or directory"
    ]


def test_a_reader_that_is_behind_never_blocks_the_loop(
    notify_socket: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    # Linux queues few datagrams per socket (net.unix.max_dgram_qlen, often 10).
    notifier = Notifier.from_environment()
    with caplog.at_level(logging.WARNING):
        for _ in range(1000):
            notifier.alive()  # would hang here with a blocking socket
    assert notify_socket.recv(64) == b"WATCHDOG=1"
    assert len(caplog.records) == 1
    assert "cannot notify systemd" in caplog.records[0].message


# --- the agent: its event loop, behind every outbox thread -------------------------------


class FakeAgent:
    """What the agent's process loop uses of an Agent: run(stop), and the recorder whose
    thread must answer before each ping."""

    def __init__(self, stuck: threading.Event | None = None, runs_for_s: float = 0.5) -> None:
        self.config = SimpleNamespace(agent_id="booth-01")
        self.recorder = SimpleNamespace(call=self._call)
        self.stuck = stuck
        self.runs_for_s = runs_for_s

    async def _call(self, function: Callable[[], object]) -> object:
        if self.stuck is not None:
            await asyncio.to_thread(self.stuck.wait)  # an outbox write that never ends
        return function()

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.sleep(self.runs_for_s)
        stop.set()


def test_the_agent_says_ready_then_pings_from_its_loop(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "60000")  # a ping every 20 ms
    asyncio.run(edge_agent.cli._run([FakeAgent(), FakeAgent()]))  # type: ignore[list-item]
    first, second, third = received(notify_socket, 3)
    assert (first, second, third) == (b"READY=1", b"WATCHDOG=1", b"WATCHDOG=1")


def test_a_stuck_outbox_thread_stops_the_agents_pings(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "60000")
    stuck = threading.Event()
    agents = [FakeAgent(), FakeAgent(stuck=stuck, runs_for_s=0.3)]
    stop = asyncio.Event()

    sent_while_stuck: list[bytes] = []

    async def main() -> None:
        task = asyncio.create_task(edge_agent.cli._tell_systemd(agents, stop))  # type: ignore[arg-type]
        await asyncio.sleep(0.3)  # 15 ping periods
        notify_socket.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                sent_while_stuck.append(notify_socket.recv(64))
        stop.set()
        stuck.set()
        await task

    asyncio.run(main())
    # No WATCHDOG=1 while one outbox did not answer: systemd would restart the agent.
    assert sent_while_stuck == [b"READY=1"]


# --- the fleet service: its main loop, which still logs its counts every minute --------------


class FakeIngest:
    def __init__(self, *_: object, **__: object) -> None:
        self.subscribed = threading.Event()
        self.stats = IngestStats()

    def start(self) -> None:
        self.subscribed.set()

    def stop(self) -> None: ...


class Idle:
    def __init__(self, *_: object, **__: object) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class ReachableInflux(InfluxClient):
    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", "vigie")

    def create_database(self) -> None: ...


def test_the_fleet_service_pings_from_its_loop_and_still_logs_every_interval(
    notify_socket: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("BrokerLink", "RolloutDriver", "StatusRecorder"):
        monkeypatch.setattr(fleet.service, name, Idle, raising=False)
    monkeypatch.setattr(fleet.service, "IngestService", FakeIngest)
    monkeypatch.setattr(fleet.service, "STATS_INTERVAL_S", 0.3)
    monkeypatch.setenv("WATCHDOG_USEC", "60000")  # a ping every 20 ms
    settings = FleetConfig.model_validate({"schema_version": 1, "mqtt": {"allow_plaintext": True}})
    stop = threading.Event()
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            with ReachableInflux() as influx:
                fleet.service.run_service(settings, influx, stop, None)
        except BaseException as exc:  # the test looks at it
            failures.append(exc)

    with caplog.at_level(logging.INFO, logger="fleet"):
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        messages: list[Any] = received(notify_socket, 40)  # about 0.8 s of pings
        stop.set()
        thread.join(10)
    assert failures == []
    assert messages[0] == b"READY=1"
    assert set(messages[1:]) == {b"WATCHDOG=1"}
    stats = [record for record in caplog.records if record.message.startswith("received ")]
    assert 1 <= len(stats) <= 4  # every 0.3 s, not at every ping
