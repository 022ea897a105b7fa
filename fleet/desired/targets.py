"""Desired configuration on the fleet side (pure): which agents a target names, which
version a push gets, and how far each agent is from what it should run."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fleet.errors import TargetError
from fleet.storage.queries import AgentView
from vigie_core.contract.identifiers import AgentKind
from vigie_core.contract.settings import DesiredConfig, ReportedConfig

TARGET_HELP = (
    "An agent id, site:<site id>, kind:booth|bus, tag:<tag>, or 'all'. Repeat for a union."
)


def select_agents(views: Sequence[AgentView], targets: Iterable[str]) -> list[str]:
    """The ids of the agents any of ``targets`` names; raises TargetError for a target
    that is malformed or names nobody (nothing must be sent then)."""
    chosen: set[str] = set()
    for target in targets:
        kind, _, value = target.partition(":")
        if target == "all":
            matched = {view.agent_id for view in views}
        elif not value:
            matched = {view.agent_id for view in views if view.agent_id == target}
        elif kind == "site":
            matched = {view.agent_id for view in views if view.site_id == value}
        elif kind == "kind":
            if value not in {k.value for k in AgentKind}:
                raise TargetError(target, "kind is booth or bus")
            matched = {view.agent_id for view in views if view.kind == value}
        elif kind == "tag":
            matched = {view.agent_id for view in views if value in view.tags}
        else:
            raise TargetError(target, TARGET_HELP)
        if not matched:
            raise TargetError(target, "matches no known agent; nothing was sent")
        chosen |= matched
    if not chosen:
        raise TargetError("", "give at least one --target")
    return sorted(chosen)


def next_version(desired: DesiredConfig | None, reported: ReportedConfig | None) -> int:
    """One above anything the agent was ever asked to run or runs."""
    seen = [0]
    if desired is not None:
        seen.append(desired.version)
    if reported is not None:
        seen.append(reported.version)
        if reported.rejected is not None:
            seen.append(reported.rejected.version)
    return max(seen) + 1


class SyncState(enum.StrEnum):
    LOCAL = "local"  # nothing pushed: runs its own file
    IN_SYNC = "in sync"
    PENDING = "pending"  # pushed, not applied yet (offline, or on its way)
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ConfigSync:
    agent_id: str
    desired: DesiredConfig | None
    reported: ReportedConfig | None

    @property
    def state(self) -> SyncState:
        if self.desired is None:
            return SyncState.LOCAL
        reported = self.reported
        if reported is None:
            return SyncState.PENDING
        if reported.version == self.desired.version:
            return SyncState.IN_SYNC
        rejected = reported.rejected
        if rejected is not None and rejected.version >= self.desired.version:
            return SyncState.REJECTED
        return SyncState.PENDING

    @property
    def reason(self) -> str:
        rejected = self.reported.rejected if self.reported else None
        if self.state is SyncState.REJECTED and rejected is not None:
            return f"{rejected.field}: {rejected.reason}"
        return ""

    def as_json(self) -> dict[str, object]:
        return {
            "agent_id": self.agent_id,
            "state": self.state.value,
            "desired_version": self.desired.version if self.desired else None,
            "reported_version": self.reported.version if self.reported else None,
            "reason": self.reason,
        }
