"""Rollout decisions at fleet scale: what one step of the fleet's rollout driver costs.

    .venv/bin/python bench/rollout.py [--agents 100,1000,10000] [--repeat 5]

The driver keeps every agent's retained desired and reported release in memory,
absorbs each message as it arrives, and re-evaluates every rollout after a burst of
changes (agents report each tenth of a download). Per fleet size, with a rollout
three waves in, this prints the time to plan the waves, to absorb one retained
message, and for one step (every rollout evaluated), and the memory the view holds.
Pure code only: the broker's share is in docs/benchmarks.md's other tables.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from fleet.rollouts.plan import parse_waves, plan_waves
from fleet.rollouts.view import RolloutView
from vigie_core.contract.codec import encode
from vigie_core.contract.releases import DesiredRelease, ReportedRelease, UpdatePhase
from vigie_core.contract.rollouts import RolloutProgress, RolloutSpec
from vigie_core.contract.topics import Topics

PREFIX = "vigie"
NEW, OLD = "1.1.0", "1.0.0"
AT = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
URL = "http://central:8780"


def best_of(repeat: int, work: Callable[[], object]) -> float:
    """The fastest of `repeat` runs, in seconds (the least disturbed by the machine)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def retained_messages(spec: RolloutSpec) -> list[tuple[str, bytes]]:
    """Three waves of four released: nine in ten of those asked updated, the others
    downloading; the last wave not asked yet."""
    topics = Topics(PREFIX)
    asked = {agent for wave in spec.waves[:3] for agent in wave}
    messages = [
        (topics.rollout(spec.rollout_id, "spec"), spec.model_dump_json().encode()),
        (
            topics.rollout(spec.rollout_id, "progress"),
            RolloutProgress(rollout_id=spec.rollout_id, released_waves=3, at=AT)
            .model_dump_json()
            .encode(),
        ),
    ]
    for index, agent in enumerate(spec.agents):
        if agent in asked:
            desired = DesiredRelease(agent_id=agent, version=NEW, url=URL, issued_at=AT)
            messages.append((topics.desired_release(agent), encode(desired)))
        done = agent in asked and index % 10 != 0
        report = ReportedRelease(
            agent_id=agent,
            running=NEW if done else OLD,
            phase=UpdatePhase.COMMITTED if done else UpdatePhase.DOWNLOADING,
            target=NEW if agent in asked else None,
            progress_percent=None if done else 40,
            at=AT,
        )
        messages.append((topics.reported_release(agent), encode(report)))
    return messages


def absorbed(messages: list[tuple[str, bytes]]) -> RolloutView:
    view = RolloutView(prefix=PREFIX)
    for topic, payload in messages:
        view.absorb(topic, payload)
    return view


def measure(count: int, repeat: int) -> list[str]:
    agents = [f"booth-{number:05d}" for number in range(count)]
    shares = parse_waves("1,10,50,100%")
    plan_s = best_of(repeat, lambda: plan_waves(agents, shares, seed="r1"))
    spec = RolloutSpec(
        rollout_id="r1",
        version=NEW,
        url=URL,
        waves=plan_waves(agents, shares, seed="r1"),
        max_failure_percent=5,
        targets=["all"],
        created_at=AT,
    )
    messages = retained_messages(spec)
    absorb_s = best_of(repeat, lambda: absorbed(messages)) / len(messages)
    gc.collect()
    tracemalloc.start()
    view = absorbed(messages)
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    step_s = best_of(repeat, view.statuses)
    return [
        f"{count:,}",
        f"{len(messages):,}",
        f"{plan_s * 1e3:.1f}",
        f"{absorb_s * 1e6:.0f}",
        f"{step_s * 1e3:.1f}",
        f"{held / 2**20:.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", default="100,1000,10000", help="fleet sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    table = Table(
        "agents",
        "retained messages",
        "plan waves ms",
        "absorb µs/message",
        "one step ms",
        "view MiB",
        title="Rollout driver, pure part",
    )
    for count in (int(item) for item in args.agents.split(",")):
        table.add_row(*measure(count, args.repeat))
    Console().print(table)


if __name__ == "__main__":
    main()
