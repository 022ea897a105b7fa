"""Who may do what on the broker, as Mosquitto's dynamic security plugin holds it.

Why the plugin and not an ``acl_file``: Mosquitto 2.0's ACL file never checks a
SUBSCRIBE, and cannot be combined with a plugin that does (the file's answer comes
first). Measured: an agent could subscribe to ``$share/<group>/<prefix>/v1/+/...``,
join the fleet's group and be handed a share of every agent's traffic, which the file
then dropped at delivery. The dynamic security plugin ships in Debian's ``mosquitto``
package; it checks publishes, deliveries *and* subscriptions, with everything denied
unless a role allows it.

Each identity of the CA inventory is a plugin client named after its certificate's
common name (``use_identity_as_username``), with one role: its grants from
``vigie_core.contract.topics``. The plugin does not re-read its file on a reload
(SIGHUP), so a change to a running broker goes through its control topic
(:class:`BrokerControl`, with the ``broker-admin`` identity); the file is what a new
broker starts from.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt

from fleet.errors import BrokerUnavailable, PkiError
from fleet.mqtt import paho_client
from fleet.security.pki import CertificateAuthority, Role
from vigie_core.contract.topics import Grant, Topics
from vigie_core.tls import BrokerCredentials

#: The identity that changes the plugin's clients and roles (``fleet ca init`` makes it).
ADMIN_IDENTITY: Final = "broker-admin"
CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = f"{CONTROL_TOPIC}/response"
#: The plugin's commands travel in messages of at most this many.
COMMANDS_PER_MESSAGE: Final = 100
#: Errors that mean "already as asked" when a change is applied again.
_ALREADY: Final = ("already exists", "not found")

#: Nothing is allowed that a role does not grant: not even receiving (the plugin's own
#: default lets every client receive whatever it manages to subscribe to).
DEFAULT_ACCESS: Final = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}
_SHARED_ROLES: Final = {
    Role.SERVICE: "vigie-service",
    Role.TECHNICIAN: "vigie-technician",
    Role.ADMIN: "vigie-broker-admin",
}


def role_name(name: str, role: Role) -> str:
    """The plugin role of an identity: one per agent (its own branch), one shared by
    each central role."""
    return _SHARED_ROLES.get(role, f"vigie-agent-{name}")


def grants(topics: Topics, name: str, role: Role) -> list[Grant]:
    if role is Role.SERVICE:
        found = topics.service_grants()
        # Its subscriptions are shared ($share/<group>/...): any group, the same topics.
        shared: list[Grant] = [("read", f"$share/+/{topic}") for access, topic in found
                               if access == "read"]  # fmt: skip
        return [*found, *shared]
    if role is Role.TECHNICIAN:
        return topics.technician_grants()
    if role is Role.ADMIN:
        return [("read", f"{CONTROL_TOPIC}/#"), ("write", f"{CONTROL_TOPIC}/#")]
    return topics.agent_grants(name)


def acls(found: Iterable[Grant], *, any_prefix: str | None = None) -> list[dict[str, Any]]:
    """The plugin's ACLs for grants: "write" may publish; "read" may subscribe to the
    filter (or any narrower one) and receive what matches it. ``any_prefix``: that
    first level becomes ``+`` (test brokers, where each test has its own prefix)."""
    entries: list[dict[str, Any]] = []
    for access, topic in found:
        pattern = topic if any_prefix is None else _any_prefix(topic, any_prefix)
        kinds = ("publishClientSend",) if access == "write" else (
            "subscribePattern", "publishClientReceive")  # fmt: skip
        entries.extend({"acltype": kind, "topic": pattern, "allow": True} for kind in kinds)
    return entries


def _any_prefix(topic: str, prefix: str) -> str:
    levels = topic.split("/")
    at = 2 if levels[0] == "$share" else 0
    if len(levels) > at and levels[at] == prefix:
        levels[at] = "+"
    return "/".join(levels)


def _identities(
    authority: CertificateAuthority, extra: Mapping[str, Sequence[Grant]]
) -> dict[str, Role]:
    found = {
        name: role
        for role in (Role.SERVICE, Role.TECHNICIAN, Role.ADMIN, Role.AGENT)
        for name in authority.identities(role)
    }
    return {name: role for name, role in found.items() if name not in extra}


def config_document(
    authority: CertificateAuthority,
    topic_prefix: str,
    *,
    any_prefix: bool = False,
    extra: Mapping[str, Sequence[Grant]] | None = None,
) -> dict[str, Any]:
    """The plugin's whole configuration file for the CA's live identities.

    ``extra`` gives other identities grants of their own (a test broker's publisher
    that plays many agents), never in a deployment.
    """
    extra = extra or {}
    topics = Topics(topic_prefix)
    wildcard = topic_prefix if any_prefix else None
    roles: dict[str, list[dict[str, Any]]] = {}
    clients = []
    for name, role in sorted(_identities(authority, extra).items()):
        rolename = role_name(name, role)
        roles.setdefault(rolename, acls(grants(topics, name, role), any_prefix=wildcard))
        clients.append({"username": name, "roles": [{"rolename": rolename}]})
    for name, rules in sorted(extra.items()):
        roles[f"vigie-extra-{name}"] = acls(rules, any_prefix=wildcard)
        clients.append({"username": name, "roles": [{"rolename": f"vigie-extra-{name}"}]})
    return {
        "defaultACLAccess": DEFAULT_ACCESS,
        "clients": clients,
        "roles": [{"rolename": name, "acls": entries} for name, entries in sorted(roles.items())],
        "groups": [],
    }


def sync_commands(
    authority: CertificateAuthority,
    topic_prefix: str,
    names: Iterable[str],
    *,
    any_prefix: bool = False,
    extra: Mapping[str, Sequence[Grant]] | None = None,
) -> list[dict[str, Any]]:
    """The plugin commands that bring a running broker to the inventory for ``names``:
    a live identity gets its role and client, a revoked one loses its client (which
    disconnects it at once) and its own role. Sending them twice changes nothing."""
    document = config_document(authority, topic_prefix, any_prefix=any_prefix, extra=extra)
    clients = {client["username"]: client for client in document["clients"]}
    roles = {role["rolename"]: role for role in document["roles"]}
    commands: list[dict[str, Any]] = []
    for name in names:
        client = clients.get(name)
        if client is None:
            commands.append({"command": "deleteClient", "username": name})
            commands.append({"command": "deleteRole", "rolename": role_name(name, Role.AGENT)})
            continue
        (held,) = client["roles"]
        commands.append({"command": "createRole", **roles[held["rolename"]]})
        commands.append({"command": "createClient", **client})
    return commands


class BrokerControl:
    """Changes a running broker's dynamic security (``$CONTROL/dynamic-security/v1``),
    as the ``broker-admin`` identity."""

    def __init__(self, host: str, port: int, credentials: BrokerCredentials) -> None:
        self.host, self.port, self.credentials = host, port, credentials

    def apply(self, commands: Sequence[dict[str, Any]], timeout_s: float = 10.0) -> None:
        """Send ``commands`` and wait for every answer; an error other than "already
        so" raises PkiError, an unreachable broker BrokerUnavailable."""
        if not commands:
            return
        responses: list[dict[str, Any]] = []
        answered = threading.Condition()
        subscribed = threading.Event()

        def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
            with answered:
                responses.extend(json.loads(message.payload).get("responses", []))
                answered.notify_all()

        client = paho_client(f"{ADMIN_IDENTITY}-{uuid.uuid4().hex[:8]}", self.credentials)
        client.on_message = on_message
        client.on_subscribe = lambda *_: subscribed.set()
        try:
            client.connect(self.host, self.port)
        except OSError as exc:
            raise BrokerUnavailable(f"broker {self.host}:{self.port}: {exc}") from None
        client.loop_start()
        try:
            client.subscribe(RESPONSE_TOPIC, qos=1)
            if not subscribed.wait(timeout_s):
                raise BrokerUnavailable(f"broker {self.host}:{self.port} did not answer")
            for start in range(0, len(commands), COMMANDS_PER_MESSAGE):
                chunk = list(commands[start : start + COMMANDS_PER_MESSAGE])
                client.publish(CONTROL_TOPIC, json.dumps({"commands": chunk}), qos=1)
            with answered:
                if not answered.wait_for(lambda: len(responses) >= len(commands), timeout_s):
                    raise BrokerUnavailable(
                        f"broker {self.host}:{self.port}: {len(responses)} of {len(commands)} "
                        "security changes answered (is the dynamic security plugin loaded, "
                        f"and is this the {ADMIN_IDENTITY} identity?)"
                    )
        finally:
            client.disconnect()
            client.loop_stop()
        failed = [
            f"{answer.get('command')}: {answer['error']}"
            for answer in responses
            if answer.get("error") and not any(ok in answer["error"] for ok in _ALREADY)
        ]
        if failed:
            raise PkiError(f"the broker refused: {'; '.join(failed)}")
