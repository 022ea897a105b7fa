"""Desired and reported configuration over MQTT, for the CLI: read what the broker
retains for every agent, and publish desired configurations (retained, QoS 1)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.contract import (
    Channel,
    ContractError,
    DesiredConfig,
    DesiredRelease,
    Message,
    ReportedConfig,
    ReportedRelease,
    Topics,
    decode,
    encode,
)
from edge_agent.tls import client_context
from fleet.config import MqttSettings
from fleet.desired import ConfigSync
from fleet.errors import FleetError

QOS = 1


class BrokerUnavailable(FleetError):  # noqa: N818
    """The broker could not be reached or refused the CLI."""


def _connect(settings: MqttSettings) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-cli-{uuid.uuid4().hex[:8]}")
    credentials = settings.cli_tls or settings.tls
    if credentials is not None:
        client.tls_set_context(client_context(credentials))
        password = credentials.password()
        if credentials.username is not None and password is not None:
            client.username_pw_set(credentials.username, password.get_secret_value())
    connected = threading.Event()
    outcome: list[str] = []

    def on_connect(*args: object) -> None:
        outcome.append(str(args[3]))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
    except OSError as exc:
        raise BrokerUnavailable(f"broker {settings.host}:{settings.port}: {exc}") from None
    client.loop_start()
    if not connected.wait(10) or outcome[0] != "Success":
        client.loop_stop()
        reason = outcome[0] if outcome else "no answer"
        raise BrokerUnavailable(f"broker {settings.host}:{settings.port} refused us: {reason}")
    return client


def _collect(settings: MqttSettings, filters: list[str], quiet_s: float) -> list[Message]:
    """The retained messages under ``filters``; the read ends once none has come for
    ``quiet_s`` (retained messages arrive right after the subscription)."""
    topics = Topics(settings.topic_prefix)
    found: list[Message] = []
    last = [time.monotonic()]
    subscribed = threading.Event()

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        last[0] = time.monotonic()
        try:
            _, body = decode(topics, message.topic, bytes(message.payload))
        except ContractError:
            return  # an unreadable desired message shows as the agent's rejection
        found.append(body)

    client = _connect(settings)
    try:
        client.on_message = on_message
        client.on_subscribe = lambda *_: subscribed.set()
        client.subscribe([(topic, QOS) for topic in filters])
        subscribed.wait(10)
        last[0] = time.monotonic()
        while time.monotonic() - last[0] < quiet_s:
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    return found


def read_config_state(settings: MqttSettings, quiet_s: float = 0.5) -> dict[str, ConfigSync]:
    """Every agent's retained desired and reported configuration."""
    topics = Topics(settings.topic_prefix)
    filters = [topics.every_agent(Channel.DESIRED), topics.every_agent(Channel.REPORTED)]
    messages = _collect(settings, filters, quiet_s)
    desired = {m.agent_id: m for m in messages if isinstance(m, DesiredConfig)}
    reported = {m.agent_id: m for m in messages if isinstance(m, ReportedConfig)}
    return {
        agent_id: ConfigSync(agent_id, desired.get(agent_id), reported.get(agent_id))
        for agent_id in sorted({*desired, *reported})
    }


def read_release_state(
    settings: MqttSettings, quiet_s: float = 0.5
) -> dict[str, tuple[DesiredRelease | None, ReportedRelease | None]]:
    """Every agent's retained desired release and update report."""
    topics = Topics(settings.topic_prefix)
    filters = [topics.every_agent(Channel.DESIRED), topics.every_agent(Channel.REPORTED)]
    messages = _collect(settings, filters, quiet_s)
    desired = {m.agent_id: m for m in messages if isinstance(m, DesiredRelease)}
    reported = {m.agent_id: m for m in messages if isinstance(m, ReportedRelease)}
    return {
        agent_id: (desired.get(agent_id), reported.get(agent_id))
        for agent_id in sorted({*desired, *reported})
    }


def publish_desired(
    settings: MqttSettings,
    messages: Sequence[DesiredConfig | DesiredRelease],
    progress: Callable[[DesiredConfig | DesiredRelease], None] = lambda _: None,
) -> None:
    """Publish each desired state, retained, and wait for the broker's PUBACK."""
    topics = Topics(settings.topic_prefix)
    client = _connect(settings)
    try:
        for message in messages:
            topic = (
                topics.desired_config(message.agent_id)
                if isinstance(message, DesiredConfig)
                else topics.desired_release(message.agent_id)
            )
            info = client.publish(topic, encode(message), qos=QOS, retain=True)
            info.wait_for_publish(10)
            if not info.is_published():
                who = message.agent_id
                raise BrokerUnavailable(f"the broker did not take {who}'s desired state")
            progress(message)
    finally:
        client.disconnect()
        client.loop_stop()
