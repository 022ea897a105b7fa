"""What the fleet derives for operators, as points (pure): each agent's state against
its opening hours, each rollout's waves, each agent's configuration and release steps.

Grafana cannot compute "closed" or "down during opening hours" from births and Last
Wills (presence is written only when it changes, and opening hours are JSON in the
birth), so the fleet service writes them every ``status.interval_s``
(``fleet.status.recorder``). Points are timed on the interval's boundary: several
instances write the same point, and ``mean("online") WHERE "in_hours" = 1`` is the
availability during opening hours, one sample per agent per interval.
The measurements are described in ``fleet.storage.schema``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from fleet.desired.targets import ConfigSync, SyncState
from fleet.rollouts.plan import Outcome, RolloutStatus, WaveCounts
from fleet.storage.lineprotocol import FieldValue, Point
from fleet.storage.points import ns
from fleet.storage.presence import AgentStatus
from fleet.storage.queries import AgentView, SeqWindow
from fleet.storage.schema import (
    AGENT_STATUS,
    CONFIG_STATUS,
    CRL_STATUS,
    RELEASE_REPORT,
    ROLLOUT_STATUS,
    ROLLOUT_WAVE,
)
from vigie_core.contract.releases import ReportedRelease


def tick(now_ns: int, interval_ns: int) -> int:
    """The boundary of the interval ``now_ns`` falls in: every instance's point time."""
    return now_ns - now_ns % interval_ns


def still_watched(view: AgentView, now: datetime, forget_after: timedelta) -> bool:
    """Whether the agent was seen recently enough to be expected back."""
    return view.last_seen is None or now - view.last_seen <= forget_after


def in_hours(view: AgentView, now: datetime) -> bool:
    """Whether the agent is expected online: its site is open (always, without hours)."""
    return view.opening_hours is None or view.opening_hours.is_open(now)


def agent_status_point(
    view: AgentView, now: datetime, at_ns: int, seqs: SeqWindow | None = None
) -> Point:
    online = view.status is AgentStatus.ONLINE
    expected = in_hours(view, now)
    fields: dict[str, FieldValue] = {
        "state": view.status.value,
        "online": int(online),
        "in_hours": int(expected),
        "down": int(expected and not online),
        "session": view.session,
    }
    if view.agent_version is not None:
        fields["agent_version"] = view.agent_version
    if view.last_seen is not None:
        fields["last_seen_s"] = round(max(0.0, (now - view.last_seen).total_seconds()), 3)
    if seqs is not None:
        fields["seq_missing"] = seqs.missing
    tags = {"agent_id": view.agent_id}
    if view.site_id is not None:
        tags["site_id"] = view.site_id
    if view.kind is not None:
        tags["kind"] = view.kind
    return Point(AGENT_STATUS, fields, at_ns, tags)


def _counts(counts: WaveCounts) -> dict[str, FieldValue]:
    return {
        "updated": counts.updated,
        "failed": counts.failed,
        "pending": counts.pending,
        "not_asked": counts.not_asked,
        "cancelled": counts.cancelled,
    }


def rollout_points(status: RolloutStatus, at_ns: int) -> list[Point]:
    """The rollout's state and counts, and one point per wave."""
    spec = status.spec
    totals: dict[str, FieldValue] = {
        "updated": status.total(Outcome.UPDATED),
        "failed": status.total(Outcome.FAILED) + status.total(Outcome.EXCUSED),
        "pending": status.total(Outcome.PENDING),
        "not_asked": status.total(Outcome.NOT_ASKED),
        "cancelled": status.total(Outcome.CANCELLED),
    }
    fields: dict[str, FieldValue] = {
        "version": spec.version,
        "state": status.state.value,
        "reason": status.reason[:512],
        "released_waves": status.released_waves,
        "waves": len(spec.waves),
        "agents": len(status.outcomes),
        **totals,
    }
    points = [Point(ROLLOUT_STATUS, fields, at_ns, {"rollout_id": spec.rollout_id})]
    for number, counts in enumerate(status.waves, start=1):
        wave_fields: dict[str, FieldValue] = {
            "size": counts.size,
            "released": int(number <= status.released_waves),
            **_counts(counts),
        }
        tags = {"rollout_id": spec.rollout_id, "wave": str(number)}
        points.append(Point(ROLLOUT_WAVE, wave_fields, at_ns, tags))
    return points


def config_status_point(sync: ConfigSync, at_ns: int) -> Point | None:
    """Where a pushed configuration stands (None: nothing was pushed to the agent)."""
    if sync.state is SyncState.LOCAL or sync.desired is None:
        return None
    fields: dict[str, FieldValue] = {
        "state": sync.state.value,
        "desired_version": sync.desired.version,
        "reason": sync.reason[:512],
    }
    if sync.reported is not None:
        fields["running_version"] = sync.reported.version
    return Point(CONFIG_STATUS, fields, at_ns, {"agent_id": sync.agent_id})


def release_report_point(report: ReportedRelease) -> Point:
    """One step of an agent's update, at the time the agent gives it: idempotent."""
    fields: dict[str, FieldValue] = {
        "running": report.running,
        "phase": report.phase.value,
        "reason": report.reason[:512],
    }
    if report.target is not None:
        fields["target"] = report.target
    if report.progress_percent is not None:
        fields["progress_percent"] = report.progress_percent
    return Point(RELEASE_REPORT, fields, ns(report.at), {"agent_id": report.agent_id})


def new_reports(
    reports: Mapping[str, ReportedRelease], written: Mapping[str, datetime]
) -> list[ReportedRelease]:
    """The reports not written yet (by their time, per agent)."""
    return [
        report for agent_id, report in sorted(reports.items()) if written.get(agent_id) != report.at
    ]


def crl_point(next_update: datetime | None, now: datetime, at_ns: int) -> Point:
    """How long the broker's revocation list stays valid (None: it could not be read)."""
    if next_update is None:
        return Point(CRL_STATUS, {"readable": 0}, at_ns)
    days = (next_update - now).total_seconds() / 86_400
    fields: dict[str, FieldValue] = {
        "readable": 1,
        "days_left": round(days, 3),
        "next_update": next_update.isoformat(),
    }
    return Point(CRL_STATUS, fields, at_ns)
