"""Decoder and framer throughput: how much CPU a reading (or a flood of noise) costs.

    .venv/bin/python bench/decoders.py [--seconds 1]

Prints one row per format: frames decoded per second (decode + reading draft +
contract validation, as the agent does), and the framers' throughput on noise.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from edge_agent.instruments.decoders import registry
from edge_agent.instruments.decoders.serial.framing import LineFramer, NoninDf2Framer
from edge_agent.instruments.profiles import DEFAULT_PROFILES_DIR, load_profiles
from edge_agent.instruments.readings import ReadingOrigin, build_reading
from edge_agent.instruments.simulation.devices import frame_for
from edge_agent.instruments.simulation.instruments import instrument_for

ORIGIN = ReadingOrigin("bench", "d1", None, ZoneInfo("Europe/Paris"))


def rate(work: object, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(100):
            work()  # type: ignore[operator]
        count += 100
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    rng = random.Random(1)
    now = datetime.now(UTC)
    local = now.astimezone(ORIGIN.timezone).replace(tzinfo=None)
    table = Table("profile", "format", "frame bytes", "decoded/s", "readings/s")
    for profile in load_profiles(DEFAULT_PROFILES_DIR).values():
        sample = instrument_for(profile.kind).sample(rng, 0.0)
        format_name, frame = frame_for(profile, "d1", sample, local, now, rng)[-1]
        fmt = registry.resolve(format_name)

        def decode_only(fmt=fmt, frame=frame) -> None:  # type: ignore[no-untyped-def]
            fmt.decode(frame)

        def full(fmt=fmt, frame=frame) -> None:  # type: ignore[no-untyped-def]
            draft = fmt.decode(frame).reading()
            if draft is not None:
                build_reading(draft, ORIGIN, 1, now, stored=True)

        table.add_row(
            profile.name,
            format_name,
            str(len(frame)),
            f"{rate(decode_only, args.seconds):,.0f}",
            f"{rate(full, args.seconds):,.0f}",
        )
    Console().print(table)

    noise = bytes(rng.randrange(256) for _ in range(1 << 20))
    framers = Table("framer", "noise MB/s", "frames found")
    for name, make in (("line", lambda: LineFramer(512)), ("nonin_df2", NoninDf2Framer)):
        framer = make()
        start = time.perf_counter()
        events = framer.feed(noise)
        elapsed = time.perf_counter() - start
        found = sum(isinstance(event, bytes) for event in events)
        framers.add_row(name, f"{len(noise) / elapsed / 1e6:.2f}", str(found))
    Console().print(framers)


if __name__ == "__main__":
    main()
