"""What the ``fleet`` commands share: the config option, loading it, opening InfluxDB,
and printing an error the same way everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from fleet.config import CONFIG_ENV, FleetConfig, load_fleet_config
from fleet.errors import FleetError
from fleet.storage.influx import InfluxClient
from fleet.storage.queries import check_duration
from vigie_core.contract.identifiers import check_prefix
from vigie_core.errors import DocumentError, TlsError

err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help=f"Fleet YAML config (default: ${CONFIG_ENV} or ./fleet.yaml)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _duration(value: str) -> str:
    try:
        return check_duration(value, "the value")
    except FleetError as exc:
        raise typer.BadParameter(str(exc).removeprefix("the value ")) from None


def _topic_prefix(value: str) -> str:
    try:
        return check_prefix(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def duration_option(help_text: str) -> Any:
    """An option holding a duration (``30m``, ``7d``): anything else is a usage error,
    exit 2, before InfluxDB is asked."""
    return typer.Option(callback=_duration, help=help_text)


#: A topic prefix given on the command line, by the contract's rule.
TopicPrefixOption = Annotated[
    str, typer.Option(callback=_topic_prefix, help="The first topic level, as in the configs.")
]


def error(message: str) -> None:
    # soft_wrap: one line stays one line, whatever the terminal's width (scripts grep it).
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def document_error(exc: DocumentError) -> typer.Exit:
    """One ``error: <file>: <field>: <reason>`` line per problem; exit status 2."""
    for line in str(exc).splitlines():
        error(line)
    return typer.Exit(2)


def load_config(path: Path | None) -> FleetConfig:
    try:
        return load_fleet_config(path)
    except DocumentError as exc:
        raise document_error(exc) from None


def open_influx(config: FleetConfig) -> InfluxClient:
    settings = config.influxdb
    try:
        credentials = settings.credentials()
    except TlsError as exc:  # the file changed since the configuration was loaded
        error(f"influxdb: {exc}")
        raise typer.Exit(2) from None
    return InfluxClient(settings.url, settings.database, settings.timeout_s, credentials)


def fail_with(exc: FleetError) -> typer.Exit:
    error(str(exc))
    return typer.Exit(1)
