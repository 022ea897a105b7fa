"""Outbox benchmark: what a write costs with the disk checks, in room and over budget.

Each write measures the outbox's files and the file system before it goes (see
edge_agent/storage/space.py); this shows that cost, and the cost of making room by
the overflow policy once the outbox is full, against a budget of ``--budget-mib``.

    .venv/bin/python bench/outbox.py --messages 20000

Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edge_agent.storage.outbox import Outbox
from edge_agent.storage.space import MIB

PAYLOAD = b'{"schema_version":1,"type":"reading","kind":"blood_pressure",' + b"x" * 250 + b"}"


def run(folder: Path, messages: int, budget: int, synchronous: str) -> tuple[float, float, int]:
    """(writes a second, due(100) in ms at the end, messages dropped)."""
    outbox = Outbox(
        folder / f"outbox-{synchronous}-{budget}.sqlite3",
        synchronous,  # type: ignore[arg-type]
        budget,
    )
    started = time.perf_counter()
    for seq in range(1, messages + 1):
        kind = "health" if seq % 60 == 0 else "reading"
        outbox.add(seq, f"vigie/v1/booth-01/{kind}", PAYLOAD, kind)
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(20):
        outbox.due(100)
    due_ms = (time.perf_counter() - started) / 20 * 1000
    dropped = outbox.dropped
    outbox.close()
    return messages / elapsed, due_ms, dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--budget-mib", type=int, default=2, help="the small budget")
    args = parser.parse_args()
    table = Table("synchronous", "budget", "messages", "writes/s", "due(100) ms", "dropped")
    with tempfile.TemporaryDirectory() as tmp:
        for synchronous in ("normal", "full"):
            count = args.messages if synchronous == "normal" else args.messages // 10
            for budget in (256 * MIB, args.budget_mib * MIB):
                rate, due_ms, dropped = run(Path(tmp), count, budget, synchronous)
                table.add_row(
                    synchronous,
                    f"{budget // MIB} MiB",
                    str(count),
                    f"{rate:,.0f}",
                    f"{due_ms:.2f}",
                    str(dropped),
                )
    Console().print(table)


if __name__ == "__main__":
    main()
