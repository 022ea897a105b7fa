"""``fleet agents``, ``fleet agent show`` and ``fleet readings``: what the agents are
doing, read from InfluxDB."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fleet.cli.common import (
    ConfigOption,
    JsonOption,
    duration_option,
    fail_with,
    load_config,
    open_influx,
)
from fleet.cli.render import (
    STATUS_STYLE,
    agents_table,
    ago,
    describe_backlog,
    describe_calibration,
    describe_delivery,
    describe_disk,
    format_values,
)
from fleet.errors import FleetError
from fleet.storage.presence import AgentStatus
from fleet.storage.queries import agent_detail, list_agents, readings
from vigie_core.clock import utc_now
from vigie_core.contract.data import ReadingKind

console = Console()


def agents(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List every agent: site, kind, state (online, offline, closed), last seen, devices."""
    settings = load_config(config)
    now = utc_now()
    with open_influx(settings) as client:
        try:
            views = list_agents(client, now)
        except FleetError as exc:
            raise fail_with(exc) from None
    if as_json:
        typer.echo(json.dumps([view.as_json() for view in views], indent=2))
        return
    if not views:
        console.print("No agent has reported yet.")
        return
    console.print(agents_table(views, now))
    counts = {status: sum(view.status is status for view in views) for status in AgentStatus}
    console.print(", ".join(f"{count} {status.value}" for status, count in counts.items()))


def agent_show(
    agent_id: Annotated[str, typer.Argument(help="The agent's id.")],
    window: Annotated[str, duration_option("Sequence accounting over: 1h, 24h, 7d...")] = "24h",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """One agent's details, latest health, instruments and delivery accounting."""
    settings = load_config(config)
    now = utc_now()
    with open_influx(settings) as client:
        try:
            detail = agent_detail(client, agent_id, now, window)
        except FleetError as exc:
            raise fail_with(exc) from None
    if as_json:
        typer.echo(json.dumps(detail.as_json(), indent=2))
        return
    view = detail.agent
    style = STATUS_STYLE[view.status]
    console.print(
        f"[bold]{view.agent_id}[/]  [{style}]{view.status.value}[/] since "
        f"{view.status_since:%Y-%m-%d %H:%M:%S} UTC (session {view.session})"
    )
    console.print(
        f"site: {escape(view.site_name or '?')} ({view.site_id}), {view.kind}, "
        f"agent {escape(view.agent_version or '?')}, last seen {ago(view.last_seen, now)}"
    )
    if view.opening_hours is not None:
        week = view.opening_hours.week
        hours = "; ".join(f"{day} {' '.join(ranges)}" for day, ranges in week.items()) or "closed"
        console.print(f"opening hours ({view.opening_hours.timezone}): {hours}")
    if detail.health:
        health = detail.health
        console.print(
            f"health at {health['time']}: uptime {health['uptime_s']:.0f} s, "
            f"cpu {health['cpu_percent']:.0f} %, memory {health['memory_percent']:.0f} %, "
            f"{describe_disk(health)}, devices ok "
            f"{health['devices_ok']}/{health['devices_total']}"
        )
    console.print(describe_delivery(detail.delivery))
    if detail.health:
        console.print(describe_backlog(detail.health))
    table = Table(
        "device",
        "kind",
        "status",
        "last reading age",
        "battery",
        "calibration due",
        "last reading",
        "detail",
        header_style="bold",
    )
    for device in detail.devices:
        age = device.get("last_reading_age_s")
        battery = device.get("battery_percent")
        due = device.get("calibration_due_days")
        table.add_row(
            device["device"],
            device.get("kind") or "?",
            device["status"],
            f"{age:.0f} s" if age is not None else "never",
            f"{battery:.0f} %" if battery is not None else "",
            describe_calibration(due),
            escape(format_values(last)) if (last := device.get("last_reading")) else "",
            device.get("detail") or "",
        )
    if detail.devices:
        console.print(table)


def readings_command(
    agent_id: Annotated[str, typer.Argument(help="The agent's id.")],
    kind: Annotated[ReadingKind | None, typer.Option(help="Only this kind of reading.")] = None,
    since: Annotated[str, duration_option("How far back: 30m, 1h, 7d...")] = "1h",
    limit: Annotated[int, typer.Option(help="At most this many readings.")] = 100,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """An agent's readings from InfluxDB, newest first."""
    settings = load_config(config)
    with open_influx(settings) as client:
        try:
            rows = readings(client, agent_id, kind, since, limit)
        except FleetError as exc:
            raise fail_with(exc) from None
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print(f"No readings from {agent_id} in the last {since}.")
        return
    table = Table("time", "kind", "device", "seq", "values", "quality", header_style="bold")
    for row in rows:
        table.add_row(
            row["time"],
            row["kind"],
            row.get("device", "?"),
            str(row.get("seq")),
            escape(format_values(row)),
            escape(str(row.get("quality", "")).replace(";", ", ")),
        )
    console.print(table)
