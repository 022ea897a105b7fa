"""The topic tree, and what the broker lets each identity do in it.

Every topic any program publishes or subscribes to is built here, and so is every
grant of the broker's ACL (``fleet broker config`` only writes them out): a topic
that changes here changes its grants with it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

from vigie_core.contract.data import DataMessage, HealthReport, Reading, ReadingKind
from vigie_core.contract.identifiers import (
    DEFAULT_PREFIX,
    IDENTIFIER_PATTERN,
    IDENTIFIER_RE,
    ROLLOUT_ID_RE,
    check_prefix,
)
from vigie_core.errors import ContractError, RejectReason

PROTOCOL_LEVEL: Final = "v1"
QOS_DATA: Final = 1
QOS_STATE: Final = 1


class Channel(enum.StrEnum):
    """The fourth topic level."""

    STATE = "state"
    READING = "reading"
    HEALTH = "health"
    EVENT = "event"
    BATCH = "batch"
    #: From the fleet to the agent; the fleet does not subscribe to it.
    ACK = "ack"
    #: Desired state, fleet -> agent (retained): ``desired/config``, ``desired/release``.
    DESIRED = "desired"
    #: What the agent runs, agent -> fleet (retained): ``reported/config``, ...
    REPORTED = "reported"


#: The fifth level under ``desired/`` and ``reported/``.
STATE_ITEMS: Final = ("config", "release")
#: The last level of a rollout's documents.
ROLLOUT_PARTS: Final = ("spec", "control", "progress")
RolloutPart = Literal["spec", "control", "progress"]

#: (access, topic filter) as the broker's ACL file says it: ``read`` or ``write``.
Grant = tuple[Literal["read", "write"], str]


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """The parts of a topic the fleet routes on."""

    agent_id: str
    channel: Channel
    kind: ReadingKind | None = None
    #: The fifth level of desired/reported topics: ``config`` or ``release``.
    item: str | None = None


@dataclass(frozen=True, slots=True)
class Topics:
    """Builds and parses the topic tree under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    # --- one agent's branch ------------------------------------------------------------

    def _base(self, agent_id: str) -> str:
        if not IDENTIFIER_RE.match(agent_id):
            raise ValueError(f"agent id {agent_id!r} must match {IDENTIFIER_PATTERN}")
        return f"{self.prefix}/{PROTOCOL_LEVEL}/{agent_id}"

    def state(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.STATE}"

    def reading(self, agent_id: str, kind: ReadingKind) -> str:
        return f"{self._base(agent_id)}/{Channel.READING}/{kind}"

    def health(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.HEALTH}"

    def event(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.EVENT}"

    def batch(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.BATCH}"

    def ack(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.ACK}"

    def topic_for(self, message: DataMessage) -> str:
        """The topic a data message is published on."""
        if isinstance(message, Reading):
            return self.reading(message.agent_id, message.kind)
        if isinstance(message, HealthReport):
            return self.health(message.agent_id)
        return self.event(message.agent_id)

    def desired(self, agent_id: str) -> str:
        """The filter for an agent's desired state (configuration, release)."""
        return f"{self._base(agent_id)}/{Channel.DESIRED}/#"

    def desired_config(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.DESIRED}/config"

    def reported_config(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.REPORTED}/config"

    def desired_release(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.DESIRED}/release"

    def reported_release(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.REPORTED}/release"

    # --- every agent -------------------------------------------------------------------

    @property
    def _every_agent(self) -> str:
        return f"{self.prefix}/{PROTOCOL_LEVEL}/+"

    def from_agents(self) -> list[str]:
        """The subscription filters for everything agents publish (not the fleet's acks)."""
        base = self._every_agent
        return [
            f"{base}/{Channel.STATE}",
            f"{base}/{Channel.READING}/+",
            f"{base}/{Channel.HEALTH}",
            f"{base}/{Channel.EVENT}",
            f"{base}/{Channel.BATCH}",
        ]

    def every_agent(self, channel: Channel, item: str = "#") -> str:
        """The filter for one channel of every agent: ``vigie/v1/+/reported/#``, or one
        item of it, ``vigie/v1/+/desired/release``."""
        return f"{self._every_agent}/{channel}/{item}"

    # --- rollouts (outside the agents' branch: no agent can see them) -------------------

    def rollout(self, rollout_id: str, part: RolloutPart) -> str:
        if part not in ROLLOUT_PARTS or not ROLLOUT_ID_RE.match(rollout_id):
            raise ValueError(f"no rollout topic for {rollout_id!r}/{part!r}")
        return f"{self.prefix}/rollouts/{rollout_id}/{part}"

    def every_rollout(self) -> str:
        return f"{self.prefix}/rollouts/+/+"

    def parse_rollout(self, topic: str) -> tuple[str, RolloutPart] | None:
        """(rollout id, part) for a rollout topic, None for any other topic."""
        levels = topic.split("/")
        if len(levels) != 4 or levels[0] != self.prefix or levels[1] != "rollouts":
            return None
        rollout_id, part = levels[2], levels[3]
        if part not in ROLLOUT_PARTS or not ROLLOUT_ID_RE.match(rollout_id):
            return None
        return rollout_id, part  # type: ignore[return-value] # checked against ROLLOUT_PARTS

    # --- the fleet's own ---------------------------------------------------------------

    def instance(self, client_id: str) -> str:
        """Where a fleet instance claims its identity (``fleet.link.InstanceGuard``)."""
        if not IDENTIFIER_RE.match(client_id):
            raise ValueError(f"fleet instance id {client_id!r} must match {IDENTIFIER_PATTERN}")
        return f"{self.prefix}/fleet/{client_id}/instance"

    # --- what the broker lets each identity do ------------------------------------------

    def agent_grants(self, agent_id: str) -> list[Grant]:
        """An agent: publish its own data and reports, read its own acknowledgements and
        desired state, nothing else."""
        base = self._base(agent_id)
        return [
            ("write", self.state(agent_id)),
            ("write", f"{base}/{Channel.READING}/+"),
            ("write", self.health(agent_id)),
            ("write", self.event(agent_id)),
            ("write", self.batch(agent_id)),
            ("write", f"{base}/{Channel.REPORTED}/#"),
            ("read", self.ack(agent_id)),
            ("read", self.desired(agent_id)),
        ]

    def service_grants(self) -> list[Grant]:
        """The fleet service: read everything agents send, write "stored"
        acknowledgements, drive rollouts (the releases agents should run and how far
        each rollout went), and claim its instance's identity."""
        every = self._every_agent
        return [
            ("read", f"{every}/#"),
            ("write", f"{every}/{Channel.ACK}"),
            ("write", f"{every}/{Channel.DESIRED}/release"),
            ("read", f"{self.prefix}/rollouts/#"),
            ("write", f"{self.prefix}/rollouts/+/progress"),
            ("read", f"{self.prefix}/fleet/+/instance"),
            ("write", f"{self.prefix}/fleet/+/instance"),
        ]

    def technician_grants(self) -> list[Grant]:
        """The technicians' CLI: read everything (status, presence), publish desired
        state, start and steer rollouts; never acknowledgements or data."""
        every = self._every_agent
        return [
            ("read", f"{every}/#"),
            ("write", f"{every}/{Channel.DESIRED}/#"),
            ("read", f"{self.prefix}/rollouts/#"),
            ("write", f"{self.prefix}/rollouts/+/spec"),
            ("write", f"{self.prefix}/rollouts/+/control"),
        ]

    # --- parsing -----------------------------------------------------------------------

    def parse(self, topic: str) -> ParsedTopic:
        """Split a topic into agent id, channel and reading kind, or raise ContractError."""
        levels = topic.split("/")
        if len(levels) < 4 or levels[0] != self.prefix or levels[1] != PROTOCOL_LEVEL:
            raise ContractError(RejectReason.BAD_TOPIC, f"not under {self.prefix}/v1/")
        agent_id, rest = levels[2], levels[3:]
        if not IDENTIFIER_RE.match(agent_id):
            raise ContractError(RejectReason.BAD_TOPIC, "agent id level is not an identifier")
        try:
            channel = Channel(rest[0])
        except ValueError:
            raise ContractError(RejectReason.BAD_TOPIC, "unknown channel") from None
        if channel is Channel.READING:
            if len(rest) != 2:
                raise ContractError(RejectReason.BAD_TOPIC, "reading topic needs a kind")
            try:
                return ParsedTopic(agent_id, channel, ReadingKind(rest[1]))
            except ValueError:
                raise ContractError(RejectReason.BAD_TOPIC, "unknown reading kind") from None
        if channel in (Channel.DESIRED, Channel.REPORTED):
            if len(rest) != 2 or rest[1] not in STATE_ITEMS:
                raise ContractError(
                    RejectReason.BAD_TOPIC, f"{channel} topic must end in /config or /release"
                )
            return ParsedTopic(agent_id, channel, item=rest[1])
        if len(rest) != 1:
            raise ContractError(RejectReason.BAD_TOPIC, "unexpected levels after the channel")
        return ParsedTopic(agent_id, channel)
