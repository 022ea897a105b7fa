"""The write path before InfluxDB is checked: the spill only, never InfluxDB itself."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from fleet.ingest.accounting import IngestStats
from fleet.ingest.storing import PointStore
from fleet.storage.lineprotocol import Point

LINES = [
    b"blood_pressure,agent_id=a systolic=120 1\n",
    b"blood_pressure,agent_id=a systolic=121 2\n",
]


class Writer:
    """Records every write; InfluxDB always takes them."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def write(self, points: Sequence[Point]) -> None:
        self.bodies.append(b"points")

    def write_body(self, body: bytes) -> None:
        self.bodies.append(body)


def eventually(predicate: Callable[[], object], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Store:
    def __init__(self, spill_dir: Path | None) -> None:
        self.writer = Writer()
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.stats = IngestStats()
        self.store = PointStore(
            self.writer,
            spill_dir,
            1024 * 1024,
            self.stats,
            time.time_ns,
            self.stopping,
            random.Random(1),
            self.ready,
        )


@pytest.fixture
def spilled(tmp_path: Path) -> Iterator[Store]:
    made = Store(tmp_path / "spill")
    made.store.start()
    yield made
    made.stopping.set()
    made.store.stop(5)


def test_before_the_check_batches_go_to_the_spill_and_drain_only_after_it(
    spilled: Store,
) -> None:
    assert spilled.store.store(LINES)
    spilled.store.store_best_effort([Point("agent_delivery", {"redelivered": 1}, 3, {})])
    assert spilled.stats.spilled_points == 3
    time.sleep(1.2)  # the drainer is running: it must not touch InfluxDB yet
    assert spilled.writer.bodies == []
    spilled.ready.set()
    eventually(lambda: len(spilled.writer.bodies) == 2)
    assert spilled.writer.bodies[0] == b"".join(LINES)
    assert spilled.writer.bodies[1].startswith(b"agent_delivery")
    assert spilled.stats.stored_points == 3


def test_without_a_spill_a_batch_waits_for_the_check() -> None:
    made = Store(None)
    made.store.start()
    result: list[bool] = []
    writing = threading.Thread(target=lambda: result.append(made.store.store(LINES)))
    writing.start()
    time.sleep(0.7)
    assert made.writer.bodies == []
    assert result == []
    made.ready.set()
    writing.join(5)
    assert result == [True]
    assert made.writer.bodies == [b"".join(LINES)]


def test_without_a_spill_stopping_before_the_check_leaves_the_batch_unwritten() -> None:
    made = Store(None)
    made.stopping.set()
    assert made.store.store(LINES) is False
    assert made.writer.bodies == []
