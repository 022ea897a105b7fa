"""The fleet's MQTT clients (paho): one place that gives them TLS and a login.

paho-mqtt and not aiomqtt on this side: the ingest must acknowledge each QoS 1 message
only once it is stored (``manual_ack``), which aiomqtt does not offer; the other
clients (rollout driver, CLI) use the same library so that TLS is set up one way.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from vigie_core.tls import BrokerCredentials, client_context

#: paho's reconnection delays: its backoff has no jitter, which is fine for the few
#: fleet instances (agents, which are many, use jittered backoff).
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 10


def paho_client(
    client_id: str,
    credentials: BrokerCredentials | None,
    *,
    persistent_session: bool = False,
    manual_ack: bool = False,
) -> mqtt.Client:
    """A paho client (MQTT 3.1.1) presenting ``credentials``: TLS towards the fleet CA
    only, and the client certificate or login they name. ``persistent_session``: the
    broker queues for this client id while it is away (the ingest)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=not persistent_session,
        manual_ack=manual_ack,
    )
    if credentials is not None:
        client.tls_set_context(client_context(credentials))
        password = credentials.password()
        if credentials.username is not None and password is not None:
            client.username_pw_set(credentials.username, password.get_secret_value())
    client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
    return client
