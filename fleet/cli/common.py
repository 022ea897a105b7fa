"""What the ``fleet`` commands share: the config option, loading it, opening InfluxDB,
and printing an error the same way everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from fleet.config import CONFIG_ENV, FleetConfig, load_fleet_config
from fleet.errors import FleetError
from fleet.storage.influx import InfluxClient
from vigie_core.errors import DocumentError, TlsError

err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help=f"Fleet YAML config (default: ${CONFIG_ENV} or ./fleet.yaml)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def error(message: str) -> None:
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False)


def load_config(path: Path | None) -> FleetConfig:
    try:
        return load_fleet_config(path)
    except DocumentError as exc:
        error(f"invalid fleet configuration\n{exc}")
        raise typer.Exit(2) from None


def open_influx(config: FleetConfig) -> InfluxClient:
    settings = config.influxdb
    try:
        credentials = settings.credentials()
    except TlsError as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    return InfluxClient(settings.url, settings.database, settings.timeout_s, credentials)


def fail_with(exc: FleetError) -> typer.Exit:
    error(str(exc))
    return typer.Exit(1)
