"""One fleet instance's MQTT connection, shared by everything the instance runs.

The broker names every client after its certificate (``use_username_as_clientid``),
so a second connection with the same identity would take the first one's session
over. An instance therefore holds one connection, and its parts use it:

- the **ingest** takes what agents send through shared subscriptions
  (``$share/<group>/...``) and acknowledges each message once it is stored;
- the **rollout driver** follows retained documents, acknowledged as they arrive;
- the **instance guard** (here) notices another process holding this identity.

The session is persistent (``clean_session`` false): while the instance is away the
broker keeps what its subscriptions match. paho-mqtt rather than aiomqtt because it
lets the application acknowledge QoS 1 messages itself (``manual_ack``).
"""

from __future__ import annotations

import logging
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from fleet.config import MqttSettings
from fleet.mqtt import paho_client
from vigie_core.clock import utc_now
from vigie_core.contract.presence import InstanceClaim
from vigie_core.contract.topics import QOS_DATA, QOS_STATE, Topics

#: A PUBACK of MQTT 3.1.1 and 5 (reason code and properties omitted: success).
_PUBACK = struct.Struct("!BBH")
_PUBACK_HEADER = mqtt.PUBACK

log = logging.getLogger("fleet.link")


class LinkPart(Protocol):
    """Something an instance runs on its connection."""

    def subscriptions(self) -> list[str]:
        """The filters it needs, subscribed again on every connection."""

    def on_connection(self, connected: bool) -> None:
        """The connection came (its subscriptions confirmed) or went."""


#: (topic filter, handler) for messages a part takes itself; the handler acknowledges.
Route = tuple[str, Callable[[mqtt.MQTTMessage], None]]


@dataclass
class BrokerLink:
    """The connection; ``start``/``stop`` from ``fleet serve``."""

    settings: MqttSettings
    parts: list[LinkPart] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.topics = Topics(self.settings.topic_prefix)
        self.client_id = self.settings.instance_id
        #: Set once the broker confirmed every subscription: from then on it keeps this
        #: instance's messages in its session, even while the instance is away.
        self.subscribed = threading.Event()
        self.connected = threading.Event()
        self.guard = InstanceGuard(self)
        #: Handles every message no route claims: the ingest's shared subscriptions.
        self.default: Callable[[mqtt.MQTTMessage], None] = self.ack
        self._stopping = threading.Event()
        self._subscription_mid: int | None = None
        self.client = paho_client(
            self.client_id, self.settings.tls, persistent_session=True, manual_ack=True
        )
        # Belt and braces: a callback that raises must not end paho's network thread
        # (the instance would stay alive but deaf). The handlers catch everything.
        self.client.suppress_exceptions = True
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def add(self, part: LinkPart, *routes: Route) -> None:
        """Before ``start``: a part, and the routes of the messages it takes itself."""
        self.parts.append(part)
        for topic, handler in routes:
            self.client.message_callback_add(topic, _paho_callback(handler))

    def _all_parts(self) -> list[LinkPart]:
        return [self.guard, *self.parts]

    # --- paho's network thread ---------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: object, _p: object = None
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.error("the broker refused the connection: %s", reason)
            return
        # Subscribe on every connection: Mosquitto 2.0 does not restore shared
        # subscriptions from its persistence file (measured: docs/protocol.md), and a new
        # broker in a cluster knows none; without this the instance would be deaf.
        filters = [topic for part in self._all_parts() for topic in part.subscriptions()]
        _, self._subscription_mid = client.subscribe([(topic, QOS_DATA) for topic in filters])
        self.connected.set()
        log.info(
            "connected to %s:%d as %s, subscribing to %s",
            self.settings.host,
            self.settings.port,
            self.client_id,
            ", ".join(filters),
        )

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, mid: int, reasons: list[Any], _p: object = None
    ) -> None:
        if mid != self._subscription_mid:
            return
        if any(getattr(reason, "is_failure", False) for reason in reasons):
            log.error("the broker refused the subscriptions: %s", reasons)
            return
        self.subscribed.set()
        for part in self._all_parts():
            part.on_connection(True)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: object, _p: object = None
    ) -> None:
        self.connected.clear()
        for part in self._all_parts():
            part.on_connection(False)
        if not self._stopping.is_set():
            log.warning("lost the broker (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self.default(message)  # looked up each time: the ingest sets it after we exist

    def _on_connect_fail(self, _c: mqtt.Client, _u: object) -> None:
        log.warning("broker %s:%d unreachable; retrying", self.settings.host, self.settings.port)

    # --- for the parts -----------------------------------------------------------------

    def ack(self, message: mqtt.MQTTMessage) -> None:
        if message.qos > 0:
            self.client.ack(message.mid, message.qos)

    def ack_all(self, mids: list[int]) -> None:
        """Acknowledge these QoS 1 messages, in this order, in one write.

        paho sends each ``ack()`` as its own packet: a wake-up of its network thread, a
        TLS record and a system call per message, a sixth of the ingest's time. The
        PUBACKs are the same four bytes each way, so they are queued as one buffer
        through paho's packet queue (private, hence the fallback; paho is pinned < 3).
        """
        if not mids:
            return
        queue_packet = getattr(self.client, "_packet_queue", None)
        if queue_packet is None:  # pragma: no cover - another paho than the pinned one
            for mid in mids:
                self.client.ack(mid, 1)
            return
        packets = b"".join(_PUBACK.pack(_PUBACK_HEADER, 2, mid) for mid in mids)
        queue_packet(mqtt.PUBACK, packets, 0, 0)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=QOS_DATA, retain=retain)

    def publish_confirmed(self, topic: str, payload: bytes, timeout_s: float = 10.0) -> bool:
        """A retained publish the broker acknowledged (False: not now; try later)."""
        info = self.client.publish(topic, payload, qos=QOS_STATE, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.client.message_callback_add(self.guard.topic, _paho_callback(self.guard.handle))
        self.client.connect_async(
            self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s
        )
        self.client.loop_start()

    def stop(self) -> None:
        self._stopping.set()
        self.client.disconnect()
        self.client.loop_stop()


def _paho_callback(
    handler: Callable[[mqtt.MQTTMessage], None],
) -> Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None]:
    def callback(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        handler(message)

    return callback


class InstanceGuard:
    """Notices another process connecting with this instance's identity.

    The broker binds client ids to certificates, so only a process holding this
    instance's own certificate can take its session over: two instances started with
    one identity (they must each have their own, ``fleet ca identity``). They would
    push each other off in turn, silently. Each process claims the identity with a
    retained message naming itself, once subscribed; a claim by another process seen
    after its own means the other connected since, and it says so loudly.
    """

    def __init__(self, link: BrokerLink) -> None:
        self.link = link
        self.topic = link.topics.instance(link.client_id)
        self.claim = InstanceClaim(instance=uuid.uuid4().hex, since=utc_now())
        #: How often another process took the session over, since this one started.
        self.takeovers = 0
        self.on_takeover: Callable[[str], None] = lambda _detail: None
        self._claimed = False
        self._last_warning = -60.0

    def subscriptions(self) -> list[str]:
        return [self.topic]

    def on_connection(self, connected: bool) -> None:
        if not connected:
            return
        # After the subscription: the retained claim arriving first is the last one
        # made before ours, which tells whether somebody else came meanwhile.
        threading.Thread(target=self._claim, name="instance-claim", daemon=True).start()

    def _claim(self) -> None:
        if self.link.publish_confirmed(self.topic, self.claim.model_dump_json().encode()):
            self._claimed = True

    def handle(self, message: mqtt.MQTTMessage) -> None:
        self.link.ack(message)
        try:
            claim = InstanceClaim.model_validate_json(message.payload)
        except ValueError:
            return
        if claim.instance == self.claim.instance or not self._claimed:
            return
        self.takeovers += 1
        detail = (
            f"another process (since {claim.since:%Y-%m-%d %H:%M:%S} UTC) connected with "
            f"this fleet instance's identity {self.link.client_id!r} and took its session "
            "over; give each fleet instance its own identity (fleet ca identity)"
        )
        now = time.monotonic()
        if now - self._last_warning >= 60.0:
            self._last_warning = now
            log.error("%s (%d time(s) so far)", detail, self.takeovers)
        self.on_takeover(detail)
