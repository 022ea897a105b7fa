"""Staged rollouts (pure): waves, what counts as updated or failed, when to go on.

A rollout lives on the broker as three retained documents under
``<prefix>/rollouts/<id>/``: the **spec** (version, waves of agent ids, failure
threshold; written once by ``fleet rollout start``), the **control** (run, pause or
abort, and failures an operator excused on resume; written by the CLI) and the
**progress** (how many waves are released; written by the fleet service). Every
decision is a function of those documents and of each agent's retained desired and
reported release, and every action is a retained publish that says the same thing
whoever sends it: a restarted fleet service, or a second instance, takes up where the
state is and never asks a booth for anything twice. The I/O is in
``fleet/rollouts/driver.py`` and ``fleet/cli/rollout.py``; the documents themselves
are part of the contract (``vigie_core.contract.rollouts``).
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from fleet.errors import RolloutError
from vigie_core.contract.releases import DesiredRelease, ReportedRelease, UpdatePhase
from vigie_core.contract.rollouts import (
    Command,
    RolloutControl,
    RolloutProgress,
    RolloutSpec,
)

# --- waves ------------------------------------------------------------------------------


def parse_waves(text: str) -> list[float]:
    """``"1,10,50,100%"`` → [1.0, 10.0, 50.0, 100.0]: cumulative shares of the targets,
    in per cent (the ``%`` may be written on any of them); rising, ending at 100."""
    shares: list[float] = []
    for item in text.split(","):
        raw = item.strip().removesuffix("%").strip()
        try:
            share = float(raw)
        except ValueError:
            raise RolloutError(f"{item.strip()!r} is not a percentage", option="--waves") from None
        if not 0 < share <= 100 or not math.isfinite(share):
            raise RolloutError(
                f"{item.strip()!r} must be above 0 and at most 100", option="--waves"
            )
        if shares and share <= shares[-1]:
            raise RolloutError("each wave must reach further than the one before", option="--waves")
        shares.append(share)
    if not shares or shares[-1] != 100:
        raise RolloutError("the last wave must be 100%", option="--waves")
    return shares


def parse_percent(text: str) -> float:
    """``"5%"`` or ``"5"`` → 5.0, between 0 and 100."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise RolloutError(f"{text!r} is not a percentage", option="--max-failure") from None
    if not 0 <= value <= 100:
        raise RolloutError(f"{text!r} must be between 0 and 100%", option="--max-failure")
    return value


def plan_waves(agent_ids: Sequence[str], shares: Sequence[float], seed: str) -> list[list[str]]:
    """Split the agents into waves reaching each cumulative share (at least one agent
    per wave, empty waves dropped). The order is a hash of ``seed`` and the agent id:
    stable for a rollout, and spread over sites rather than alphabetical (booth ids
    are often grouped by site, and a canary wave should not be one town)."""
    order = sorted(
        set(agent_ids), key=lambda agent: hashlib.sha256(f"{seed}/{agent}".encode()).digest()
    )
    waves: list[list[str]] = []
    taken = 0
    for share in shares:
        reach = max(1, math.ceil(len(order) * share / 100 - 1e-9))
        if reach > taken:
            waves.append(order[taken:reach])
            taken = reach
    return waves


# --- evaluation -------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    NOT_ASKED = "not asked"  # its wave is not released yet
    PENDING = "pending"  # asked; downloading, waiting for its moment, offline...
    UPDATED = "updated"  # its post-update report came: running the version, healthy
    FAILED = "failed"  # rolled back or refused
    EXCUSED = "excused"  # failed, and the operator resumed past it
    CANCELLED = "cancelled"  # the rollout was aborted before it updated


class State(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # by an operator
    HALTED = "halted"  # by itself: failures over the threshold
    ABORTED = "aborted"
    COMPLETED = "completed"


ACTIVE_STATES: Final = frozenset({State.RUNNING, State.PAUSED, State.HALTED})


def agent_outcome(version: str, reported: ReportedRelease | None) -> Outcome:
    """Where one asked agent stands. Updated only on the report the new release sends
    once its health check passed (connected, instruments answering): a finished
    download, an install or a restart in progress do not count."""
    if reported is None:
        return Outcome.PENDING
    if reported.running == version and reported.phase is not UpdatePhase.HEALTH_CHECKING:
        return Outcome.UPDATED
    failed = reported.phase in (UpdatePhase.ROLLED_BACK, UpdatePhase.REFUSED)
    if failed and reported.target == version:
        return Outcome.FAILED
    return Outcome.PENDING


@dataclass(frozen=True, slots=True)
class WaveCounts:
    size: int
    updated: int = 0
    failed: int = 0  # excused ones included
    pending: int = 0
    not_asked: int = 0
    cancelled: int = 0

    def as_json(self) -> dict[str, int]:
        return {
            "size": self.size,
            "updated": self.updated,
            "failed": self.failed,
            "pending": self.pending,
            "not_asked": self.not_asked,
            "cancelled": self.cancelled,
        }


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    spec: RolloutSpec
    state: State
    reason: str
    released_waves: int
    outcomes: dict[str, Outcome]
    waves: list[WaveCounts]
    #: Agents of released waves whose retained desired release is not yet the version.
    to_ask: list[str] = field(default_factory=list)
    #: After an abort: agents asked but not updated, and the version they should stay on
    #: (None: clear their desired release).
    to_restore: dict[str, str | None] = field(default_factory=dict)

    def total(self, outcome: Outcome) -> int:
        return sum(1 for value in self.outcomes.values() if value is outcome)

    def as_json(self) -> dict[str, object]:
        return {
            "rollout_id": self.spec.rollout_id,
            "version": self.spec.version,
            "state": self.state.value,
            "reason": self.reason,
            "targets": self.spec.targets,
            "max_failure_percent": self.spec.max_failure_percent,
            "created_at": self.spec.created_at.isoformat(),
            "released_waves": self.released_waves,
            "agents": len(self.outcomes),
            "updated": self.total(Outcome.UPDATED),
            "waves": [
                {"agents": wave, **counts.as_json()}
                for wave, counts in zip(self.spec.waves, self.waves, strict=True)
            ],
            "outcomes": {agent: outcome.value for agent, outcome in self.outcomes.items()},
        }


def needed_successes(wave_size: int, max_failure_percent: float) -> int:
    """How many agents of a wave must be updated before the next one is released."""
    return math.ceil(wave_size * (1 - max_failure_percent / 100) - 1e-9)


def evaluate(
    spec: RolloutSpec,
    control: RolloutControl | None,
    progress: RolloutProgress | None,
    desired: Mapping[str, DesiredRelease],
    reported: Mapping[str, ReportedRelease],
) -> RolloutStatus:
    """The rollout's state, its counts, and what the fleet should publish next.

    Waves are released one at a time: the first at once, each next one when the wave
    before has enough agents updated (its size less the failure allowance; failures
    excused on resume count as through). The
    rollout halts when its counted failures pass ``max_failure_percent`` of the agents
    asked so far; a resume excuses those failures.
    """
    command = control.command if control is not None else Command.RUN
    excused = set(control.excused) if control is not None else set()
    released = min(progress.released_waves if progress else 0, len(spec.waves))
    if command is not Command.ABORT:
        released = max(released, 1)  # the first wave goes as soon as the rollout exists

    def outcomes_for(released_waves: int) -> dict[str, Outcome]:
        found: dict[str, Outcome] = {}
        for index, wave in enumerate(spec.waves):
            for agent in wave:
                if index >= released_waves:
                    found[agent] = Outcome.NOT_ASKED
                    continue
                outcome = agent_outcome(spec.version, reported.get(agent))
                if outcome is Outcome.FAILED and agent in excused:
                    outcome = Outcome.EXCUSED
                if outcome is Outcome.PENDING and command is Command.ABORT:
                    outcome = Outcome.CANCELLED
                found[agent] = outcome
        return found

    outcomes = outcomes_for(released)
    state, reason = State.RUNNING, ""
    # Advance while the latest released wave holds its success ratio (a wave whose
    # agents were all updated earlier, by hand or by another rollout, passes at once).
    while command is Command.RUN and 0 < released < len(spec.waves):
        failures = sum(1 for outcome in outcomes.values() if outcome is Outcome.FAILED)
        asked = sum(len(wave) for wave in spec.waves[:released])
        if failures * 100 > spec.max_failure_percent * asked:
            break
        wave = spec.waves[released - 1]
        # Failures an operator accepted on resume count as through.
        through = sum(1 for agent in wave if outcomes[agent] in (Outcome.UPDATED, Outcome.EXCUSED))
        if through < needed_successes(len(wave), spec.max_failure_percent):
            break
        released += 1
        outcomes = outcomes_for(released)

    failures = sum(1 for outcome in outcomes.values() if outcome is Outcome.FAILED)
    asked = sum(len(wave) for wave in spec.waves[:released])
    if command is Command.ABORT:
        state, reason = State.ABORTED, "aborted by an operator"
    elif asked and failures * 100 > spec.max_failure_percent * asked:
        state = State.HALTED
        reason = (
            f"{failures} of {asked} agents asked failed "
            f"({failures * 100 / asked:.0f} % > {spec.max_failure_percent:g} %)"
        )
    elif all(
        outcome in (Outcome.UPDATED, Outcome.FAILED, Outcome.EXCUSED)
        for outcome in outcomes.values()
    ):
        state = State.COMPLETED
    elif command is Command.PAUSE:
        state, reason = State.PAUSED, "paused by an operator"

    to_ask, to_restore = _messages(spec, state, outcomes, spec.agents[:asked], desired, reported)
    return RolloutStatus(
        spec=spec,
        state=state,
        reason=reason,
        released_waves=released,
        outcomes=outcomes,
        waves=[_counts(wave, outcomes) for wave in spec.waves],
        to_ask=to_ask,
        to_restore=to_restore,
    )


def _messages(
    spec: RolloutSpec,
    state: State,
    outcomes: Mapping[str, Outcome],
    asked: Sequence[str],
    desired: Mapping[str, DesiredRelease],
    reported: Mapping[str, ReportedRelease],
) -> tuple[list[str], dict[str, str | None]]:
    """Who to ask for the version, and on abort who to ask to stay (version or None
    to clear the request); only what differs from the retained desired release."""
    to_ask: list[str] = []
    to_restore: dict[str, str | None] = {}
    for agent in asked:
        wanted = desired.get(agent)
        if state is State.ABORTED:
            if outcomes[agent] is Outcome.CANCELLED and wanted and wanted.version == spec.version:
                running = reported.get(agent)
                back = running.running if running is not None else None
                # One already restarting into the version stays on it (its own health
                # check decides); asking it for the version it runs would change nothing.
                if back != spec.version:
                    to_restore[agent] = back
        elif outcomes[agent] is Outcome.PENDING and (
            wanted is None or wanted.version != spec.version
        ):
            to_ask.append(agent)
    return to_ask, to_restore


def _counts(wave: list[str], outcomes: Mapping[str, Outcome]) -> WaveCounts:
    values = [outcomes[agent] for agent in wave]
    return WaveCounts(
        size=len(wave),
        updated=values.count(Outcome.UPDATED),
        failed=values.count(Outcome.FAILED) + values.count(Outcome.EXCUSED),
        pending=values.count(Outcome.PENDING),
        not_asked=values.count(Outcome.NOT_ASKED),
        cancelled=values.count(Outcome.CANCELLED),
    )


def new_rollout_id(version: str, at: datetime) -> str:
    return f"{version}-{at:%Y%m%dT%H%M%SZ}"


def overlapping(active: Sequence[RolloutStatus], agents: Sequence[str]) -> dict[str, str]:
    """Agents already in an active rollout: agent id → rollout id."""
    taken: dict[str, str] = {}
    wanted = set(agents)
    for status in active:
        if status.state in ACTIVE_STATES:
            for agent in status.spec.agents:
                if agent in wanted:
                    taken.setdefault(agent, status.spec.rollout_id)
    return taken
