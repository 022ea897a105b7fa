"""The agent's packaging and reporting, without a broker: what goes into the outbox."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from edge_agent.config import AgentConfig
from edge_agent.runtime.batching import Packet, packets
from edge_agent.runtime.supervisor import Agent


def make_agent(tmp_path: Path, **overrides: object) -> Agent:
    config: dict[str, object] = {
        "schema_version": 1,
        "broker": {"allow_plaintext": True},  # no broker in a unit test
        "agent_id": "bus-1",
        "site": {"id": "bus", "name": "Bus"},
        "kind": "bus",
        "state_dir": str(tmp_path),
        "devices": [{"id": "bp", "kind": "blood_pressure"}],
    }
    config.update(overrides)
    return Agent(AgentConfig.model_validate(config))


def due_packets(agent: Agent, limit: int) -> list[Packet]:
    """What the drain would send now, once everything submitted is on disk."""
    agent.recorder.flush()
    return packets(
        agent.outbox.due(limit),
        agent_id=agent.config.agent_id,
        batch_topic=agent.topics.batch(agent.config.agent_id),
        delivery=agent.config.delivery,
        now=time.time(),
    )


def test_an_outbox_overflow_is_reported_as_an_event_and_in_health(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, outbox={"max_bytes": 1024 * 1024, "synchronous": "normal"})
    for _ in range(8000):  # ~350 bytes each: about three times the budget
        agent.pool.read_simulated(agent.instruments[0])
    agent.recorder.flush()
    assert agent.outbox.dropped > 0
    payloads = [json.loads(entry.payload) for entry in agent.outbox.due(10_000)]
    overflow = [p for p in payloads if p.get("name") == "outbox_overflow"]
    assert len(overflow) == 1  # at most one a minute
    assert overflow[0]["severity"] == "error"
    # The event tells what was dropped when it was recorded; health keeps the total.
    reported = int(overflow[0]["detail"].split()[1])
    assert 0 < reported <= agent.outbox.dropped
    health = asyncio.run(agent.health.report())
    agent.recorder.flush()
    assert health.dropped_messages == agent.outbox.dropped
    assert health.backlog_messages == len(agent.outbox) - 1  # counted before its own row


def test_a_backlog_goes_out_in_bounded_historical_batches_a_live_reading_alone(
    tmp_path: Path,
) -> None:
    agent = make_agent(tmp_path, delivery={"batch_max_messages": 40})
    agent.pool.read_simulated(agent.instruments[0])
    (live,) = due_packets(agent, 10)
    assert live.topic == "vigie/v1/bus-1/reading/blood_pressure"
    assert json.loads(live.payload)["seq"] == 1
    for _ in range(99):
        agent.pool.read_simulated(agent.instruments[0])
    batches = due_packets(agent, 1000)
    assert [len(packet.seqs) for packet in batches] == [40, 40, 20]
    assert [seq for packet in batches for seq in packet.seqs] == list(range(1, 101))
    first = json.loads(batches[0].payload)
    assert first["agent_id"] == "bus-1"
    assert first["historical"] is False  # taken moments ago, never sent: not late
    agent.outbox.mark_sent([1], confirm_timeout_s=0)
    resent = due_packets(agent, 1000)
    assert json.loads(resent[0].payload)["historical"] is True  # a resend is historical
    assert resent[0].resent == 1
