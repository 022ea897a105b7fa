"""``fleet config push|status|diff``: desired configuration from the technician's seat."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from fleet.cli.common import (
    ConfigOption,
    JsonOption,
    document_error,
    error,
    fail_with,
    load_config,
    open_influx,
)
from fleet.desired.retained import publish_desired, read_config_state
from fleet.desired.targets import TARGET_HELP, SyncState, next_version, select_agents
from fleet.errors import FleetError, TargetError
from fleet.storage.queries import list_agents
from vigie_core.clock import utc_now
from vigie_core.contract.settings import DesiredConfig, ManagedSettings, differences
from vigie_core.documents import load_yaml_document
from vigie_core.errors import DocumentError

console = Console()
config_app = typer.Typer(help="Desired configuration: push, status, diff.", no_args_is_help=True)

STATE_STYLE = {
    SyncState.IN_SYNC: "green",
    SyncState.PENDING: "yellow",
    SyncState.REJECTED: "bold red",
    SyncState.LOCAL: "dim",
}


class ConfigFile(ManagedSettings):
    """A file for ``fleet config push``: the managed settings and a schema version."""

    schema_version: Literal[1]

    def settings(self) -> ManagedSettings:
        return ManagedSettings.model_validate(self.model_dump(exclude={"schema_version"}))


@config_app.command("push")
def push(
    file: Annotated[Path, typer.Argument(help="YAML: schema_version 1 and the settings.")],
    target: Annotated[list[str], typer.Option("--target", "-t", help=TARGET_HELP)],
    config: ConfigOption = None,
    dry_run: Annotated[bool, typer.Option(help="Say what would be sent; send nothing.")] = False,
) -> None:
    """Publish a desired configuration (retained) for every targeted agent.

    Agents online apply it at once; offline ones when they reconnect. Check with
    'fleet config status'.
    """
    settings = load_config(config)
    try:
        wanted = load_yaml_document(file, ConfigFile).settings()
    except DocumentError as exc:
        raise document_error(exc) from None
    try:
        with open_influx(settings) as influx:
            agents = select_agents(list_agents(influx, utc_now()), target)
        state = read_config_state(settings.mqtt)
    except TargetError as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    except FleetError as exc:
        raise fail_with(exc) from None
    now = utc_now()
    messages = [
        DesiredConfig(
            agent_id=agent_id,
            version=next_version(
                state[agent_id].desired if agent_id in state else None,
                state[agent_id].reported if agent_id in state else None,
            ),
            sha256=wanted.digest(),
            issued_at=now,
            settings=wanted,
        )
        for agent_id in agents
    ]
    if dry_run:
        for message in messages:
            console.print(f"would push version {message.version} to {message.agent_id}")
        return
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("pushing", total=len(messages))
            publish_desired(settings.mqtt, messages, lambda _: progress.advance(task))
    except FleetError as exc:
        raise fail_with(exc) from None
    console.print(
        f"Pushed configuration {wanted.digest()[:12]} to {len(messages)} agent(s): "
        + ", ".join(f"{m.agent_id} (v{m.version})" for m in messages)
    )


@config_app.command("status")
def status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Per agent: desired and reported versions, and in sync, pending or rejected."""
    settings = load_config(config)
    try:
        rows = read_config_state(settings.mqtt)
    except FleetError as exc:
        raise fail_with(exc) from None
    if as_json:
        typer.echo(json.dumps([row.as_json() for row in rows.values()], indent=2))
        return
    if not rows:
        console.print("No agent has a desired configuration or has reported one yet.")
        return
    table = Table("agent", "desired", "running", "state", "reason", header_style="bold")
    for row in rows.values():
        style = STATE_STYLE[row.state]
        table.add_row(
            row.agent_id,
            str(row.desired.version) if row.desired else "-",
            str(row.reported.version) if row.reported else "-",
            f"[{style}]{row.state.value}[/]",
            escape(row.reason),
        )
    console.print(table)


@config_app.command("diff")
def diff(
    agent_id: Annotated[str, typer.Argument(help="The agent.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """What the agent should run and does not (desired against reported)."""
    settings = load_config(config)
    try:
        row = read_config_state(settings.mqtt).get(agent_id)
    except FleetError as exc:
        raise fail_with(exc) from None
    if row is None or row.desired is None:
        error(f"no desired configuration for {agent_id}")
        raise typer.Exit(1)
    if row.reported is None:
        found = [
            (name, value, None)
            for name, value, _ in differences(row.desired.settings, ManagedSettings())
        ]
    else:
        found = differences(row.desired.settings, row.reported.settings)
    if as_json:
        typer.echo(
            json.dumps([{"setting": n, "desired": d, "running": r} for n, d, r in found], indent=2)
        )
        return
    console.print(
        f"{agent_id}: {row.state.value}" + (f" ({escape(row.reason)})" if row.reason else "")
    )
    if not found:
        console.print("Runs every desired setting.")
    for name, desired, running in found:
        console.print(f"  {name}: desired {desired!r}, running {running!r}")
