"""The documents a staged rollout is made of, retained under ``<prefix>/rollouts/<id>/``.

The **spec** (version, waves of agent ids, failure threshold; written once by ``fleet
rollout start``), the **control** (run, pause or abort, and failures an operator
excused on resume; written by the CLI) and the **progress** (how many waves are
released; written by the fleet service, only upwards). No agent can read or write
them (``Topics.agent_grants``).
"""

from __future__ import annotations

import enum

from pydantic import Field, model_validator

from vigie_core.contract.identifiers import ReleaseUrl, ReleaseVersion, RolloutId
from vigie_core.contract.model import (
    SCHEMA_VERSION,
    ContractModel,
    Count,
    SchemaVersion,
    UtcDatetime,
)


class RolloutDocument(ContractModel):
    """What every rollout document carries."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    rollout_id: RolloutId


class RolloutSpec(RolloutDocument):
    """What to roll out to whom, in which waves (written once, retained)."""

    version: ReleaseVersion
    url: ReleaseUrl
    #: Agent ids, wave by wave; every agent appears once.
    waves: list[list[str]] = Field(min_length=1)
    #: The rollout stops itself once more than this share of the agents asked so far
    #: failed (rolled back or refused).
    max_failure_percent: float = Field(ge=0, le=100)
    targets: list[str]
    created_at: UtcDatetime

    @model_validator(mode="after")
    def _each_agent_once(self) -> RolloutSpec:
        agents = [agent for wave in self.waves for agent in wave]
        if len(agents) != len(set(agents)) or any(not wave for wave in self.waves):
            raise ValueError("each agent must be in exactly one wave, and no wave empty")
        return self

    @property
    def agents(self) -> list[str]:
        return [agent for wave in self.waves for agent in wave]


class Command(enum.StrEnum):
    RUN = "run"
    PAUSE = "pause"
    ABORT = "abort"


class RolloutControl(RolloutDocument):
    """What the operator asks of the rollout (retained; the CLI writes it)."""

    command: Command
    #: Failed agents the operator accepted when resuming: no longer counted against the
    #: threshold (they stay on their old release; a failed version is not retried).
    excused: list[str] = Field(default_factory=list)
    at: UtcDatetime


class RolloutProgress(RolloutDocument):
    """How far the rollout went (retained; the fleet service writes it, only upwards)."""

    released_waves: Count
    at: UtcDatetime
