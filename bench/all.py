"""Every benchmark of the performance issue in one run: one table, one chart.

    .venv/bin/python bench/all.py            # about 25 minutes on the 2-core machine
    .venv/bin/python bench/all.py --quick    # small sizes, about 8 minutes

Runs, one after the other (never two at once: they would share the two cores):

- ``bench/bridges.py``: the same load through the fleet (1, 2 and 4 instances, single
  readings and batches), Node-RED + node-red-contrib-influxdb and mqtt2influxdb, each
  with a fresh broker and InfluxDB;
- ``bench/scale.py``: 10,000 agents on one broker and one fleet instance, then a broker
  restart;
- ``bench/footprint.py``: ``edge-agent run``'s memory, CPU and bytes on the wire.

The peers are installed by ``bench/setup`` (into the git-ignored ``bench/.tools/``),
which this script runs first when they are missing. Every script's output goes to
``<out>/<name>.log`` and its figures to ``<out>/<name>.json``; then the summary table
(goals and ratios, every figure from this run) is printed and written to
``<out>/summary.json``, and the chart to ``<out>/benchmarks.png`` (matplotlib, from the
tools' virtual environment: the product does not depend on it).

Not a test: it never fails on a figure, it prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
TOOLS = HERE / ".tools"
TOOLS_PYTHON = TOOLS / "venv" / "bin" / "python"

console = Console(width=160)


@dataclass(frozen=True)
class Step:
    name: str
    arguments: list[str]
    quick: list[str]


STEPS = [
    Step("bridges", ["--readings", "5000"], ["--agents", "4", "--readings", "1000"]),
    Step(
        "scale",
        ["--agents", "10000", "--steady-s", "120"],
        ["--agents", "1000", "--steady-s", "30", "--outage-s", "10"],
    ),
    Step("footprint", ["--window-s", "120"], ["--window-s", "30"]),
]

#: The issue's goals: (figure, target, higher is better).
INGEST_SINGLE_TARGET = 20_000
INGEST_BATCH_TARGET = 100_000
RSS_TARGET_MIB = 30.0
IDLE_CPU_TARGET_PERCENT = 0.5


def ensure_tools() -> None:
    """The peers and matplotlib: bench/setup installs what is missing (a second run
    only checks)."""
    subprocess.run(["bash", str(HERE / "setup")], check=True)


def run_step(step: Step, out: Path, quick: bool, extra: list[str]) -> dict[str, Any] | None:
    """One benchmark script, its output shown and kept; its figures (None: it failed)."""
    figures_file = out / f"{step.name}.json"
    command = [
        sys.executable,
        str(HERE / f"{step.name}.py"),
        *(step.quick if quick else step.arguments),
        *extra,
        "--json",
        str(figures_file),
    ]
    console.rule(f"[bold]{step.name}[/]: {' '.join(command[1:])}")
    started = time.monotonic()
    with (out / f"{step.name}.log").open("w") as log:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=HERE.parent
        )
        assert process.stdout is not None  # noqa: S101
        for line in process.stdout:
            sys.stdout.write(line)
            log.write(line)
        code = process.wait()
    console.print(f"{step.name}: exit {code} after {time.monotonic() - started:.0f} s")
    if not figures_file.exists():
        return None
    figures: dict[str, Any] = json.loads(figures_file.read_text())
    figures["exit_code"] = code
    return figures


def _row(bridges: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    for row in (bridges or {}).get("rows", []):
        if row["row"] == name and row.get("error") is None:
            found: dict[str, Any] = row
            return found
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def summarise(results: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """One line per figure: what, target, measured, ratio, met (None: no target)."""
    lines: list[dict[str, Any]] = []

    def add(goal: str, what: str, measured: Any, target: Any = None, higher: bool = True) -> None:
        met = None
        if target is not None and isinstance(measured, int | float):
            met = measured >= target if higher else measured <= target
        ratio = _ratio(measured, target) if isinstance(measured, int | float) else None
        lines.append(
            {
                "goal": goal,
                "what": what,
                "measured": measured,
                "target": target,
                "ratio": ratio,
                "met": met,
            }
        )

    bridges = results.get("bridges")
    per_cpu = {
        name: row["readings_per_cpu_s"] if (row := _row(bridges, name)) else None
        for name in (
            "fleet-1",
            "fleet-2",
            "fleet-4",
            "fleet-1-batch",
            "fleet-2-batch",
            "fleet-4-batch",
            "node-red",
            "node-red-batch",
            "mqtt2influxdb",
            "mqtt2influxdb-seq-tag",
            "paho-floor",
            "fleet-1-preloaded",
            "fleet-1-batch-preloaded",
        )
    }
    drain = {
        name: row["wall_readings_per_s"] if (row := _row(bridges, name)) else None
        for name in (
            "fleet-1-preloaded",
            "fleet-2-preloaded",
            "fleet-4-preloaded",
            "fleet-1-batch-preloaded",
            "fleet-2-batch-preloaded",
            "fleet-4-batch-preloaded",
        )
    }
    add(
        "1 ingest",
        "fleet x1, one reading a message: readings / CPU-s",
        per_cpu["fleet-1"],
        INGEST_SINGLE_TARGET,
    )
    add(
        "1 ingest",
        "fleet x1, batches: readings / CPU-s",
        per_cpu["fleet-1-batch"],
        INGEST_BATCH_TARGET,
    )
    add(
        "1 ingest",
        "paho alone (receive + PUBACK, nothing stored): messages / CPU-s",
        per_cpu["paho-floor"],
        INGEST_SINGLE_TARGET,
    )
    add(
        "1 ingest",
        "fleet x1 / paho alone, readings / CPU-s",
        _ratio(per_cpu["fleet-1"], per_cpu["paho-floor"]),
    )
    for kind in ("", "-batch"):
        one = drain[f"fleet-1{kind}-preloaded"]
        add("1 ingest", f"fleet x1{kind}, preloaded: readings/s draining", one)
        for count in (2, 4):
            add(
                "1 ingest",
                f"fleet x{count}{kind}, preloaded: readings/s vs x1",
                _ratio(drain[f"fleet-{count}{kind}-preloaded"], one),
            )
    for row in (bridges or {}).get("rows", []):
        add(
            "1 ingest",
            f"{row['row']}: lost / duplicated",
            f"{row['lost']} / {row['duplicated']}" if row.get("error") is None else row["error"],
        )
    for peer in ("node-red", "node-red-batch", "mqtt2influxdb", "mqtt2influxdb-seq-tag"):
        add(
            "4 peers",
            f"fleet x1 readings / CPU-s vs {peer}",
            _ratio(per_cpu["fleet-1"], per_cpu[peer]),
        )

    scale = results.get("scale")
    if scale:
        ramp, restart = scale.get("ramp_up", {}), scale.get("broker_restart", {})
        steady, final = scale.get("steady", {}), scale.get("final", {})
        add("2 scale", "agents", scale.get("agents"))
        add("2 scale", "ramp-up: all connected (s)", ramp.get("all_connected_s"))
        add("2 scale", "ramp-up: presence exact (s)", ramp.get("presence_exact_s"))
        add(
            "2 scale",
            "steady: messages/s made / confirmed",
            f"{steady.get('generated_per_s')} / {steady.get('confirmed_per_s')}",
        )
        usage = steady.get("usage", {})
        add(
            "2 scale",
            "steady: RSS MiB broker / fleet",
            " / ".join(str(usage.get(n, {}).get("rss_mib")) for n in ("mosquitto", "fleet")),
        )
        add("2 scale", "restart: all reconnected (s)", restart.get("all_reconnected_s"))
        add("2 scale", "restart: presence exact (s)", restart.get("presence_exact_s"))
        add("2 scale", "restart: backlog drained (s)", restart.get("backlog_drained_s"))
        add("2 scale", "lost", final.get("lost"), 0, higher=False)
        add("2 scale", "duplicated", final.get("duplicated"), 0, higher=False)

    footprint = results.get("footprint")
    if footprint:
        add(
            "3 footprint",
            "idle RSS (MiB)",
            footprint.get("idle_rss_mib"),
            RSS_TARGET_MIB,
            higher=False,
        )
        add(
            "3 footprint",
            "idle CPU (% of a core)",
            footprint.get("idle_cpu_percent"),
            IDLE_CPU_TARGET_PERCENT,
            higher=False,
        )
        add("3 footprint", "bytes per hour idle", footprint.get("idle_bytes_per_hour"))
        add("3 footprint", "bytes per reading live", footprint.get("live_bytes_per_reading"))
        add(
            "3 footprint",
            "bytes per reading, backlog batched",
            footprint.get("backlog_bytes_per_reading_batch_100"),
        )
        add(
            "3 footprint",
            "bytes per reading, backlog one a message",
            footprint.get("backlog_bytes_per_reading_batch_1"),
        )
    return lines  # fmt: skip


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_summary(lines: list[dict[str, Any]], machine: dict[str, Any]) -> None:
    table = Table(
        title=f"bench/all.py, {machine['when']}: {machine['cpus']} CPUs ({machine['cpu']}), "
        f"{machine['memory_gib']} GiB, Python {machine['python']}"
    )
    for column in ("goal", "figure", "measured", "target", "measured / target", "met"):
        table.add_column(column, justify="left" if column in ("goal", "figure") else "right")
    for line in lines:
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[line["met"]]
        table.add_row(
            line["goal"],
            line["what"],
            _text(line["measured"]),
            _text(line["target"]),
            _text(line["ratio"]),
            met,
        )
    console.print(table)


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--only", default=",".join(step.name for step in STEPS))
    parser.add_argument("--out", type=Path, help="default: bench/results/<UTC time>")
    parser.add_argument("--no-chart", action="store_true")
    args = parser.parse_args()
    names = args.only.split(",")
    unknown = set(names) - {step.name for step in STEPS}
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}")
    out = args.out or HERE / "results" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    if "bridges" in names or not args.no_chart:
        ensure_tools()

    results: dict[str, dict[str, Any] | None] = {}
    for step in STEPS:
        if step.name in names:
            results[step.name] = run_step(step, out, args.quick, [])
    about = machine()
    lines = summarise(results)
    (out / "summary.json").write_text(
        json.dumps({"machine": about, "quick": args.quick, "lines": lines}, indent=1)
    )
    print_summary(lines, about)
    if not args.no_chart:
        chart = out / "benchmarks.png"
        subprocess.run([str(TOOLS_PYTHON), str(HERE / "chart.py"), str(out)], check=False)
        if chart.exists():
            console.print(f"chart: {chart}")
    console.print(f"figures and logs: {out}")


if __name__ == "__main__":
    main()
