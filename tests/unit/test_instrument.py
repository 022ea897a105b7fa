"""The agent's side of an instrument: frames in, readings and health state out."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge_agent.config import AgentConfig
from edge_agent.instruments.instrument import calibration_due_days
from edge_agent.runtime.supervisor import Agent
from vigie_core.contract.data import DeviceStatusCode, Reading, ReadingKind, Severity

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
GGA = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"


def _agent(tmp_path: Path, **device: object) -> Agent:
    config = AgentConfig.model_validate(
        {
            "schema_version": 1,
            "broker": {"allow_plaintext": True},  # no broker in a unit test
            "agent_id": "bus-1",
            "site": {"id": "bus-1", "name": "Bus"},
            "kind": "bus",
            "state_dir": str(tmp_path),
            "devices": [
                {
                    "id": "gps",
                    "kind": "position",
                    "source": "serial",
                    "profile": "nmea_gps",
                    "address": "/dev/ttyUSB7",
                    **device,
                }
            ],
        }
    )
    return Agent(config, clock=lambda: NOW)


def _queued(agent: Agent) -> list[Reading]:
    agent.recorder.flush()
    entries = agent.outbox.due(1000)
    return [Reading.model_validate_json(e.payload) for e in entries if "/reading/" in e.topic]


def test_a_frame_becomes_a_reading_with_source_and_times(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    (gps,) = agent.instruments
    assert gps.status is DeviceStatusCode.DISCONNECTED  # until the driver says otherwise
    gps.on_status(DeviceStatusCode.OK, "/dev/ttyUSB7 open")
    gps.on_frame("nmea", GGA, NOW)
    (reading,) = _queued(agent)
    assert reading.kind is ReadingKind.POSITION
    assert reading.device == "gps"
    assert reading.received_at == NOW
    assert reading.source is not None
    assert (reading.source.profile, reading.source.address) == ("nmea_gps", "/dev/ttyUSB7")
    assert reading.values["latitude"] == pytest.approx(48.1173)
    status = gps.device_status(NOW)
    assert (status.status, status.last_reading_at) == (DeviceStatusCode.OK, NOW)
    agent.recorder.close()


def test_bad_frames_are_counted_and_reported_once_not_flooded(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    (gps,) = agent.instruments
    events: list[tuple[str, Severity, str]] = []
    gps.record_event = lambda name, severity, detail: events.append((name, severity, detail))
    for _ in range(50):
        gps.on_frame("nmea", b"$GPGGA,garbage*00", NOW)
        gps.on_garbage(10, "line too long")
    assert gps.decode_errors == 50
    assert gps.garbage_bytes == 500
    assert [name for name, _, _ in events] == ["decode_error", "instrument_noise"]
    assert _queued(agent) == []
    # A good frame after all that still goes through.
    gps.on_frame("nmea", GGA, NOW)
    assert len(_queued(agent)) == 1
    agent.recorder.close()


def test_health_carries_battery_calibration_and_detail(tmp_path: Path) -> None:
    agent = _agent(tmp_path, calibration_due="2026-12-05")
    (gps,) = agent.instruments
    gps.on_status(DeviceStatusCode.DISCONNECTED, "/dev/ttyUSB7: no such file")
    gps.battery_percent = 80
    report = asyncio.run(agent.health.report())
    (status,) = report.devices
    assert status.calibration_due_days == 10
    assert status.battery_percent == 80
    assert status.status is DeviceStatusCode.DISCONNECTED
    assert "no such file" in status.detail
    agent.recorder.close()


def test_the_battery_threshold_raises_one_event_per_fall(tmp_path: Path) -> None:
    agent = _agent(tmp_path, battery_low_percent=25)
    (gps,) = agent.instruments
    events: list[tuple[str, Severity, str]] = []
    gps.record_event = lambda name, severity, detail: events.append((name, severity, detail))
    for level in (60, 30, 26):
        gps.on_frame("2a19", bytes([level]), NOW)
    assert events == []
    # A pushed threshold applies from the next level the instrument sends.
    gps.config = gps.config.model_copy(update={"battery_low_percent": 10})
    for level in (25, 15, 10, 9, 5):
        gps.on_frame("2a19", bytes([level]), NOW)
    assert gps.battery_percent == 5
    assert events == [("battery_low", Severity.WARNING, "gps: battery at 10 % (warning at 10 %)")]
    agent.recorder.close()


def test_the_calibration_date_warns_once_when_near_and_once_overdue(tmp_path: Path) -> None:
    agent = _agent(tmp_path, calibration_due="2026-12-15", calibration_warning_days=14)
    (gps,) = agent.instruments
    events: list[tuple[str, Severity, str]] = []
    gps.record_event = lambda name, severity, detail: events.append((name, severity, detail))
    day = timedelta(days=1)
    for moment in (NOW, NOW + 5 * day, NOW + 6 * day, NOW + 7 * day, NOW + 21 * day):
        gps.check_calibration(moment)  # 20, 15, 14, 13 days ahead, then 1 day late
    assert events == [
        ("calibration_due", Severity.WARNING, "gps: calibration due on 2026-12-15, in 14 day(s)"),
        ("calibration_due", Severity.ERROR, "gps: calibration overdue since 2026-12-15"),
    ]
    # Calibrated again: a new date, a new warning when it comes near.
    gps.config = gps.config.model_copy(update={"calibration_due": date(2027, 1, 1)})
    gps.check_calibration(NOW + 21 * day)  # 2026-12-16: 16 days ahead, not yet
    gps.check_calibration(NOW + 24 * day)
    assert events[2:] == [
        ("calibration_due", Severity.WARNING, "gps: calibration due on 2027-01-01, in 13 day(s)")
    ]
    agent.recorder.close()


def test_calibration_counts_in_the_sites_days() -> None:
    # 23:30 UTC on the 24th is already the 25th in Paris.
    late = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)
    assert calibration_due_days(date(2026, 11, 25), late, PARIS) == 0
    assert calibration_due_days(date(2026, 11, 20), late, PARIS) == -5
    assert calibration_due_days(None, late, PARIS) is None


def test_an_instrument_that_crashes_is_reported_and_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edge_agent.runtime.instruments as pool_module

    monkeypatch.setattr(pool_module, "INSTRUMENT_RESTART_S", 0.01)
    agent = _agent(tmp_path, source="simulated", interval_s=0.01)
    (gps,) = agent.instruments
    calls: list[int] = []
    third_call = asyncio.Event()

    def flaky(instrument: object) -> None:
        calls.append(1)
        if len(calls) == 3:
            third_call.set()
        if len(calls) == 1:
            raise RuntimeError("simulated bug")

    agent.pool.read_simulated = flaky  # type: ignore[method-assign]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.pool.read_until_stopped(gps, stop))
        await asyncio.wait_for(third_call.wait(), 5)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    agent.recorder.flush()
    events = [
        json.loads(entry.payload)
        for entry in agent.outbox.due(1000)
        if entry.topic.endswith("/event")
    ]
    assert [(e["name"], "simulated bug" in e["detail"]) for e in events] == [
        ("instrument_error", True)
    ]
    assert gps.status is DeviceStatusCode.OK  # it went on after the crash
    agent.recorder.close()
