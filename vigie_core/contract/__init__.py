"""The wire contract between agents and the fleet: MQTT topics and payload schemas.

Nothing else builds or parses a topic or a payload; ``docs/protocol.md`` is the copy
for humans. One module per concern:

- ``identifiers``: agent, site and device ids, the topic prefix, opaque ids, digests;
- ``model``: what every payload model shares (frozen, no unknown field, UTC times);
- ``topics``: the topic tree, and what the broker lets each identity do there;
- ``data``: readings, health, events, batches and the fleet's "stored" confirmation;
- ``presence``: births, Last Wills and opening hours;
- ``settings``: the configuration the fleet may push, and what an agent runs;
- ``releases``: desired and reported releases, and the signed release manifest;
- ``rollouts``: the retained documents a staged rollout is made of;
- ``codec``: to and from bytes, with every refusal typed.

Topic tree (``<prefix>`` defaults to ``vigie``; the agent id sits at level 3 so the
broker's ACL confines each agent to its own branch)::

    <prefix>/v1/<agent_id>/state             retained, QoS 1  birth / Last Will
    <prefix>/v1/<agent_id>/reading/<kind>    QoS 1            one instrument reading
    <prefix>/v1/<agent_id>/health            QoS 1            the agent's own health
    <prefix>/v1/<agent_id>/event             QoS 1            notable things that happened
    <prefix>/v1/<agent_id>/batch             QoS 1            several of the three above
    <prefix>/v1/<agent_id>/ack               QoS 1            fleet -> agent: "stored"
    <prefix>/v1/<agent_id>/desired/...       retained, QoS 1  fleet -> agent: desired state
    <prefix>/v1/<agent_id>/reported/...      retained, QoS 1  agent -> fleet: what it runs
    <prefix>/rollouts/<id>/{spec,control,progress}   retained: staged rollouts (no agent)

Every data payload (reading, health, event) carries the schema version, the agent
id, a per-agent monotonic sequence number shared by the three channels, and the
measurement time in UTC. State messages are ordered by the agent's ``session``
number instead: a Last Will from an older session never overrides a newer birth.

Delivery is confirmed end to end: the fleet publishes a ``StoredAck`` naming the
sequence numbers it has stored, and the agent keeps every message until then. A
broker's PUBACK only means "received", and a broker that crashes or restarts can
still lose what it had received (see docs/protocol.md).
"""
