"""How the ``fleet`` commands show things to people: tables, ages, delivery, values
with their units. Pure: strings and rich renderables, no I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table

from fleet.cli.units import shown as display
from fleet.rollouts.plan import Outcome, RolloutStatus
from fleet.storage.presence import AgentStatus
from fleet.storage.queries import AgentView, Delivery
from vigie_core.contract.data import READING_FIELDS, ReadingKind

STATUS_STYLE = {
    AgentStatus.ONLINE: "green",
    AgentStatus.OFFLINE: "bold red",
    AgentStatus.CLOSED: "dim",
}


def ago(at: datetime | None, now: datetime) -> str:
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
            ago(view.last_seen, now),
            escape(view.agent_version or "?"),
            ", ".join(view.devices),
        )
    return table


def describe_calibration(days: float | None) -> str:
    """``in 12 days``, ``today``, ``OVERDUE by 3 days``; empty when no date is set."""
    if days is None:
        return ""
    count = int(days)
    if count == 0:
        return "today"
    unit = "day" if abs(count) == 1 else "days"
    return f"in {count} {unit}" if count > 0 else f"OVERDUE by {-count} {unit}"


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
    held = health.get("held_messages") or 0
    return (
        f"agent backlog: {health.get('backlog_messages') or 0} messages"
        f"{f' ({held} in memory: the disk is full)' if held else ''}, oldest "
        f"{health.get('backlog_oldest_s') or 0:.0f} s; resent "
        f"{health.get('resent_messages') or 0}, dropped for want of room "
        f"{health.get('dropped_messages') or 0}, refused by the broker "
        f"{health.get('refused_messages') or 0}"
    )


def describe_disk(health: dict[str, Any]) -> str:
    """``disk 97 %, 12.0 MiB free (LOW), outbox 3.1 MiB``."""
    free = health.get("disk_free_bytes")
    text = f"disk {health['disk_percent']:.0f} %"
    if free is not None:
        text += f", {free / 2**20:.1f} MiB free{' (LOW)' if health.get('disk_low') else ''}"
    if health.get("outbox_bytes"):
        text += f", outbox {health['outbox_bytes'] / 2**20:.1f} MiB"
    return text


def _pairs(text: str | None) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split(";") if "=" in pair) if text else {}


def format_values(row: dict[str, Any]) -> str:
    """``systolic 128 mmHg  diastolic - (cuff_error)``: values in the units read on the
    device (``fleet.cli.units``), invalid ones as a dash with the device's reason,
    never as a number."""
    fields = READING_FIELDS[ReadingKind(row["kind"])]
    units, invalid = _pairs(row.get("units")), _pairs(row.get("invalid"))
    shown = []
    for name in fields:
        if name in invalid:
            shown.append(f"{name} - ({invalid[name]})")
        elif row.get(name) is not None:
            shown.append(f"{name} {display(row[name], units.get(name, ''))}")
    return "  ".join(shown)


# --- rollouts ---------------------------------------------------------------------------


def progress_bar(status: RolloutStatus, width: int = 30) -> ProgressBar:
    """Agents updated out of all the rollout's agents."""
    return ProgressBar(
        total=max(1, len(status.outcomes)), completed=status.total(Outcome.UPDATED), width=width
    )


def rollouts_table(statuses: list[RolloutStatus]) -> Table:
    """Every rollout, a line each, compact enough for an 80-column terminal (long ids
    and versions fold)."""
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0))
    table.add_column("rollout", overflow="fold", min_width=10)
    table.add_column("version", overflow="fold", min_width=9)
    for name in ("state", "waves", "progress", "updated", "failed", "pending"):
        table.add_column(name, no_wrap=True)
    for status in statuses:
        table.add_row(
            status.spec.rollout_id,
            status.spec.version,
            status.state.value,
            f"{status.released_waves}/{len(status.spec.waves)}",
            progress_bar(status, width=10),
            f"{status.total(Outcome.UPDATED)}/{len(status.outcomes)}",
            str(status.total(Outcome.FAILED) + status.total(Outcome.EXCUSED)),
            str(status.total(Outcome.PENDING)),
        )
    return table


def rollout_detail(status: RolloutStatus, details: list[dict[str, object]]) -> Group:
    """One rollout: its progress, each wave's counts, and the agents not done yet."""
    spec = status.spec
    updated = status.total(Outcome.UPDATED)
    header = Table.grid(padding=(0, 1))
    header.add_row(
        f"[bold]{spec.rollout_id}[/]: {spec.version}, {status.state.value}",
        escape(f"({status.reason})" if status.reason else ""),
    )
    header.add_row(progress_bar(status), f"{updated}/{len(status.outcomes)} updated")
    waves = Table(
        "wave", "agents", "updated", "failed", "pending", "not asked", "cancelled",
        header_style="bold",
    )  # fmt: skip
    for number, counts in enumerate(status.waves, start=1):
        marker = "" if number <= status.released_waves else " (not released)"
        waves.add_row(
            f"{number}{marker}",
            str(counts.size),
            str(counts.updated),
            str(counts.failed),
            str(counts.pending),
            str(counts.not_asked),
            str(counts.cancelled),
        )
    parts: list[object] = [header, waves]
    if details:
        agents = Table("agent", "outcome", "running", "phase", "reason", header_style="bold")
        for row in details:
            agents.add_row(*(escape(str(row[key] or "-")) for key in row))
        parts.append(agents)
    return Group(*parts)  # type: ignore[arg-type]
