"""The agent's MQTT session: connect with a Last Will, say who it is, run the drain and
the inbox on the connection, reconnect with capped, jittered backoff when it fails,
and say "offline" on a clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Final

import aiomqtt

from edge_agent.aio import cancel_all, wait_or_stop
from edge_agent.config import AgentConfig
from edge_agent.runtime.drain import Drain
from edge_agent.runtime.inbox import Inbox
from edge_agent.updates.updater import Updater
from vigie_core.backoff import backoff_delay
from vigie_core.contract.codec import encode
from vigie_core.contract.presence import AgentState
from vigie_core.contract.settings import ReportedConfig
from vigie_core.contract.topics import QOS_STATE, Topics
from vigie_core.tls import check_identity, client_context

log = logging.getLogger(__name__)

#: At most one log line this often about publishes the broker refuses.
REFUSAL_LOG_S: Final = 60.0


def broker_identity(config: AgentConfig) -> dict[str, Any]:
    """aiomqtt's TLS and login arguments; raises TlsError before anything connects if
    the files are missing or the certificate belongs to another agent."""
    credentials = config.broker.tls
    if credentials is None:
        return {}
    check_identity(credentials, config.agent_id)
    password = credentials.password()
    return {
        "tls_context": client_context(credentials),
        "tls_insecure": False,
        "username": credentials.username,
        "password": password.get_secret_value() if password is not None else None,
    }


class _RefusalCountingClient(aiomqtt.Client):
    """aiomqtt discards a PUBACK's reason code; over MQTT 5 it is how the broker says
    it refused a publish (its ACL, e.g. a certificate for another agent). We count it:
    such a message is never confirmed and stays in the outbox, so a refusal must show.
    Overrides aiomqtt's (private) PUBACK hook, then lets it do its own work."""

    def __init__(self, on_refused: Callable[[str], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_refused = on_refused

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        if getattr(reason_code, "is_failure", False):
            self._on_refused(str(reason_code))
        super()._on_publish(client, userdata, mid, reason_code, properties)


class Session:
    """One agent's connection to the broker, kept up until ``run``'s ``stop``."""

    def __init__(
        self,
        *,
        config: AgentConfig,
        identity: dict[str, Any],
        drain: Drain,
        inbox: Inbox,
        next_session: Callable[[], Awaitable[int]],
        resend_all: Callable[[], Awaitable[None]],
        birth: Callable[[int], AgentState],
        reported_config: Callable[[], ReportedConfig],
        updater: Updater | None,
        clock: Callable[[], datetime],
        rng: random.Random,
    ) -> None:
        self.agent_id = config.agent_id
        self.broker = config.broker
        self.topics = Topics(config.broker.topic_prefix)
        #: TLS and login arguments (:func:`broker_identity`).
        self._identity = identity
        self.drain = drain
        self.inbox = inbox
        self._next_session = next_session
        self._resend_all = resend_all
        self._birth = birth
        self._reported_config = reported_config
        self.updater = updater
        self.clock = clock
        self.rng = rng
        self.connected = asyncio.Event()
        #: This connection's session number (it orders births and Last Wills).
        self.number = 0
        #: Publishes the broker refused (MQTT 5 reason code), since the agent started.
        self.refused = 0
        self._last_refusal_log = -REFUSAL_LOG_S

    # --- the connection ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            number = await self._next_session()
            try:
                async with self._client(number) as client:
                    attempt = 0
                    await self._connected(client, number, stop)
                    return
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                delay = backoff_delay(
                    attempt, self.broker.reconnect_initial_s, self.broker.reconnect_max_s, self.rng
                )
                attempt += 1
                log.warning(
                    "%s: broker %s:%d unavailable (%s); retrying in %.1f s",
                    self.agent_id,
                    self.broker.host,
                    self.broker.port,
                    exc,
                    delay,
                )
                await wait_or_stop(stop, delay)

    def _client(self, number: int) -> aiomqtt.Client:
        last_will = AgentState(agent_id=self.agent_id, online=False, session=number)
        client = _RefusalCountingClient(
            self._on_refused,
            self.broker.host,
            self.broker.port,
            # MQTT 5: a PUBACK then says when the broker refused a publish (ACL).
            protocol=aiomqtt.ProtocolVersion.V5,
            # A stable client id: the broker can then tell a reconnection from a newcomer
            # and drop the stale connection of the same agent.
            identifier=self.agent_id,
            keepalive=self.broker.keepalive_s,
            will=aiomqtt.Will(
                self.topics.state(self.agent_id), encode(last_will), qos=QOS_STATE, retain=True
            ),
            timeout=self.broker.ack_timeout_s,
            **self._identity,
        )
        # aiomqtt warns past 10 pending publishes; our window holds more by design.
        client.pending_calls_threshold = self.broker.publish_window
        return client

    async def _connected(self, client: aiomqtt.Client, number: int, stop: asyncio.Event) -> None:
        for topic, qos in self.inbox.subscriptions():
            await client.subscribe(topic, qos=qos)
        self.number = number
        # Whatever was sent before and never confirmed may be lost (with the broker, or
        # with a fleet instance): send it all again, the fleet stores each message once.
        await self._resend_all()
        self.drain.reset()
        await self.publish_birth(client)
        await self.publish_reported(client)
        await self._publish_release(client)
        self.connected.set()
        log.info("%s: connected, session %d", self.agent_id, number)
        # Not a TaskGroup: it would wrap MqttError in an ExceptionGroup, and the caller's
        # reconnect logic wants the plain error from whichever task saw the drop first.
        tasks = {
            asyncio.create_task(self.drain.run(client, stop), name="drain"),
            asyncio.create_task(self.inbox.run(client), name="inbox"),
            asyncio.create_task(self._release_reports(client), name="release reports"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_all(tasks)
        for task in done:
            task.result()  # re-raises the MqttError that ended the session
        # Clean shutdown (also the restart into a new release): the steps just taken
        # (installing, health_checking) go out before we leave.
        await self._publish_steps(client)
        # The broker does not send the Last Will on a normal disconnect, so say
        # "offline" ourselves, in the same session.
        offline = AgentState(
            agent_id=self.agent_id, online=False, session=number, since=self.clock()
        )
        await client.publish(
            self.topics.state(self.agent_id), encode(offline), qos=QOS_STATE, retain=True
        )
        self.connected.clear()

    def _on_refused(self, reason: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._last_refusal_log >= REFUSAL_LOG_S:
            self._last_refusal_log = now
            log.error(
                "%s: the broker refused %d message(s) so far (%s): check that this "
                "agent's certificate is its own and the broker's ACL (fleet agent enroll)",
                self.agent_id,
                self.refused,
                reason,
            )

    # --- what the agent says about itself (retained) ------------------------------------

    async def publish_birth(self, client: aiomqtt.Client) -> None:
        """Who the agent is, what it has, and its opening hours: again whenever a pushed
        configuration changed one of them."""
        birth = encode(self._birth(self.number))
        await client.publish(self.topics.state(self.agent_id), birth, qos=QOS_STATE, retain=True)

    async def publish_reported(self, client: aiomqtt.Client) -> None:
        topic = self.topics.reported_config(self.agent_id)
        await client.publish(topic, encode(self._reported_config()), qos=QOS_STATE, retain=True)

    async def _publish_release(self, client: aiomqtt.Client) -> None:
        """On connection: where the update is now (steps taken offline are not replayed)."""
        if self.updater is None:
            return
        self.updater.steps.clear()
        topic = self.topics.reported_release(self.agent_id)
        await client.publish(topic, encode(self.updater.report), qos=QOS_STATE, retain=True)

    async def _release_reports(self, client: aiomqtt.Client) -> None:
        """Say every step of an update as it happens, in order (retained: the last
        one stays for whoever looks later)."""
        if self.updater is None:
            await asyncio.Event().wait()  # nothing to report; ends with the session
            return
        while True:
            await self.updater.changed.wait()
            self.updater.changed.clear()
            await self._publish_steps(client)

    async def _publish_steps(self, client: aiomqtt.Client) -> None:
        """Publish the update steps not yet said, oldest first. A step leaves the queue
        only once published: one cut off by a shutdown goes out again, never lost."""
        if self.updater is None:
            return
        topic = self.topics.reported_release(self.agent_id)
        while self.updater.steps:
            step = self.updater.steps[0]
            await client.publish(topic, encode(step), qos=QOS_STATE, retain=True)
            if self.updater.steps and self.updater.steps[0] is step:  # unless it overflowed
                self.updater.steps.popleft()
