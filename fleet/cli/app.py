"""``fleet``: the fleet service and the technicians' command line."""

from __future__ import annotations

import json
import logging
import random
import signal
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fleet.cli.common import ConfigOption, JsonOption, load_config, open_influx
from fleet.cli.common import fail_with as _fail
from fleet.cli.config import config_app
from fleet.cli.release import keys_app, release_app
from fleet.cli.rollout import rollout_app
from fleet.cli.security import agent_app, broker_app, ca_app, db_app
from fleet.config import FleetConfig
from fleet.errors import FleetError, InfluxRejected, InfluxUnauthorized, InfluxUnavailable
from fleet.ingest.service import IngestService
from fleet.releases.artifacts import ArtifactServer
from fleet.rollouts.driver import RolloutDriver
from fleet.storage.influx import InfluxClient
from fleet.storage.presence import AgentStatus
from fleet.storage.queries import AgentView, Delivery, agent_detail, list_agents, readings
from vigie_core.backoff import backoff_delay
from vigie_core.clock import utc_now
from vigie_core.contract.data import READING_FIELDS, ReadingKind
from vigie_core.errors import TlsError

app = typer.Typer(
    help="Vigie fleet: service and technician tools.", no_args_is_help=True, add_completion=False
)
app.add_typer(agent_app, name="agent")
app.add_typer(ca_app, name="ca")
app.add_typer(broker_app, name="broker")
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
app.add_typer(release_app, name="release")
app.add_typer(rollout_app, name="rollout")
console = Console()
log = logging.getLogger("fleet")

STATUS_STYLE = {
    AgentStatus.ONLINE: "green",
    AgentStatus.OFFLINE: "bold red",
    AgentStatus.CLOSED: "dim",
}


def _ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "never"
    seconds = max(0, int((now - at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def agents_table(views: list[AgentView], now: datetime) -> Table:
    """The ``fleet agents`` table (also shown live by the demo)."""
    table = Table(show_lines=False, header_style="bold")
    for column in ("agent", "site", "kind", "state", "last seen", "version", "devices"):
        table.add_column(column)
    for view in views:
        style = STATUS_STYLE[view.status]
        table.add_row(
            view.agent_id,
            escape(view.site_name or view.site_id or "?"),
            view.kind or "?",
            f"[{style}]{view.status.value}[/]",
            _ago(view.last_seen, now),
            escape(view.agent_version or "?"),
            ", ".join(view.devices),
        )
    return table


def _wait_for_influx(client: InfluxClient, stop: threading.Event) -> bool:
    attempt = 0
    while not stop.is_set():
        try:
            if client.credentials.apply():
                # A secured server: 'fleet db init' made the database; we only check
                # that our user may use it, and stop at once if not.
                client.check_access()
            else:
                client.create_database()
        except InfluxUnauthorized as exc:
            log.error("%s", exc)  # noqa: TRY400 - the reason is the message, no trace
            raise typer.Exit(1) from None
        except InfluxRejected as exc:
            log.error("%s (has 'fleet db init' been run?)", exc)  # noqa: TRY400
            raise typer.Exit(1) from None
        except InfluxUnavailable as exc:
            delay = backoff_delay(attempt, 1.0, 30.0, random.Random())
            log.warning("%s; retrying in %.0f s", exc, delay)
            attempt += 1
            stop.wait(delay)
        else:
            return True
    return False


def _serve_artifacts(settings: FleetConfig) -> ArtifactServer | None:
    config = settings.artifacts
    if config.dir is None:
        return None
    config.dir.mkdir(parents=True, exist_ok=True)
    server = ArtifactServer(config.dir, config.host, config.port)
    server.start()
    log.info("serving releases from %s at %s", config.dir, server.url)
    return server


@app.command()
def serve(
    config: ConfigOption = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    ready_file: Annotated[
        Path | None,
        typer.Option(help="Create this file once subscribed (for scripts that start agents)."),
    ] = None,
) -> None:
    """Run the fleet service: MQTT in, InfluxDB out, until SIGTERM."""
    settings = load_config(config)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO: one line per InfluxDB write.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    influx = open_influx(settings)
    try:
        if not _wait_for_influx(influx, stop):
            return
        try:
            service = IngestService(settings, influx)
        except TlsError as exc:
            log.error("%s", exc)  # noqa: TRY400
            raise typer.Exit(2) from None
        service.start()
        rollouts = RolloutDriver(settings)
        rollouts.start()
        artifacts = _serve_artifacts(settings)
        log.info(
            "fleet service %s started (database %s at %s)",
            settings.mqtt.client_id,
            settings.influxdb.database,
            settings.influxdb.url,
        )
        if ready_file is not None:
            while not (service.subscribed.wait(0.5) or stop.is_set()):
                pass
            ready_file.write_text(f"{settings.mqtt.client_id}\n")
        while not stop.wait(60):
            stats = service.stats
            log.info(
                "received %d, stored %d points, rejected %s",
                stats.received,
                stats.stored_points,
                dict(stats.rejected) or "none",
            )
        rollouts.stop()
        service.stop()
        if artifacts is not None:
            artifacts.stop()
        log.info("fleet service stopped")
    finally:
        influx.close()


@app.command()
def agents(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List every agent: site, kind, state (online, offline, closed), last seen, devices."""
    settings = load_config(config)
    now = utc_now()
    with open_influx(settings) as client:
        try:
            views = list_agents(client, now)
        except FleetError as exc:
            raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps([view.as_json() for view in views], indent=2))
        return
    if not views:
        console.print("No agent has reported yet.")
        return
    console.print(agents_table(views, now))
    counts = {status: sum(view.status is status for view in views) for status in AgentStatus}
    console.print(", ".join(f"{count} {status.value}" for status, count in counts.items()))


@agent_app.command("show")
def agent(
    agent_id: Annotated[str, typer.Argument(help="The agent's id.")],
    window: Annotated[str, typer.Option(help="Sequence accounting over: 1h, 24h, 7d...")] = "24h",
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
            raise _fail(exc) from None
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
        f"agent {escape(view.agent_version or '?')}, last seen {_ago(view.last_seen, now)}"
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
            f"disk {health['disk_percent']:.0f} %, devices ok "
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
            device.get("detail") or "",
        )
    if detail.devices:
        console.print(table)


def describe_calibration(days: float | None) -> str:
    """``in 12 days``, ``today``, ``OVERDUE by 3 days``; empty when no date is set."""
    if days is None:
        return ""
    count = int(days)
    if count == 0:
        return "today"
    unit = "day" if abs(count) == 1 else "days"
    return f"in {count} {unit}" if count > 0 else f"OVERDUE by {-count} {unit}"


@app.command(name="readings")
def readings_command(
    agent_id: Annotated[str, typer.Argument(help="The agent's id.")],
    kind: Annotated[ReadingKind | None, typer.Option(help="Only this kind of reading.")] = None,
    since: Annotated[str, typer.Option(help="How far back: 30m, 1h, 7d...")] = "1h",
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
            raise _fail(exc) from None
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


def describe_delivery(delivery: Delivery) -> str:
    """``delivery (last 24h): 120 messages stored, seq 1-125, missing 5 (50-54), ...``"""
    text = (
        f"delivery (last {delivery.window}): {delivery.stored} messages stored, "
        f"seq {delivery.first_seq}-{delivery.last_seq}, missing {delivery.missing}"
    )
    if delivery.gaps:
        shown = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in delivery.gaps)
        listed = sum(b - a + 1 for a, b in delivery.gaps)
        text += f" ({shown}{', ...' if delivery.missing > listed else ''})"
    return text + f", duplicates absorbed {delivery.duplicates}"


def describe_backlog(health: dict[str, Any]) -> str:
    return (
        f"agent backlog: {health.get('backlog_messages') or 0} messages, oldest "
        f"{health.get('backlog_oldest_s') or 0:.0f} s; resent "
        f"{health.get('resent_messages') or 0}, dropped over budget "
        f"{health.get('dropped_messages') or 0}, refused by the broker "
        f"{health.get('refused_messages') or 0}"
    )


def _pairs(text: str | None) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split(";") if "=" in pair) if text else {}


def format_values(row: dict[str, Any]) -> str:
    """``systolic 128 mm[Hg]  diastolic - (cuff_error)``: values with their units, and
    invalid ones as a dash with the device's reason, never as a number."""
    fields = READING_FIELDS[ReadingKind(row["kind"])]
    units, invalid = _pairs(row.get("units")), _pairs(row.get("invalid"))
    shown = []
    for name in fields:
        if name in invalid:
            shown.append(f"{name} - ({invalid[name]})")
        elif row.get(name) is not None:
            shown.append(f"{name} {row[name]:g} {units.get(name, '')}".rstrip())
    return "  ".join(shown)


@app.command()
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
    from fleet.devstack.demo import DemoOptions, run_demo  # noqa: PLC0415 - demo imports this module
    from fleet.errors import DevstackError  # noqa: PLC0415

    try:
        run_demo(DemoOptions(folder, booths, buses, mqtt_port, influx_port), console)
    except DevstackError as exc:
        raise _fail(exc) from None
