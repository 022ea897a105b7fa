"""What the fleet sends one agent, routed: "stored" confirmations to the drain and the
outbox, desired configuration and desired release to whoever applies them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiomqtt

from vigie_core.contract.codec import decode
from vigie_core.contract.data import StoredAck
from vigie_core.contract.releases import DesiredRelease
from vigie_core.contract.settings import DesiredConfig
from vigie_core.contract.topics import QOS_DATA, QOS_STATE, Topics
from vigie_core.errors import ContractError

log = logging.getLogger(__name__)

#: ``(client, desired)``; ``desired`` is the reason as text when the message was unreadable.
OnDesiredConfig = Callable[[aiomqtt.Client, DesiredConfig | str], Awaitable[None]]


class Inbox:
    def __init__(
        self,
        topics: Topics,
        agent_id: str,
        *,
        on_stored: Callable[[list[int]], Awaitable[None]],
        on_desired_config: OnDesiredConfig,
        on_desired_release: Callable[[DesiredRelease], None],
    ) -> None:
        self.topics = topics
        self.agent_id = agent_id
        self._on_stored = on_stored
        self._on_desired_config = on_desired_config
        self._on_desired_release = on_desired_release

    def subscriptions(self) -> list[tuple[str, int]]:
        """(topic, QoS): its confirmations and its desired state, nothing else."""
        return [
            (self.topics.ack(self.agent_id), QOS_DATA),
            (self.topics.desired_config(self.agent_id), QOS_STATE),
            (self.topics.desired_release(self.agent_id), QOS_STATE),
        ]

    async def run(self, client: aiomqtt.Client) -> None:
        """Route every message until the connection drops (raises MqttError)."""
        desired_topic = self.topics.desired_config(self.agent_id)
        async for message in client.messages:
            topic, payload = str(message.topic), bytes(message.payload)
            if not payload:
                continue  # a cleared retained message: nothing is asked any more
            try:
                _, body = decode(self.topics, topic, payload)
            except ContractError as exc:
                if topic == desired_topic:
                    # Refused in the open: the fleet sees why in the reported state.
                    await self._on_desired_config(client, exc.detail)
                else:
                    log.warning("%s: ignored a bad message from the fleet: %s", self.agent_id, exc)
                continue
            if isinstance(body, DesiredConfig):
                await self._on_desired_config(client, body)
            elif isinstance(body, DesiredRelease):
                self._on_desired_release(body)
            elif isinstance(body, StoredAck) and body.agent_id == self.agent_id:
                await self._on_stored(body.seqs())
