"""Draw bench/all.py's figures as one PNG: ``python bench/chart.py <results folder>``.

Run with the tools' Python (``bench/.tools/venv/bin/python``, where ``bench/setup``
installs matplotlib): only the benchmarks draw charts, the product does not need it.
Reads ``bridges.json``, ``scale.json`` and ``footprint.json`` from the folder (whichever
exist) and writes ``benchmarks.png`` beside them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on the benchmark machine
import matplotlib.pyplot as plt


def load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def ingest_panel(axis: Any, bridges: dict[str, Any]) -> None:
    rows = [row for row in bridges["rows"] if row.get("error") is None]
    names = [row["description"] for row in rows]
    rates = [row["readings_per_cpu_s"] for row in rows]
    colours = ["tab:blue" if row["row"].startswith("fleet") else "tab:gray" for row in rows]
    axis.barh(names, rates, color=colours)
    axis.invert_yaxis()
    axis.set_xscale("log")
    axis.set_xlabel("readings stored per CPU-second of the bridge (log)")
    axis.axvline(20_000, color="tab:red", linestyle="--", label="goal, one reading a message")
    axis.axvline(100_000, color="tab:orange", linestyle="--", label="goal, batches")
    for index, (rate, row) in enumerate(zip(rates, rows, strict=True)):
        lost = f", {row['lost']:,} lost" if row["lost"] else ""
        axis.text(rate, index, f" {rate:,.0f}{lost}", va="center", fontsize=8)
    axis.legend(loc="lower right", fontsize=8)
    axis.set_title(
        f"Ingest: {bridges['agents']} agents x {bridges['readings_per_agent']:,} QoS 1 readings"
    )


def scale_panel(axis: Any, scale: dict[str, Any]) -> None:
    timeline = scale.get("timeline") or []
    if not timeline:
        axis.set_axis_off()
        return
    seconds = [point[0] for point in timeline]
    axis.plot(seconds, [point[1] for point in timeline], label="agents connected")
    axis.plot(seconds, [point[2] for point in timeline], label="messages unconfirmed")
    axis.set_xlabel("seconds since the run began")
    axis.set_ylabel("agents / messages")
    final = scale.get("final", {})
    axis.set_title(
        f"Scale: {scale['agents']:,} agents, broker restarted; "
        f"lost {final.get('lost')}, duplicated {final.get('duplicated')}"
    )
    axis.legend(fontsize=8)


def footprint_panel(axis: Any, footprint: dict[str, Any]) -> None:
    labels = ["RSS idle (MiB)", "RSS, readings (MiB)"]
    values = [footprint.get("idle_rss_mib", 0), footprint.get("readings_rss_mib", 0)]
    axis.bar(labels, values, color="tab:blue")
    axis.axhline(30, color="tab:red", linestyle="--", label="goal: 30 MB")
    for index, value in enumerate(values):
        axis.text(index, value, f"{value:.1f}", ha="center", va="bottom")
    axis.set_title(f"edge-agent run: idle CPU {footprint.get('idle_cpu_percent')} % of a core")
    axis.legend(fontsize=8)


def main() -> None:
    folder = Path(sys.argv[1])
    bridges, scale, footprint = (load(folder, name) for name in ("bridges", "scale", "footprint"))
    panels = [(p, f) for p, f in ((bridges, ingest_panel), (scale, scale_panel)) if p]
    if not panels and not footprint:
        sys.exit(f"no bridges.json, scale.json or footprint.json in {folder}")
    figure, axes = plt.subplots(
        len(panels) + (1 if footprint else 0), 1, figsize=(11, 4.5 * (len(panels) + 1))
    )
    axes = list(axes) if hasattr(axes, "__len__") else [axes]
    for axis, (figures, draw) in zip(axes, panels, strict=False):
        draw(axis, figures)
    if footprint:
        footprint_panel(axes[-1], footprint)
    figure.tight_layout()
    figure.savefig(folder / "benchmarks.png", dpi=110)


if __name__ == "__main__":
    main()
