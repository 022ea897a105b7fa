"""Each serial instrument end to end: the bytes its manual says it sends, written into
a pseudo-terminal, read by `edge-agent run`'s serial driver, published through the
real broker, stored by a real `fleet serve` in InfluxDB.

The samples: the Tanita SC-240 manual's output sample ("Connection with a personal
computer"), a Nonin 8600V/9847 line with its time of day ("Real-Time Data Output"),
the A&D EK-L manual's gram example (9-2 "Data format") and a Nonin DF2 packet built
by the OEM III specification's frame layout. The pty's buffer is flushed when the
agent opens the port (pyserial does), so the sample is written again every second
until it is stored: each write is the same measurement.
"""

from __future__ import annotations

import contextlib
import os
import pty
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edge_agent.instruments.decoders.serial.nonin import encode_nonin_df2_packet
from fleet.storage.influx import InfluxClient
from fleet.storage.schema import SCHEMA
from tests.samples import SC240, SC240_UNITS, SC240_VALUES
from vigie_core.contract.data import READING_FIELDS, ReadingKind

from .conftest import AgentFactory, Processes, wait_until

pytestmark = pytest.mark.integration


def point_fields(kind: ReadingKind) -> set[str]:
    """What a stored reading may carry besides its values: the fleet's schema for the
    kind, less the kind's value fields."""
    return {"time", *SCHEMA[kind.value]} - set(READING_FIELDS[kind])


@dataclass(frozen=True)
class Case:
    profile: str
    kind: ReadingKind
    data: bytes
    values: dict[str, float]
    units: dict[str, str]
    quality: str | None = None
    context: dict[str, str] = field(default_factory=dict)


CASES = {
    "tanita": Case(
        "tanita_body_composition",
        ReadingKind.BODY_COMPOSITION,
        SC240,
        SC240_VALUES,
        SC240_UNITS,
    ),
    "nonin_text": Case(
        "nonin_text",
        ReadingKind.PULSE_OXIMETRY,
        b"12:34:56 SPO2=095 HR=110\r\n",
        {"spo2": 95.0, "pulse_rate": 110.0},
        {"spo2": "%", "pulse_rate": "/min"},
        quality="device_time_partial",
    ),
    "and_scale": Case(
        "and_scale",
        ReadingKind.BODY_WEIGHT,
        b"ST,+001234.5  g\r\n",
        {"weight": 1.2345},
        {"weight": "kg"},
        context={"device_unit": "g"},
    ),
    "nonin_df2": Case(
        "nonin_df2",
        ReadingKind.PULSE_OXIMETRY,
        encode_nonin_df2_packet(97, 72),
        {"spo2": 97.0, "pulse_rate": 72.0},
        {"spo2": "%", "pulse_rate": "/min"},
    ),
}


class Instrument:
    """The instrument's end of a pseudo-terminal pair; the agent opens the other."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)  # no echo, no CR/LF translation: bytes as a port has them
        os.set_blocking(self.master, False)
        self.port = os.ttyname(self.slave)
        self._last = 0.0

    def send_every_second(self, data: bytes) -> None:
        if time.monotonic() - self._last < 1.0:
            return
        self._last = time.monotonic()
        # Nobody reading yet and the buffer full: the next second's write will do.
        with contextlib.suppress(BlockingIOError):
            os.write(self.master, data)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@contextmanager
def instrument() -> Iterator[Instrument]:
    device = Instrument()
    try:
        yield device
    finally:
        device.close()


def _pairs(text: str | None) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(";")) if text else {}


@pytest.mark.parametrize("name", list(CASES))
def test_the_manuals_bytes_reach_influxdb(
    name: str,
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    influx: InfluxClient,
) -> None:
    case = CASES[name]
    agent_id = f"serial-{name.replace('_', '-')}"
    processes.start_fleet(fleet_config)
    with instrument() as device:
        config = agent_config(
            agent_id,
            devices=[
                {
                    "id": "inst1",
                    "kind": case.kind.value,
                    "source": "serial",
                    "profile": case.profile,
                    "address": device.port,
                }
            ],
        )
        agent = processes.start("agent", "-m", "edge_agent", "run", "--config", str(config))

        def stored() -> list[dict[str, Any]]:
            assert agent.poll() is None, processes.log("agent")
            device.send_every_second(case.data)
            series = influx.query(
                f"SELECT * FROM \"{case.kind.value}\" WHERE agent_id = '{agent_id}'"
            )
            return [row for item in series for row in item.rows()]

        rows = wait_until(stored, 40, f"the {name} reading stored")
    for row in rows:  # every write was the same measurement
        assert {key: row[key] for key in case.values} == pytest.approx(case.values)
        assert _pairs(row.get("units")) == case.units
        assert _pairs(row.get("context")) == case.context
        assert (row.get("quality") or None) == case.quality
        assert (row["profile"], row["address"], row["device"]) == (
            case.profile,
            device.port,
            "inst1",
        )
        # Nothing else is stored: no age, gender or body type of the person measured.
        present = {key for key, value in row.items() if value is not None}
        assert present - point_fields(case.kind) == set(case.values)
    events = influx.query(f"SELECT * FROM agent_event WHERE agent_id = '{agent_id}'")
    names = [row.get("name") for item in events for row in item.rows()]
    assert "decode_error" not in names, processes.log("agent")
