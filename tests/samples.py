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


#: The Tanita SC-240 manual's output sample ("Connection with a personal computer",
#: output sample: Standard, Male, 30 years, 170 cm), without the spaces the manual
#: typesets after each comma (the checksum FD is that of the bytes without them),
#: then CR LF; and what it holds, as the manual's table reads it.
SC240 = (
    b'{0,16,~0,1,~1,1,~2,1,MO,"SC-240",SN,"00000002",Bt,0,GE,1,AG,30,Hm,170,Pt,0.0,'
    b"Wk,82.7,FW,18.6,fW,15.4,MW,67.3,mW,64.0,sW,19,bW,3.3,wW,48.0,ww,58.0,MI,28.6,"
    b"Sw,63.6,OV,30.0,IF,6,rb,8255,rB,1973,rJ,12,rA,28,ZF,369.4,CS,FD\r\n"
)
SC240_VALUES = {
    "weight": 82.7,
    "height": 170.0,
    "bmi": 28.6,
    "body_fat_percentage": 18.6,
    "fat_mass": 15.4,
    "fat_free_mass": 67.3,
    "total_body_water": 48.0,
    "basal_metabolic_rate": 8255.0,  # rb: kJ (rB, 1973, is the same in kcal)
    "impedance": 369.4,  # ZF: 50 kHz
}
SC240_UNITS = {
    "weight": "kg",
    "height": "cm",
    "bmi": "kg/m2",
    "body_fat_percentage": "%",
    "fat_mass": "kg",
    "fat_free_mass": "kg",
    "total_body_water": "kg",
    "basal_metabolic_rate": "kJ",
    "impedance": "Ohm",
}
