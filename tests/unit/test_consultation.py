"""The consultation id: opaque, from the booth's software, never personal data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.consultation import current_consultation
from fleet.storage.points import reading_points
from vigie_core.clock import utc_now
from vigie_core.contract.data import Reading, ReadingKind

from .test_agent import make_agent

OPAQUE = "3f2b9c1e-7a4d-4e8b-9c0a-1d2e3f4a5b6c"


@pytest.mark.parametrize(
    ("content", "in_progress", "consultation_id"),
    [
        (None, False, None),  # no file: no consultation
        (f"{OPAQUE}\n", True, OPAQUE),
        ("", True, None),  # in progress, no id given
        ("c-20261125-0042", True, "c-20261125-0042"),
        ("123456", True, None),  # too short to be an opaque token
        ("1850775123456", True, None),  # digits only: could be a social-security number
        ("0612345678", True, None),  # a phone number
        ("jean.dupont@example.org", True, None),
        ("Jean Dupont", True, None),
        ("x" * 300, True, None),
    ],
)
def test_the_file_says_whether_a_consultation_is_in_progress_and_its_id(
    tmp_path: Path, content: str | None, in_progress: bool, consultation_id: str | None
) -> None:
    path = tmp_path / "consultation"
    if content is not None:
        path.write_text(content)
    found = current_consultation(path)
    assert found.in_progress is in_progress
    assert found.consultation_id == consultation_id
    if content and consultation_id is None:
        assert found.refused
        assert content.strip()[:20] not in found.refused  # the reason never echoes it


def test_the_contract_refuses_a_personal_looking_id() -> None:
    base = {
        "agent_id": "booth-1",
        "seq": 1,
        "measured_at": utc_now(),
        "kind": ReadingKind.BODY_WEIGHT,
        "device": "scale",
        "values": {"weight": 70.0},
    }
    assert Reading.model_validate({**base, "consultation_id": OPAQUE}).consultation_id == OPAQUE
    with pytest.raises(ValidationError, match="personal number"):
        Reading.model_validate({**base, "consultation_id": "185077512345678"})


def test_readings_during_a_consultation_carry_its_id_and_it_reaches_influxdb_as_a_field(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "consultation"
    agent = make_agent(tmp_path, consultation_file=str(marker))
    agent.pool.read_simulated(agent.instruments[0])
    marker.write_text(OPAQUE)
    agent.consultation.refresh()  # what the agent's watch does once a second
    agent.pool.read_simulated(agent.instruments[0])
    marker.unlink()
    agent.consultation.refresh()
    agent.pool.read_simulated(agent.instruments[0])
    agent.recorder.flush()
    readings = [
        Reading.model_validate_json(entry.payload)
        for entry in agent.outbox.due(100)
        if "/reading/" in entry.topic
    ]
    assert [r.consultation_id for r in readings] == [None, OPAQUE, None]
    (point,) = reading_points(readings[1], 0)
    assert point.fields["consultation_id"] == OPAQUE
    assert "consultation_id" not in point.tags  # a field: no series per consultation


def test_a_refused_id_is_reported_once_and_never_sent(tmp_path: Path) -> None:
    marker = tmp_path / "consultation"
    marker.write_text("1850775123456")
    agent = make_agent(tmp_path, consultation_file=str(marker))
    for _ in range(3):
        agent.pool.read_simulated(agent.instruments[0])
    agent.recorder.flush()
    payloads = [entry.payload for entry in agent.outbox.due(100)]
    assert not any(b"1850775123456" in payload for payload in payloads)
    events = [json.loads(p) for p in payloads if b'"type":"event"' in p.replace(b" ", b"")]
    assert [e["name"] for e in events] == ["consultation_id_refused"]
    readings = [json.loads(p) for p in payloads if b'"type":"reading"' in p.replace(b" ", b"")]
    assert len(readings) == 3
    assert all(r.get("consultation_id") is None for r in readings)
