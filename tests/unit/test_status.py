"""The status the fleet derives for operators: state against opening hours, rollouts,
configuration, release steps, sequence gaps. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleet.desired.targets import ConfigSync
from fleet.rollouts.plan import evaluate
from fleet.status.derive import (
    agent_status_point,
    config_status_point,
    crl_point,
    new_reports,
    release_report_point,
    rollout_points,
    still_watched,
    tick,
)
from fleet.storage.points import ns
from fleet.storage.presence import AgentStatus
from fleet.storage.queries import AgentView, SeqWindow, merge_seq_windows
from fleet.storage.schema import SCHEMA
from tests.unit.test_desired import desired, reported
from tests.unit.test_rollout import asked, failed, report, spec, updated
from vigie_core.contract.presence import OpeningHours
from vigie_core.contract.releases import UpdatePhase

TUESDAY_NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
HOURS = OpeningHours(timezone="UTC", week={"tue": ["09:00-17:00"]})
MINUTE_NS = 60 * 1_000_000_000


def view(status: AgentStatus, hours: OpeningHours | None = HOURS) -> AgentView:
    return AgentView(
        agent_id="booth-1",
        status=status,
        site_id="mamers",
        site_name="Mamers",
        kind="booth",
        agent_version="1.2.0",
        devices=["bp"],
        last_seen=TUESDAY_NOON - timedelta(seconds=90),
        status_since=TUESDAY_NOON - timedelta(hours=1),
        session=7,
        opening_hours=hours,
    )


def test_points_are_timed_on_the_interval_boundary() -> None:
    assert tick(5 * MINUTE_NS + 59_999_999_999, MINUTE_NS) == 5 * MINUTE_NS
    assert tick(5 * MINUTE_NS, MINUTE_NS) == 5 * MINUTE_NS


def test_an_agent_offline_while_open_is_down_and_closed_is_not() -> None:
    at = tick(ns(TUESDAY_NOON), MINUTE_NS)
    online = agent_status_point(view(AgentStatus.ONLINE), TUESDAY_NOON, at)
    down = agent_status_point(view(AgentStatus.OFFLINE), TUESDAY_NOON, at)
    night = TUESDAY_NOON + timedelta(hours=10)
    closed = agent_status_point(view(AgentStatus.CLOSED), night, at)
    assert (
        dict(online.fields).items()
        >= {"state": "online", "online": 1, "in_hours": 1, "down": 0}.items()
    )
    assert (
        dict(down.fields).items()
        >= {"state": "offline", "online": 0, "in_hours": 1, "down": 1}.items()
    )
    assert (
        dict(closed.fields).items()
        >= {"state": "closed", "online": 0, "in_hours": 0, "down": 0}.items()
    )
    assert online.tags == {"agent_id": "booth-1", "site_id": "mamers", "kind": "booth"}
    assert online.fields["last_seen_s"] == 90.0
    assert online.fields["session"] == 7
    assert online.time_ns == at
    assert "seq_missing" not in online.fields


def test_an_agent_without_hours_is_always_expected() -> None:
    night = TUESDAY_NOON + timedelta(hours=10)
    point = agent_status_point(view(AgentStatus.OFFLINE, hours=None), night, 0)
    assert point.fields["in_hours"] == 1
    assert point.fields["down"] == 1


def test_sequence_gaps_leave_out_what_the_agent_counted_as_dropped() -> None:
    merged = merge_seq_windows([(10, 1, 10), (5, 11, 20), (0, 0, 0)])
    assert merged == SeqWindow(stored=15, first=1, last=20)
    assert merged.missing == 5
    assert SeqWindow(15, 1, 20, dropped=3).missing == 2
    assert SeqWindow(15, 1, 20, dropped=30).missing == 0
    assert merge_seq_windows([(0, 0, 0)]) is None
    point = agent_status_point(view(AgentStatus.ONLINE), TUESDAY_NOON, 0, merged)
    assert point.fields["seq_missing"] == 5


def test_a_rollout_gives_its_totals_and_one_point_per_wave() -> None:
    rollout = spec([["a"], ["b", "c", "d"]], max_failure=50)
    status = evaluate(
        rollout,
        None,
        None,
        {"a": asked("a"), "b": asked("b"), "c": asked("c")},
        {"a": updated("a"), "b": failed("b"), "c": report("c", UpdatePhase.DOWNLOADING)},
    )
    points = rollout_points(status, 42)
    overall, *waves = points
    assert overall.measurement == "rollout_status"
    assert overall.tags == {"rollout_id": "r1"}
    assert (
        dict(overall.fields).items()
        >= {
            "version": "1.0.0",
            "state": status.state.value,
            "waves": 2,
            "released_waves": status.released_waves,
            "agents": 4,
            "updated": 1,
            "failed": 1,
        }.items()
    )
    assert [wave.tags["wave"] for wave in waves] == ["1", "2"]
    assert [wave.fields["size"] for wave in waves] == [1, 3]
    assert waves[0].fields["released"] == 1
    assert waves[0].fields["updated"] == 1
    assert sum(int(w.fields["pending"]) for w in waves) == overall.fields["pending"]


def test_configuration_points_only_for_pushed_agents() -> None:
    assert config_status_point(ConfigSync("bus-1", None, reported(0)), 1) is None
    pending = config_status_point(ConfigSync("bus-1", desired(3), reported(2)), 1)
    refused = config_status_point(ConfigSync("bus-1", desired(3), reported(2, rejected=3)), 1)
    never = config_status_point(ConfigSync("bus-1", desired(1), None), 1)
    assert pending is not None
    assert refused is not None
    assert never is not None
    assert pending.fields == {
        "state": "pending",
        "desired_version": 3,
        "running_version": 2,
        "reason": "",
    }
    assert refused.fields["state"] == "rejected"
    assert refused.fields["reason"] == "f: r"
    assert "running_version" not in never.fields


def test_each_release_step_is_stored_once_at_its_own_time() -> None:
    step = report("a", UpdatePhase.DOWNLOADING)
    point = release_report_point(step)
    assert point.time_ns == ns(step.at)
    assert point.fields["phase"] == "downloading"
    assert point.fields["target"] == "1.0.0"
    assert new_reports({"a": step}, {}) == [step]
    assert new_reports({"a": step}, {"a": step.at}) == []


def test_derived_points_stay_inside_the_schema() -> None:
    rollout = spec([["a"]])
    points = [
        agent_status_point(view(AgentStatus.ONLINE), TUESDAY_NOON, 0, SeqWindow(1, 1, 1)),
        *rollout_points(evaluate(rollout, None, None, {}, {}), 0),
        release_report_point(report("a", UpdatePhase.DOWNLOADING)),
    ]
    sync = config_status_point(ConfigSync("bus-1", desired(3), reported(2)), 1)
    assert sync is not None
    for point in [*points, sync]:
        names = set(point.fields) | set(point.tags)
        assert names <= SCHEMA[point.measurement], (point.measurement, names)


def test_the_crl_point_counts_days_left_or_says_it_could_not_be_read() -> None:
    point = crl_point(TUESDAY_NOON + timedelta(days=20, hours=12), TUESDAY_NOON, 5)
    assert point.fields == {
        "readable": 1,
        "days_left": 20.5,
        "next_update": "2026-12-15T00:00:00+00:00",
    }
    assert crl_point(None, TUESDAY_NOON, 5).fields == {"readable": 0}


def test_an_agent_silent_for_longer_than_forget_after_is_no_longer_watched() -> None:
    booth = view(AgentStatus.OFFLINE)  # last seen 90 s before noon
    month = timedelta(days=30)
    assert still_watched(booth, TUESDAY_NOON + timedelta(days=29), month)
    assert not still_watched(booth, TUESDAY_NOON + timedelta(days=31), month)
