"""Desired and reported configuration over MQTT, for the CLI: read what the broker
retains for every agent, and publish desired configurations (retained, QoS 1)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

import paho.mqtt.client as mqtt

from fleet.config import MqttSettings
from fleet.desired.targets import ConfigSync
from fleet.errors import BrokerUnavailable
from fleet.mqtt import paho_client
from fleet.rollouts.view import RolloutView
from vigie_core.contract.codec import Message, decode, encode
from vigie_core.contract.releases import DesiredRelease, ReportedRelease
from vigie_core.contract.settings import DesiredConfig, ReportedConfig
from vigie_core.contract.topics import Channel, Topics
from vigie_core.errors import ContractError

QOS = 1
D = TypeVar("D", DesiredConfig, DesiredRelease)
R = TypeVar("R", ReportedConfig, ReportedRelease)


def _connect(settings: MqttSettings) -> mqtt.Client:
    client = paho_client(f"fleet-cli-{uuid.uuid4().hex[:8]}", settings.cli_tls or settings.tls)
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


def _collect_raw(
    settings: MqttSettings, filters: list[str], quiet_s: float
) -> list[tuple[str, bytes]]:
    """The retained messages under ``filters`` as (topic, payload); the read ends once
    none has come for ``quiet_s`` (retained messages arrive right after the
    subscription)."""
    found: list[tuple[str, bytes]] = []
    last = [time.monotonic()]
    subscribed = threading.Event()

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        last[0] = time.monotonic()
        found.append((message.topic, bytes(message.payload)))

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


def _collect(settings: MqttSettings, filters: list[str], quiet_s: float) -> list[Message]:
    """The retained messages under ``filters`` that follow the contract."""
    topics = Topics(settings.topic_prefix)
    found: list[Message] = []
    for topic, payload in _collect_raw(settings, filters, quiet_s):
        try:
            _, body = decode(topics, topic, payload)
        except ContractError:
            continue  # an unreadable desired message shows as the agent's rejection
        found.append(body)
    return found


def read_rollouts(settings: MqttSettings, quiet_s: float = 0.5) -> RolloutView:
    """Every rollout and every agent's desired and reported release."""
    view = RolloutView(settings.topic_prefix)
    for topic, payload in _collect_raw(settings, view.filters(), quiet_s):
        view.absorb(topic, payload)
    return view


def _desired_and_reported(
    settings: MqttSettings, item: str, desired_type: type[D], reported_type: type[R], quiet_s: float
) -> dict[str, tuple[D | None, R | None]]:
    """Per agent, its retained desired and reported ``item`` (``config``, ``release``)."""
    topics = Topics(settings.topic_prefix)
    filters = [
        topics.every_agent(Channel.DESIRED, item),
        topics.every_agent(Channel.REPORTED, item),
    ]
    messages = _collect(settings, filters, quiet_s)
    desired: dict[str, D] = {m.agent_id: m for m in messages if isinstance(m, desired_type)}
    reported: dict[str, R] = {m.agent_id: m for m in messages if isinstance(m, reported_type)}
    return {
        agent_id: (desired.get(agent_id), reported.get(agent_id))
        for agent_id in sorted({*desired, *reported})
    }


def read_config_state(settings: MqttSettings, quiet_s: float = 0.5) -> dict[str, ConfigSync]:
    """Every agent's retained desired and reported configuration."""
    found = _desired_and_reported(settings, "config", DesiredConfig, ReportedConfig, quiet_s)
    return {agent_id: ConfigSync(agent_id, *pair) for agent_id, pair in found.items()}


def read_release_state(
    settings: MqttSettings, quiet_s: float = 0.5
) -> dict[str, tuple[DesiredRelease | None, ReportedRelease | None]]:
    """Every agent's retained desired release and update report."""
    return _desired_and_reported(settings, "release", DesiredRelease, ReportedRelease, quiet_s)


def publish_desired(
    settings: MqttSettings,
    messages: Sequence[DesiredConfig | DesiredRelease],
    progress: Callable[[DesiredConfig | DesiredRelease], None] = lambda _: None,
) -> None:
    """Publish each desired state, retained, and wait for the broker's PUBACK."""
    topics = Topics(settings.topic_prefix)

    def topic_of(message: DesiredConfig | DesiredRelease) -> str:
        if isinstance(message, DesiredConfig):
            return topics.desired_config(message.agent_id)
        return topics.desired_release(message.agent_id)

    publish_retained(
        settings,
        [(topic_of(message), encode(message)) for message in messages],
        lambda index: progress(messages[index]),
    )


def publish_retained(
    settings: MqttSettings,
    messages: Sequence[tuple[str, bytes]],
    progress: Callable[[int], None] = lambda _: None,
) -> None:
    """Publish (topic, payload) pairs retained at QoS 1, each confirmed by the broker
    before the next; ``progress`` gets the index of each one done."""
    client = _connect(settings)
    try:
        for index, (topic, payload) in enumerate(messages):
            info = client.publish(topic, payload, qos=QOS, retain=True)
            info.wait_for_publish(10)
            if not info.is_published():
                raise BrokerUnavailable(f"the broker did not take {topic}")
            progress(index)
    finally:
        client.disconnect()
        client.loop_stop()
