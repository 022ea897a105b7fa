"""Sample messages of every kind the contract has, for contract tests."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from edge_agent.instruments.simulation.instruments import instrument_for
from vigie_core.contract.codec import Message
from vigie_core.contract.data import (
    DeviceStatus,
    DeviceStatusCode,
    Event,
    HealthReport,
    Reading,
    ReadingKind,
    Severity,
)
from vigie_core.contract.identifiers import AgentKind
from vigie_core.contract.presence import AgentState, Birth, DeviceInfo, OpeningHours

AT = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def every_kind_of_message(at: datetime = AT) -> list[Message]:
    """One message of every kind the contract has, measured at ``at``."""
    rng = random.Random(3)
    readings: list[Message] = []
    for kind in ReadingKind:
        sample = instrument_for(kind).sample(rng, 0.0)
        readings.append(
            Reading(
                agent_id="a",
                seq=1,
                measured_at=at,
                kind=kind,
                device="d",
                values=sample.values,
                units=sample.units,
                invalid=sample.invalid,
            )
        )
    readings.append(
        Reading(
            agent_id="a",
            seq=1,
            measured_at=at,
            kind=ReadingKind.PULSE_OXIMETRY,
            device="d",
            values={"spo2": None},
            invalid={"spo2": "no_finger"},
        )
    )
    return [
        *readings,
        HealthReport(
            agent_id="a",
            seq=2,
            measured_at=at,
            agent_version="1",
            uptime_s=1,
            cpu_percent=1,
            memory_percent=1,
            disk_percent=1,
            devices=[
                DeviceStatus(
                    device="d",
                    kind=ReadingKind.BODY_WEIGHT,
                    status=DeviceStatusCode.OK,
                    last_reading_at=at,
                )
            ],
        ),
        Event(agent_id="a", seq=3, measured_at=at, name="x", severity=Severity.INFO),
        AgentState(
            agent_id="a",
            online=True,
            session=1,
            birth=Birth(
                agent_version="1",
                site_id="s",
                site_name="S",
                kind=AgentKind.BUS,
                opening_hours=OpeningHours(),
                devices=[DeviceInfo(id="d", kind=ReadingKind.POSITION)],
            ),
        ),
    ]
