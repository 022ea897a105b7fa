"""What each pure stage of the fleet's ingest costs per reading, on one core.

    .venv/bin/python bench/ingest_stages.py

The stages the network thread runs for every message (``fleet.ingest.decoding``):
the contract's decode and validation (pydantic), the points built from it, their line
protocol; and all three together (``points_for``, what the ingest calls). For a
message holding one reading and for a batch of 100. Best of five rounds. No broker,
no database: what is left of a bridge's CPU per reading is paho, the acknowledgements
and the HTTP write (``bench/bridges.py`` measures the whole, and paho alone).

Not a test: it never fails on a figure, it prints them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

from rich.console import Console
from rich.table import Table

from fleet.ingest.decoding import UniqueClock, points_for
from fleet.storage.lineprotocol import Point, encode_point
from fleet.storage.points import message_points, receive_slots
from vigie_core.contract.codec import Message, batch_payload, decode, encode
from vigie_core.contract.data import DeviceSource, Reading, ReadingKind
from vigie_core.contract.topics import Topics

TOPICS = Topics("vigie")
AGENT = "booth-001"


def reading(seq: int, at: datetime) -> Reading:
    """A cuff reading as a real booth sends it: three values, units, the instrument."""
    return Reading(
        agent_id=AGENT,
        seq=seq,
        measured_at=at + timedelta(milliseconds=seq),
        received_at=at + timedelta(milliseconds=seq, microseconds=300),
        kind=ReadingKind.BLOOD_PRESSURE,
        device="bp",
        values={"systolic": 121.0, "diastolic": 79.0, "pulse_rate": 68.0},
        units={"systolic": "mm[Hg]", "diastolic": "mm[Hg]", "pulse_rate": "/min"},
        source=DeviceSource(profile="sig_blood_pressure", address="A4:C1:38:0B:5E:21"),
    )


def build_points(message: Message, clock: UniqueClock) -> list[Point]:
    return message_points(message, clock(receive_slots(message)))


def encode_points(points: list[Point]) -> list[str]:
    return [encode_point(point) for point in points]


def best_of(rounds: int, repeat: int, work: Callable[[], object]) -> float:
    """Seconds for one call, the best round."""
    work()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeat):
            work()
        best = min(best, (time.perf_counter() - started) / repeat)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000, help="messages a round")
    args = parser.parse_args()
    at = datetime.now(UTC) - timedelta(hours=1)
    clock = UniqueClock()
    cases = {
        "one reading a message": (
            TOPICS.reading(AGENT, ReadingKind.BLOOD_PRESSURE),
            encode(reading(1, at)),
            1,
        ),
        "batch of 100": (
            TOPICS.batch(AGENT),
            batch_payload(AGENT, True, [encode(reading(seq, at)) for seq in range(1, 101)]),
            100,
        ),
    }
    table = Table(title="bench/ingest_stages.py: µs per reading, one core, best of 5")
    columns = ("message", "bytes", "decode + validate", "points", "line protocol", "all")
    for column in (*columns, "readings / CPU-s, these stages only"):
        table.add_column(column, justify="right")
    for name, (topic, payload, readings) in cases.items():
        repeat = max(1, args.repeat // readings)
        _, message = decode(TOPICS, topic, payload)
        points = message_points(message, clock(receive_slots(message)))
        stages = [
            best_of(5, repeat, partial(decode, TOPICS, topic, payload)),
            best_of(5, repeat, partial(build_points, message, clock)),
            best_of(5, repeat, partial(encode_points, points)),
            best_of(5, repeat, partial(points_for, TOPICS, topic, payload, clock)),
        ]
        micro = [seconds / readings * 1e6 for seconds in stages]
        table.add_row(
            name,
            f"{len(payload):,}",
            *(f"{value:.1f}" for value in micro),
            f"{1e6 / micro[-1]:,.0f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
