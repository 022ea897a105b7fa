"""Staged rollouts, the pure part: waves, outcomes, when to advance, halt, abort."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.errors import RolloutError
from fleet.rollouts.plan import (
    Outcome,
    State,
    agent_outcome,
    evaluate,
    overlapping,
    parse_percent,
    parse_waves,
    plan_waves,
)
from fleet.rollouts.view import RolloutView
from vigie_core.contract.codec import encode
from vigie_core.contract.releases import DesiredRelease, ReportedRelease, UpdatePhase
from vigie_core.contract.rollouts import Command, RolloutControl, RolloutProgress, RolloutSpec
from vigie_core.contract.topics import Topics

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
V = "1.0.0"
OLD = "0.9.0"
URL = "http://central:8780"


def spec(waves: list[list[str]], max_failure: float = 5.0, rollout_id: str = "r1") -> RolloutSpec:
    return RolloutSpec(
        rollout_id=rollout_id,
        version=V,
        url=URL,
        waves=waves,
        max_failure_percent=max_failure,
        targets=["all"],
        created_at=T0,
    )


def report(
    agent: str, phase: UpdatePhase, running: str = OLD, target: str | None = V
) -> ReportedRelease:
    return ReportedRelease(agent_id=agent, running=running, phase=phase, target=target, at=T0)


def updated(agent: str) -> ReportedRelease:
    return report(agent, UpdatePhase.COMMITTED, running=V)


def failed(agent: str) -> ReportedRelease:
    return report(agent, UpdatePhase.ROLLED_BACK)


def asked(agent: str, version: str = V) -> DesiredRelease:
    return DesiredRelease(agent_id=agent, version=version, url=URL, issued_at=T0)


def control(command: Command, excused: list[str] | None = None) -> RolloutControl:
    return RolloutControl(rollout_id="r1", command=command, excused=excused or [], at=T0)


def progress(released: int) -> RolloutProgress:
    return RolloutProgress(rollout_id="r1", released_waves=released, at=T0)


# --- waves -------------------------------------------------------------------------------


def test_waves_read_as_cumulative_percentages() -> None:
    assert parse_waves("1,10,50,100%") == [1, 10, 50, 100]
    assert parse_waves("25%, 100%") == [25, 100]
    assert parse_waves("100") == [100]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1,10,50", "last wave must be 100"),
        ("10,5,100", "further than the one before"),
        ("0,100", "above 0"),
        ("10,abc,100", "not a percentage"),
        ("50,150", "at most 100"),
        ("", "not a percentage"),
    ],
)
def test_bad_waves_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(RolloutError, match=why):
        parse_waves(text)


def test_max_failure_is_a_percentage() -> None:
    assert parse_percent("5%") == 5
    assert parse_percent("0") == 0
    for bad in ("-1", "101%", "five"):
        with pytest.raises(RolloutError):
            parse_percent(bad)


def test_plan_reaches_each_share_with_every_agent_once() -> None:
    agents = [f"booth-{n:03d}" for n in range(200)]
    waves = plan_waves(agents, [1, 10, 50, 100], seed="r1")
    assert [len(wave) for wave in waves] == [2, 18, 80, 100]
    assert sorted(agent for wave in waves for agent in wave) == agents
    # Stable for a rollout, different for another, and not alphabetical.
    assert plan_waves(agents, [1, 10, 50, 100], seed="r1") == waves
    assert plan_waves(agents, [1, 10, 50, 100], seed="r2") != waves
    assert waves[0] != agents[:2]


def test_a_small_fleet_gets_one_agent_in_the_first_wave_and_no_empty_wave() -> None:
    waves = plan_waves(["a", "b", "c"], [1, 10, 50, 100], seed="x")
    assert [len(wave) for wave in waves] == [1, 1, 1]  # 1% and 10% of 3 both round to 1


@given(
    count=st.integers(1, 300),
    shares=st.lists(st.floats(0.5, 99.5), max_size=5).map(lambda s: [*sorted(set(s)), 100.0]),
)
@settings(max_examples=200, deadline=None)
def test_plans_never_lose_nor_repeat_an_agent(count: int, shares: list[float]) -> None:
    agents = [f"a{n}" for n in range(count)]
    waves = plan_waves(agents, shares, seed="s")
    assert all(waves)
    assert sorted(agent for wave in waves for agent in wave) == sorted(agents)
    assert len(waves) <= len(shares)


# --- outcomes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reported", "outcome"),
    [
        (None, Outcome.PENDING),
        (report("a", UpdatePhase.DOWNLOADING), Outcome.PENDING),
        (report("a", UpdatePhase.WAITING), Outcome.PENDING),
        # Restarted into it but its health check has not passed yet: not updated.
        (report("a", UpdatePhase.HEALTH_CHECKING, running=V), Outcome.PENDING),
        (report("a", UpdatePhase.COMMITTED, running=V), Outcome.UPDATED),
        (report("a", UpdatePhase.IDLE, running=V, target=None), Outcome.UPDATED),
        (report("a", UpdatePhase.ROLLED_BACK), Outcome.FAILED),
        (report("a", UpdatePhase.REFUSED), Outcome.FAILED),
        # Refused or rolled back for another version: says nothing about this one.
        (report("a", UpdatePhase.REFUSED, target="2.0.0"), Outcome.PENDING),
    ],
)
def test_an_agent_counts_as_updated_only_on_its_post_update_report(
    reported: ReportedRelease | None, outcome: Outcome
) -> None:
    assert agent_outcome(V, reported) is outcome


# --- evaluation ------------------------------------------------------------------------------


def test_the_first_wave_is_asked_at_once_and_nothing_else() -> None:
    status = evaluate(spec([["a"], ["b", "c"]]), None, None, {}, {})
    assert status.state is State.RUNNING
    assert status.released_waves == 1
    assert status.to_ask == ["a"]
    assert status.outcomes == {"a": Outcome.PENDING, "b": Outcome.NOT_ASKED, "c": Outcome.NOT_ASKED}


def test_an_agent_already_asked_is_not_asked_again() -> None:
    status = evaluate(spec([["a"], ["b"]]), None, progress(1), {"a": asked("a")}, {})
    assert status.to_ask == []


def test_a_wave_that_holds_its_success_ratio_releases_the_next() -> None:
    rollout = spec([["a"], ["b", "c"], ["d"]])
    status = evaluate(rollout, None, progress(1), {"a": asked("a")}, {"a": updated("a")})
    assert status.released_waves == 2
    assert status.to_ask == ["b", "c"]
    assert [wave.updated for wave in status.waves] == [1, 0, 0]
    # A download finished is not an update: the wave waits.
    downloading = report("b", UpdatePhase.WAITING)
    status = evaluate(
        rollout, None, progress(2), {}, {"a": updated("a"), "b": downloading, "c": updated("c")}
    )
    assert status.released_waves == 2
    assert status.outcomes["d"] is Outcome.NOT_ASKED


def test_the_failure_allowance_lets_a_wave_advance_with_stragglers() -> None:
    wave = [f"w{n}" for n in range(20)]
    rollout = spec([["a"], wave, ["z"]], max_failure=10)
    reports = {"a": updated("a")} | {agent: updated(agent) for agent in wave[:18]}
    status = evaluate(rollout, None, progress(2), {}, reports)  # 18 of 20 ≥ 90 %
    assert status.released_waves == 3
    reports.pop(wave[0])
    status = evaluate(rollout, None, progress(2), {}, reports)  # 17 of 20 < 90 %
    assert status.released_waves == 2


def test_failures_past_the_threshold_halt_the_rollout() -> None:
    rollout = spec([["a", "b"], ["c", "d"]], max_failure=30)
    reports = {"a": updated("a"), "b": failed("b")}
    status = evaluate(rollout, None, progress(1), {}, reports)
    assert status.state is State.HALTED
    assert "1 of 2 agents asked failed (50 % > 30 %)" in status.reason
    assert status.released_waves == 1
    assert status.outcomes["c"] is Outcome.NOT_ASKED
    assert status.to_ask == []


def test_failures_under_the_threshold_do_not_halt() -> None:
    wave = [f"w{n}" for n in range(10)]
    reports = {agent: updated(agent) for agent in wave[1:]} | {"w0": failed("w0")}
    status = evaluate(spec([wave, ["z"]], max_failure=10), None, progress(1), {}, reports)
    assert status.state is State.RUNNING  # 1 of 10 is not past 10 %
    assert status.released_waves == 2


def test_a_resume_excuses_the_failures_seen_and_counts_new_ones() -> None:
    rollout = spec([["a"], ["b"], ["c"]], max_failure=5)
    reports = {"a": failed("a")}
    assert evaluate(rollout, None, progress(1), {}, reports).state is State.HALTED
    resumed = control(Command.RUN, excused=["a"])
    status = evaluate(rollout, resumed, progress(1), {}, reports)
    assert status.state is State.RUNNING
    assert status.outcomes["a"] is Outcome.EXCUSED
    # Accepted by the operator: the wave is through, the next one goes.
    assert (status.released_waves, status.to_ask) == (2, ["b"])
    reports["b"] = failed("b")
    status = evaluate(rollout, resumed, progress(2), {}, reports)
    assert status.state is State.HALTED  # a new failure


def test_a_pause_releases_no_further_wave_and_a_resume_goes_on() -> None:
    rollout = spec([["a"], ["b"]])
    reports = {"a": updated("a")}
    paused = evaluate(rollout, control(Command.PAUSE), progress(1), {}, reports)
    assert paused.state is State.PAUSED
    assert paused.released_waves == 1
    assert paused.to_ask == []
    resumed = evaluate(rollout, control(Command.RUN), progress(1), {}, reports)
    assert (resumed.state, resumed.released_waves, resumed.to_ask) == (State.RUNNING, 2, ["b"])


def test_an_abort_asks_agents_not_yet_updated_to_stay_where_they_are() -> None:
    rollout = spec([["a", "b", "c", "d"], ["e"]])
    desired = {agent: asked(agent) for agent in "abcd"}
    reports = {
        "a": updated("a"),
        "b": report("b", UpdatePhase.WAITING),
        "c": failed("c"),
        # d never reported a release: its request is cleared.
    }
    status = evaluate(rollout, control(Command.ABORT), progress(1), desired, reports)
    assert status.state is State.ABORTED
    assert status.to_restore == {"b": OLD, "d": None}
    assert status.to_ask == []
    assert status.outcomes["b"] is Outcome.CANCELLED
    assert status.outcomes["e"] is Outcome.NOT_ASKED
    # Once restored, nothing more to do.
    desired |= {"b": asked("b", OLD)}
    desired.pop("d")
    after = evaluate(rollout, control(Command.ABORT), progress(1), desired, reports)
    assert after.to_restore == {}


def test_an_abort_leaves_an_agent_already_restarted_into_the_version_alone() -> None:
    # Asking it for the version it runs would change nothing, and would be asked again
    # at every step until its health check ends.
    rollout = spec([["a", "b"]])
    desired = {agent: asked(agent) for agent in "ab"}
    reports = {
        "a": report("a", UpdatePhase.HEALTH_CHECKING, running=V),
        "b": report("b", UpdatePhase.INSTALLING),
    }
    status = evaluate(rollout, control(Command.ABORT), progress(1), desired, reports)
    assert status.outcomes == {"a": Outcome.CANCELLED, "b": Outcome.CANCELLED}
    assert status.to_restore == {"b": OLD}


def test_a_rollout_completes_when_every_agent_is_resolved() -> None:
    rollout = spec([["a"], ["b"]], max_failure=50)
    reports = {"a": updated("a"), "b": updated("b")}
    status = evaluate(rollout, None, progress(2), {}, reports)
    assert status.state is State.COMPLETED
    assert [wave.updated for wave in status.waves] == [1, 1]


def test_progress_never_goes_back() -> None:
    rollout = spec([["a"], ["b"], ["c"]])
    # Wave 2 was released; agent a's report is not here (yet): wave 2 stays released.
    status = evaluate(rollout, None, progress(2), {}, {})
    assert status.released_waves == 2
    assert status.to_ask == ["a", "b"]


@given(
    outcomes=st.lists(
        st.sampled_from(["updated", "failed", "waiting", "none"]), min_size=1, max_size=40
    ),
    threshold=st.sampled_from([0.0, 5.0, 20.0, 50.0]),
    shares=st.sampled_from([[100.0], [10.0, 100.0], [1.0, 10.0, 50.0, 100.0]]),
)
@settings(max_examples=300, deadline=None)
def test_a_rollout_never_asks_beyond_what_its_rules_allow(
    outcomes: list[str], threshold: float, shares: list[float]
) -> None:
    agents = [f"a{n}" for n in range(len(outcomes))]
    rollout = spec(plan_waves(agents, shares, seed="r1"), max_failure=threshold)
    make = {
        "updated": updated,
        "failed": failed,
        "waiting": lambda agent: report(agent, UpdatePhase.WAITING),
    }
    reports = {
        agent: make[kind](agent)
        for agent, kind in zip(agents, outcomes, strict=True)
        if kind != "none"
    }
    status = evaluate(rollout, None, progress(1), {}, reports)
    released = rollout.waves[: status.released_waves]
    # Every wave before the last released one held its success ratio.
    for wave in released[:-1]:
        ok = sum(1 for agent in wave if status.outcomes[agent] is Outcome.UPDATED)
        assert ok >= len(wave) * (1 - threshold / 100) - 1e-9
    # Only released agents are asked, and never an updated one.
    asked_ids = {agent for wave in released for agent in wave}
    assert set(status.to_ask) <= asked_ids
    assert all(status.outcomes[agent] is not Outcome.UPDATED for agent in status.to_ask)
    failures = sum(1 for agent in asked_ids if status.outcomes[agent] is Outcome.FAILED)
    halted = failures * 100 > threshold * len(asked_ids)
    assert (status.state is State.HALTED) == halted


def test_overlapping_active_rollouts_are_found() -> None:
    running = evaluate(spec([["a"], ["b"]]), None, None, {}, {})
    done = evaluate(spec([["c"]], rollout_id="r0"), None, progress(1), {}, {"c": updated("c")})
    assert overlapping([running, done], ["b", "c", "x"]) == {"b": "r1"}


# --- documents on the broker -----------------------------------------------------------------


def test_the_view_reads_retained_documents_and_releases() -> None:
    topics = Topics("vigie")
    view = RolloutView("vigie")
    rollout = spec([["a"], ["b"]])
    view.absorb(topics.rollout("r1", "spec"), rollout.model_dump_json().encode())
    view.absorb(topics.rollout("r1", "control"), control(Command.PAUSE).model_dump_json().encode())
    view.absorb(topics.desired_release("a"), encode(asked("a")))
    view.absorb(topics.reported_release("a"), encode(updated("a")))
    view.absorb(topics.reported_config("a"), b"{}")  # not a release: ignored
    view.absorb(topics.rollout("r2", "spec"), b"{not json")  # ignored, no crash
    (status,) = view.statuses()
    assert status.state is State.PAUSED
    assert status.outcomes["a"] is Outcome.UPDATED
    # A cleared retained message removes what it held.
    view.absorb(topics.rollout("r1", "control"), b"")
    view.absorb(topics.reported_release("a"), b"")
    (status,) = view.statuses()
    assert status.state is State.RUNNING
    assert status.outcomes["a"] is Outcome.PENDING
    # A document filed under another rollout's name is not taken.
    other = spec([["x"]], rollout_id="r3")
    view.absorb(topics.rollout("r4", "spec"), other.model_dump_json().encode())
    assert set(view.specs) == {"r1"}


def test_rollout_topics_round_trip_and_refuse_strangers() -> None:
    topics = Topics("vigie")
    assert topics.parse_rollout(topics.rollout("1.0.0-x", "progress")) == (
        "1.0.0-x",
        "progress",
    )
    for topic in ("vigie/rollouts/r1", "vigie/rollouts/r1/other", "x/rollouts/r1/spec"):
        assert topics.parse_rollout(topic) is None
    with pytest.raises(ValueError, match="no rollout topic"):
        topics.rollout("a/b", "spec")


def test_a_spec_with_an_agent_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="exactly one wave"):
        spec([["a"], ["a", "b"]])
    with pytest.raises(ValueError, match="exactly one wave"):
        spec([["a"], []])


def test_times_in_documents_are_utc() -> None:
    paris = T0.astimezone(timezone(timedelta(hours=1)))
    assert RolloutProgress(rollout_id="r", released_waves=1, at=paris).at.tzinfo is UTC
