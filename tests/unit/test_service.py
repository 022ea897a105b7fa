"""``run_service``'s start-up order: without a spill InfluxDB is checked before anything
subscribes; with one the instance subscribes at once and the check runs behind it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fleet.service
from fleet.config import FleetConfig
from fleet.errors import InfluxRejected, InfluxUnavailable
from fleet.ingest.accounting import IngestStats
from fleet.service import ServiceRefused, run_service
from fleet.storage.influx import InfluxClient


class Influx(InfluxClient):
    """Unreachable until ``up`` is set; ``refuse`` makes it refuse the database."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", "vigie")
        self.up = threading.Event()
        self.refuse = False
        self.checks = 0

    def create_database(self) -> None:
        self.checks += 1
        if self.refuse:
            raise InfluxRejected("InfluxDB refused /query: 404 database not found")
        if not self.up.is_set():
            raise InfluxUnavailable("InfluxDB at http://127.0.0.1:9 unreachable")


class Parts:
    """What ``run_service`` built, in order, instead of the real connection and ingest."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.influx_ready: threading.Event | None = None
        self.started = threading.Event()

    def link(self, _settings: object) -> object:
        self.events.append("link")
        return FakeLink()

    def ingest(self, _settings: object, _influx: object, _link: object, **kw: Any) -> object:
        self.influx_ready = kw["influx_ready"]
        parts = self

        class Ingest:
            subscribed = threading.Event()
            stats = IngestStats()

            def start(self) -> None:
                parts.events.append("ingest started")
                self.subscribed.set()
                parts.started.set()

            def stop(self) -> None:
                parts.events.append("ingest stopped")

        return Ingest()


class FakeLink:
    def start(self) -> None: ...

    def stop(self) -> None: ...


class Rollouts:
    def __init__(self, *_: object) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


@pytest.fixture
def parts(monkeypatch: pytest.MonkeyPatch) -> Parts:
    made = Parts()
    monkeypatch.setattr(fleet.service, "BrokerLink", made.link)
    monkeypatch.setattr(fleet.service, "IngestService", made.ingest)
    monkeypatch.setattr(fleet.service, "RolloutDriver", Rollouts)
    monkeypatch.setattr(fleet.service, "StatusRecorder", Rollouts)  # starts, stops: no more
    monkeypatch.setattr(fleet.service, "backoff_delay", lambda *_: 0.02)
    return made


def settings(spill_dir: Path | None) -> FleetConfig:
    return FleetConfig.model_validate(
        {
            "schema_version": 1,
            "mqtt": {"allow_plaintext": True},
            "ingest": {"spill_dir": str(spill_dir) if spill_dir else None},
        }
    )


@pytest.fixture
def influx() -> Iterator[Influx]:
    with Influx() as client:
        yield client


def running(target: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # the test looks at it
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, failures


def eventually(predicate: Callable[[], object], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_without_a_spill_nothing_subscribes_before_influxdb_answers(
    parts: Parts, influx: Influx, tmp_path: Path
) -> None:
    stop = threading.Event()
    ready_file = tmp_path / "ready"
    thread, failures = running(lambda: run_service(settings(None), influx, stop, ready_file))
    eventually(lambda: influx.checks >= 5)
    assert parts.events == []
    assert not ready_file.exists()
    influx.up.set()
    assert parts.started.wait(10)
    assert parts.influx_ready is not None
    assert parts.influx_ready.is_set()  # checked before the ingest even existed
    eventually(ready_file.exists)
    stop.set()
    thread.join(10)
    assert failures == []
    assert parts.events == ["link", "ingest started", "ingest stopped"]


def test_with_a_spill_it_subscribes_at_once_and_influxdb_is_checked_behind(
    parts: Parts, influx: Influx, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stop = threading.Event()
    ready_file = tmp_path / "ready"
    spill = tmp_path / "spill"
    thread, failures = running(lambda: run_service(settings(spill), influx, stop, ready_file))
    assert parts.started.wait(10)
    eventually(ready_file.exists)
    eventually(lambda: influx.checks >= 3)
    assert parts.influx_ready is not None
    assert not parts.influx_ready.is_set()
    assert f"InfluxDB unreachable; receiving into the spill at {spill} until it answers" in (
        caplog.text
    )
    influx.up.set()
    assert parts.influx_ready.wait(10)
    stop.set()
    thread.join(10)
    assert failures == []
    assert parts.events == ["link", "ingest started", "ingest stopped"]


def test_with_a_spill_a_refusal_stops_the_service_with_its_status_and_reason(
    parts: Parts, influx: Influx, tmp_path: Path
) -> None:
    influx.refuse = True
    stop = threading.Event()
    thread, failures = running(lambda: run_service(settings(tmp_path), influx, stop, None))
    thread.join(10)
    assert not thread.is_alive()
    (failure,) = failures
    assert isinstance(failure, ServiceRefused)
    assert failure.status == 1
    assert "database not found" in str(failure)
    assert "has 'fleet db init' been run?" in str(failure)
    assert parts.influx_ready is not None
    assert not parts.influx_ready.is_set()
    assert parts.events == ["link", "ingest started", "ingest stopped"]
