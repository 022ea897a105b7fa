"""The rollouts as the broker retains them (pure): every rollout document, and every
agent's desired and reported release, absorbed message by message. The fleet service's
driver and the CLI both build one from retained messages and evaluate it
(``fleet.rollouts.plan``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from pydantic import ValidationError

from fleet.rollouts.plan import Outcome, RolloutStatus, evaluate
from vigie_core.contract.codec import decode
from vigie_core.contract.releases import DesiredRelease, ReportedRelease
from vigie_core.contract.rollouts import (
    RolloutControl,
    RolloutDocument,
    RolloutProgress,
    RolloutSpec,
)
from vigie_core.contract.topics import Channel, Topics
from vigie_core.errors import ContractError

_DOCUMENTS: Final[dict[str, tuple[str, type[RolloutDocument]]]] = {
    "spec": ("specs", RolloutSpec),
    "control": ("controls", RolloutControl),
    "progress": ("progress", RolloutProgress),
}


@dataclass
class RolloutView:
    """Every rollout document and every agent's desired and reported release, as the
    broker retains them; ``absorb`` takes each retained message (an empty payload is a
    cleared one)."""

    prefix: str
    specs: dict[str, RolloutSpec] = field(default_factory=dict)
    controls: dict[str, RolloutControl] = field(default_factory=dict)
    progress: dict[str, RolloutProgress] = field(default_factory=dict)
    desired: dict[str, DesiredRelease] = field(default_factory=dict)
    reported: dict[str, ReportedRelease] = field(default_factory=dict)

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    def absorb(self, topic: str, payload: bytes) -> None:
        found = self.topics.parse_rollout(topic)
        if found is not None:
            self._absorb_document(*found, payload)
        else:
            self._absorb_release(topic, payload)

    def _absorb_document(self, rollout_id: str, part: str, payload: bytes) -> None:
        attribute, model = _DOCUMENTS[part]
        documents: dict[str, RolloutDocument] = getattr(self, attribute)
        if not payload:
            documents.pop(rollout_id, None)
            return
        try:
            document = model.model_validate_json(payload)
        except ValidationError:
            return  # not ours to repair: a document that does not parse is no rollout
        if document.rollout_id == rollout_id:
            documents[rollout_id] = document

    def _absorb_release(self, topic: str, payload: bytes) -> None:
        topics = self.topics
        try:
            parsed = topics.parse(topic)
        except ContractError:
            return
        if parsed.item != "release":
            return
        by_agent = self.desired if parsed.channel is Channel.DESIRED else self.reported
        if not payload:
            by_agent.pop(parsed.agent_id, None)
            return
        try:
            _, message = decode(topics, topic, payload)
        except ContractError:
            return
        if isinstance(message, DesiredRelease | ReportedRelease):
            by_agent[parsed.agent_id] = message  # type: ignore[assignment]

    def statuses(self) -> list[RolloutStatus]:
        """Every rollout, oldest first."""
        found = [
            evaluate(
                spec,
                self.controls.get(rollout_id),
                self.progress.get(rollout_id),
                self.desired,
                self.reported,
            )
            for rollout_id, spec in self.specs.items()
        ]
        return sorted(found, key=lambda status: status.spec.created_at)

    def filters(self) -> list[str]:
        """What to subscribe to for this view."""
        return [
            self.topics.every_rollout(),
            self.topics.every_agent(Channel.DESIRED, "release"),
            self.topics.every_agent(Channel.REPORTED, "release"),
        ]

    def unfinished_agents(self, status: RolloutStatus) -> list[dict[str, object]]:
        """The agents a technician looks at: asked and not updated."""
        rows: list[dict[str, object]] = []
        for agent, outcome in status.outcomes.items():
            if outcome in (Outcome.UPDATED, Outcome.NOT_ASKED):
                continue
            reported = self.reported.get(agent)
            rows.append(
                {
                    "agent_id": agent,
                    "outcome": outcome.value,
                    "running": reported.running if reported else None,
                    "phase": reported.phase.value if reported else None,
                    "reason": reported.reason if reported else "no report yet",
                }
            )
        return rows
