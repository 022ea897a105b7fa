"""When the updater may restart into a new release: a closed booth with no consultation
in progress, a parked bus. The download and install never wait; only the restart does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_agent.config import AgentConfig
from edge_agent.instruments.decoders.base import ReadingDraft
from edge_agent.runtime.supervisor import Agent
from edge_agent.updates.updater import restart_blocker
from vigie_core.contract.data import ReadingKind
from vigie_core.signing import generate_key, public_key_pem

# A Monday, 10:00 in Paris (09:00 UTC) and 22:00 in Paris.
MONDAY_MORNING = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
MONDAY_NIGHT = datetime(2026, 11, 30, 21, 0, tzinfo=UTC)
PARKED_AFTER_S = 300.0


def config(tmp_path: Path, kind: str) -> AgentConfig:
    (tmp_path / "release.pub").write_bytes(public_key_pem(generate_key()))
    return AgentConfig.model_validate(
        {
            "schema_version": 1,
            "broker": {"allow_plaintext": True},  # no broker in a unit test
            "agent_id": f"{kind}-1",
            "site": {"id": "mamers", "name": "Mamers"},
            "kind": kind,
            "state_dir": str(tmp_path),
            "opening_hours": {"timezone": "Europe/Paris", "week": {"mon": ["08:30-16:45"]}},
            "consultation_file": str(tmp_path / "consultation"),
            "updates": {
                "root": str(tmp_path / "root"),
                "public_key_file": str(tmp_path / "release.pub"),
                "parked_after_s": PARKED_AFTER_S,
            },
            "devices": [{"id": "gps", "kind": "position"}],
        }
    )


def test_a_booth_restarts_only_when_closed(tmp_path: Path) -> None:
    booth = config(tmp_path, "booth")
    started = MONDAY_MORNING - timedelta(days=1)
    assert restart_blocker(booth, MONDAY_MORNING, None, started) == "the booth is open"
    assert restart_blocker(booth, MONDAY_NIGHT, None, started) is None


def test_a_consultation_in_progress_holds_the_restart_even_at_night(tmp_path: Path) -> None:
    booth = config(tmp_path, "booth")
    started = MONDAY_NIGHT - timedelta(days=1)
    (tmp_path / "consultation").write_text("c0ffee-2026-11-30\n")
    assert restart_blocker(booth, MONDAY_NIGHT, None, started) == "a consultation is in progress"
    (tmp_path / "consultation").unlink()
    assert restart_blocker(booth, MONDAY_NIGHT, None, started) is None


def test_a_bus_restarts_only_once_parked_whatever_the_hour(tmp_path: Path) -> None:
    bus = config(tmp_path, "bus")
    now = MONDAY_MORNING  # its site's opening hours do not hold a bus back
    long_ago = now - timedelta(days=1)
    moved = now - timedelta(seconds=PARKED_AFTER_S - 10)
    assert restart_blocker(bus, now, moved, long_ago) == "the bus is not parked"
    still = now - timedelta(seconds=PARKED_AFTER_S + 10)
    assert restart_blocker(bus, now, still, long_ago) is None
    # Never seen moving: the agent must have watched for the whole delay first.
    just_started = now - timedelta(seconds=30)
    assert restart_blocker(bus, now, None, just_started) == "the bus is not parked"
    assert restart_blocker(bus, now, None, long_ago) is None
    (tmp_path / "consultation").write_text("c0ffee-2026-11-30\n")
    assert restart_blocker(bus, now, still, long_ago) == "a consultation is in progress"


def position(speed_kmh: float) -> ReadingDraft:
    return ReadingDraft(
        kind=ReadingKind.POSITION,
        values={"latitude": 48.33, "longitude": 0.35, "speed": speed_kmh},
        units={"latitude": "deg", "longitude": "deg", "speed": "km/h"},
    )


def test_the_agent_takes_the_last_move_from_its_gps_readings(tmp_path: Path) -> None:
    agent = Agent(config(tmp_path, "bus"))
    gps = agent.instruments[0]
    assert agent.pool.moving_at is None
    agent.pool.submit_reading(gps, position(0.0), MONDAY_MORNING)
    assert agent.pool.moving_at is None  # standing still is not a move
    moving = MONDAY_MORNING + timedelta(minutes=1)
    agent.pool.submit_reading(gps, position(42.0), moving)
    agent.pool.submit_reading(gps, position(0.2), moving + timedelta(minutes=1))  # GPS jitter
    assert agent.pool.moving_at == moving
