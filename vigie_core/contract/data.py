"""Data payloads: readings, health reports, events, the batches a backlog drains in,
and the fleet's confirmation that it stored them."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator
from pydantic_core import PydanticCustomError

from vigie_core.contract.identifiers import ConsultationId, Identifier
from vigie_core.contract.model import (
    SCHEMA_VERSION,
    ContractModel,
    Count,
    FlagName,
    SchemaVersion,
    ShortText,
    UtcDatetime,
)

#: At most this many messages travel in one batch.
MAX_BATCH_MESSAGES: Final = 500
#: At most this many sequence ranges in one StoredAck.
MAX_ACK_RANGES: Final = 1000
#: No valid measurement predates this protocol: an earlier time is an unset clock.
EARLIEST_VALID_TIME: Final = datetime(2026, 1, 1, tzinfo=UTC)


class ReadingKind(enum.StrEnum):
    """What a reading measures; also the InfluxDB measurement it is stored in."""

    BLOOD_PRESSURE = "blood_pressure"
    BODY_TEMPERATURE = "body_temperature"
    BODY_WEIGHT = "body_weight"
    BODY_COMPOSITION = "body_composition"
    PULSE_OXIMETRY = "pulse_oximetry"
    BLOOD_GLUCOSE = "blood_glucose"
    POSITION = "position"


_PRESSURE: Final = frozenset({"mm[Hg]", "kPa"})
_MASS: Final = frozenset({"kg", "[lb_av]"})
_LENGTH: Final = frozenset({"m", "cm", "[in_i]"})
_ENERGY: Final = frozenset({"kJ", "kcal"})

#: The fields each reading kind may carry, with the units a device may report them in.
#: Units follow UCUM spelling (``Cel``, ``[lb_av]``, ``/min``) so that no unit is implied;
#: values stay in the unit the device sent (a glucose meter's kg/L is not turned into
#: mg/dL), so that what is stored can be checked against the device's own display.
READING_FIELDS: Final[dict[ReadingKind, dict[str, frozenset[str]]]] = {
    ReadingKind.BLOOD_PRESSURE: {
        "systolic": _PRESSURE,
        "diastolic": _PRESSURE,
        "mean_arterial_pressure": _PRESSURE,
        "pulse_rate": frozenset({"/min"}),
    },
    ReadingKind.BODY_TEMPERATURE: {"temperature": frozenset({"Cel", "[degF]"})},
    ReadingKind.BODY_WEIGHT: {
        "weight": _MASS,
        "bmi": frozenset({"kg/m2"}),
        "height": _LENGTH,
    },
    ReadingKind.BODY_COMPOSITION: {
        "weight": _MASS,
        "height": _LENGTH,
        "bmi": frozenset({"kg/m2"}),
        "body_fat_percentage": frozenset({"%"}),
        "fat_mass": _MASS,
        "fat_free_mass": _MASS,
        "total_body_water": _MASS,
        "basal_metabolic_rate": _ENERGY,
        "impedance": frozenset({"Ohm"}),
    },
    ReadingKind.PULSE_OXIMETRY: {
        "spo2": frozenset({"%"}),
        "pulse_rate": frozenset({"/min"}),
        "perfusion_index": frozenset({"%"}),
    },
    ReadingKind.BLOOD_GLUCOSE: {
        "glucose_concentration": frozenset({"kg/L", "mol/L", "mg/dL", "mmol/L"}),
    },
    ReadingKind.POSITION: {
        "latitude": frozenset({"deg"}),
        "longitude": frozenset({"deg"}),
        "altitude": frozenset({"m"}),
        "speed": frozenset({"km/h", "[kn_i]"}),
        "course": frozenset({"deg"}),
        "satellites": frozenset({"1"}),
        "hdop": frozenset({"1"}),
    },
}


class DeviceStatusCode(enum.StrEnum):
    """Connection state of one instrument, as the agent sees it."""

    OK = "ok"
    DISCONNECTED = "disconnected"
    ERROR = "error"


class Severity(enum.StrEnum):
    """How much an event matters to an operator."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class _DataMessage(ContractModel):
    schema_version: SchemaVersion = SCHEMA_VERSION
    agent_id: Identifier
    seq: Count
    measured_at: UtcDatetime


class DeviceSource(ContractModel):
    """Which physical instrument a reading came from (never who was measured)."""

    #: The device profile's name (``device_profiles/<profile>.yaml``).
    profile: Identifier
    #: BLE address or serial port path.
    address: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    serial_number: Annotated[str, StringConstraints(max_length=100)] | None = None


class Reading(_DataMessage):
    """One reading from one instrument.

    A value the device marks invalid is ``None`` in ``values`` with its reason in
    ``invalid``; it is never replaced by a plausible number.

    ``measured_at`` is the device's own time when its clock is valid, otherwise the
    agent's receive time; ``received_at`` is always the agent's receive time, and
    ``device_time`` the device's clock (in UTC) whenever it sent one, valid or not
    (``quality`` then says ``device_clock_invalid``). Simulated readings have neither.
    """

    type: Literal["reading"] = "reading"
    kind: ReadingKind
    device: Identifier
    values: dict[str, float | None]
    units: dict[str, str] = Field(default_factory=dict)
    invalid: dict[str, ShortText] = Field(default_factory=dict)
    received_at: UtcDatetime | None = None
    device_time: UtcDatetime | None = None
    source: DeviceSource | None = None
    #: What the device or the agent flagged: ``motion``, ``unstable``, ``no_fix``...
    quality: list[FlagName] = Field(default_factory=list, max_length=32)
    #: Descriptive strings that qualify the reading: ``temperature_type: tympanum``.
    context: dict[FlagName, ShortText] = Field(default_factory=dict, max_length=16)
    #: The consultation in progress when the reading was taken, as the booth's
    #: software named it (opaque; see docs/security.md). None outside consultations.
    consultation_id: ConsultationId | None = None

    @model_validator(mode="after")
    def _fields_match_kind(self) -> Reading:
        allowed = READING_FIELDS[self.kind]
        if not self.values:
            raise ValueError("a reading needs at least one value")
        for name, value in self.values.items():
            if name not in allowed:
                raise ValueError(f"{name!r} is not a field of {self.kind.value}")
            if value is None and name not in self.invalid:
                raise ValueError(f"{name!r} is null without a reason in 'invalid'")
        for name, unit in self.units.items():
            if name not in self.values:
                raise ValueError(f"unit given for absent field {name!r}")
            if unit not in allowed[name]:
                raise ValueError(f"{unit!r} is not a unit of {name!r}")
        for name in self.invalid:
            if self.values.get(name, 0.0) is not None:
                raise ValueError(f"'invalid' names {name!r}, which is not null")
        return self


class DeviceStatus(ContractModel):
    """One instrument's state inside a health report."""

    device: Identifier
    kind: ReadingKind
    status: DeviceStatusCode
    last_reading_at: UtcDatetime | None = None
    #: The instrument's own battery level, when it reports one (BLE Battery Service).
    battery_percent: int | None = Field(default=None, ge=0, le=100)
    #: Days until the calibration date in the agent config; negative once overdue.
    calibration_due_days: int | None = Field(default=None, ge=-100_000, le=100_000)
    #: Why the instrument is disconnected or in error, in one line.
    detail: ShortText = ""


class HealthReport(_DataMessage):
    """The agent's own health, including its backlog: what waits in its outbox."""

    type: Literal["health"] = "health"
    agent_version: Annotated[str, StringConstraints(max_length=40)]
    uptime_s: float = Field(ge=0)
    cpu_percent: float = Field(ge=0, le=100 * 256)  # psutil reports >100 on many cores
    memory_percent: float = Field(ge=0, le=100)
    disk_percent: float = Field(ge=0, le=100)
    devices: list[DeviceStatus] = Field(max_length=64)
    #: Messages waiting for the fleet's confirmation, and the age of the oldest.
    backlog_messages: Count = 0
    backlog_oldest_s: float = Field(default=0.0, ge=0)
    #: Messages sent again (unconfirmed in time) since the agent started, and
    #: messages dropped because the outbox had no room, since its outbox was created.
    resent_messages: Count = 0
    dropped_messages: Count = 0
    #: Messages the broker refused to take (not authorised by its ACL).
    refused_messages: Count = 0
    #: The outbox's file system: bytes free, and whether that is under the agent's
    #: warning level (``outbox.warn_free_bytes``): dropping comes later, at
    #: ``outbox.min_free_bytes``. None from agents that do not say.
    disk_free_bytes: Count | None = None
    disk_low: bool = False
    #: What the outbox's files take on disk, and the messages it keeps in memory
    #: because the disk had no room for them.
    outbox_bytes: Count = 0
    held_messages: Count = 0


class Event(_DataMessage):
    """Something an operator may want to know happened on the agent."""

    type: Literal["event"] = "event"
    name: Identifier
    severity: Severity
    detail: Annotated[str, StringConstraints(max_length=1000)] = ""


DataMessage = Reading | HealthReport | Event


class Batch(ContractModel):
    """Several data messages of one agent in one MQTT message (a backlog drains so).

    ``historical`` marks messages sent from a backlog (late, or sent again), so that
    dashboards and alerts can tell them from live data.
    """

    schema_version: SchemaVersion = SCHEMA_VERSION
    agent_id: Identifier
    historical: bool = False
    messages: list[Annotated[DataMessage, Field(discriminator="type")]] = Field(
        min_length=1, max_length=MAX_BATCH_MESSAGES
    )

    @model_validator(mode="after")
    def _one_agent(self) -> Batch:
        if any(message.agent_id != self.agent_id for message in self.messages):
            # Its own error type: the codec names it agent_mismatch, not invalid_payload.
            raise PydanticCustomError(
                "agent_mismatch", "every message of a batch must come from the batch's agent"
            )
        return self


class StoredAck(ContractModel):
    """From the fleet to one agent: these sequence numbers are stored; forget them.

    ``ranges`` are inclusive ``[first, last]`` pairs.
    """

    schema_version: SchemaVersion = SCHEMA_VERSION
    agent_id: Identifier
    ranges: list[tuple[Count, Count]] = Field(min_length=1, max_length=MAX_ACK_RANGES)

    @field_validator("ranges")
    @classmethod
    def _ordered(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if any(first < 0 or last < first for first, last in value):
            raise ValueError("each range must be [first, last] with 0 <= first <= last")
        return value

    def seqs(self) -> list[int]:
        return [seq for first, last in self.ranges for seq in range(first, last + 1)]


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges covering ``seqs``: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges
