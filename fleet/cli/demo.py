"""``fleet demo``: what ``./scripts/demo`` runs (``fleet.devstack.demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fleet.cli.common import fail_with
from fleet.devstack.demo import DemoOptions, run_demo
from fleet.errors import DevstackError

console = Console()


def demo(
    booths: Annotated[int, typer.Option(min=0, max=2000, help="Simulated booths.")] = 50,
    buses: Annotated[int, typer.Option(min=0, max=50, help="Simulated health buses.")] = 1,
    mqtt_port: Annotated[
        int, typer.Option(envvar="VIGIE_DEMO_MQTT_PORT", help="Port of the demo's Mosquitto.")
    ] = 11883,
    influx_port: Annotated[
        int, typer.Option(envvar="VIGIE_DEMO_INFLUX_PORT", help="Port of the demo's InfluxDB.")
    ] = 18086,
    folder: Annotated[Path, typer.Option("--dir", help="Where the demo keeps its data.")] = Path(
        ".vigie/demo"
    ),
) -> None:
    """Run a local broker, InfluxDB, the fleet service and a simulated fleet; show it live."""

    try:
        run_demo(DemoOptions(folder, booths, buses, mqtt_port, influx_port), console)
    except DevstackError as exc:
        raise fail_with(exc) from None
