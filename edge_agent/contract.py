"""The wire contract between agents and the fleet: MQTT topics and payload schemas.

This module is the only place that builds or parses topics and payloads. Both the
agent and the fleet import it; `docs/protocol.md` documents it for humans.

Topic tree (``<prefix>`` defaults to ``vigie``; the agent id sits at level 3 so the
broker's ACL (:meth:`Topics.agent_grants`) confines each agent to its own branch)::

    <prefix>/v1/<agent_id>/state             retained, QoS 1  birth / Last Will
    <prefix>/v1/<agent_id>/reading/<kind>    QoS 1            one instrument reading
    <prefix>/v1/<agent_id>/health            QoS 1            the agent's own health
    <prefix>/v1/<agent_id>/event             QoS 1            notable things that happened
    <prefix>/v1/<agent_id>/batch             QoS 1            several of the three above
    <prefix>/v1/<agent_id>/ack               QoS 1            fleet -> agent: "stored"
    <prefix>/v1/<agent_id>/desired/...       retained, QoS 1  fleet -> agent: desired state

Every data payload (reading, health, event) carries the schema version, the agent
id, a per-agent monotonic sequence number shared by the three channels, and the
measurement time in UTC. State messages are ordered by the agent's ``session``
number instead: a Last Will from an older session never overrides a newer birth.

Delivery is confirmed end to end: the fleet publishes a :class:`StoredAck` naming the
sequence numbers it has stored, and the agent keeps every message until then. A
broker's PUBACK only means "received", and a broker that crashes or restarts can
still lose what it had received (see docs/protocol.md).
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Final, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

SCHEMA_VERSION: Final = 1
PROTOCOL_LEVEL: Final = "v1"
DEFAULT_PREFIX: Final = "vigie"
#: The fleet refuses larger payloads before parsing them; agents never send them.
MAX_PAYLOAD_BYTES: Final = 64 * 1024
#: At most this many messages travel in one batch.
MAX_BATCH_MESSAGES: Final = 500
#: At most this many sequence ranges in one StoredAck.
MAX_ACK_RANGES: Final = 1000

#: No valid measurement predates this protocol: an earlier time is an unset clock.
EARLIEST_VALID_TIME: Final = datetime(2026, 1, 1, tzinfo=UTC)

QOS_DATA: Final = 1
QOS_STATE: Final = 1

# Identifiers end up in topic levels and InfluxDB tags: a conservative alphabet keeps
# MQTT wildcards (+ #), level separators (/) and control characters out by construction.
_IDENT_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Identifier = Annotated[str, StringConstraints(pattern=_IDENT_PATTERN)]
IDENTIFIER_RE: Final = re.compile(_IDENT_PATTERN)
_IDENT_RE: Final = IDENTIFIER_RE
_PREFIX_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class AgentKind(enum.StrEnum):
    """Where the agent runs."""

    BOOTH = "booth"
    BUS = "bus"


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


class Channel(enum.StrEnum):
    """The fourth topic level."""

    STATE = "state"
    READING = "reading"
    HEALTH = "health"
    EVENT = "event"
    BATCH = "batch"
    #: From the fleet to the agent; the fleet does not subscribe to it.
    ACK = "ack"
    #: Desired state, fleet -> agent (retained): ``desired/config``.
    DESIRED = "desired"
    #: What the agent runs, agent -> fleet (retained): ``reported/config``.
    REPORTED = "reported"


class RejectReason(enum.StrEnum):
    """Why the fleet refused a message; each reason is counted and dead-lettered."""

    OVERSIZED = "oversized"
    BAD_TOPIC = "bad_topic"
    NOT_JSON = "not_json"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    INVALID_PAYLOAD = "invalid_payload"
    AGENT_MISMATCH = "agent_mismatch"


class ContractError(ValueError):
    """A topic or payload that does not follow the contract. Permanent: never retry it."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- opening hours --------------------------------------------------------------------

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: Final[tuple[Weekday, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE_RE: Final = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")


class OpeningHours(_Model):
    """A site's weekly opening hours in its own time zone.

    ``week`` maps a weekday to ranges such as ``"08:30-16:45"``; a day that is absent
    is closed. An empty week means "always open" is *not* implied: a site with no
    hours is always closed, so an offline agent there shows as ``closed``.
    """

    timezone: str = "Europe/Paris"
    week: dict[Weekday, list[str]] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("week")
    @classmethod
    def _valid_ranges(cls, value: dict[Weekday, list[str]]) -> dict[Weekday, list[str]]:
        for day, ranges in value.items():
            for text in ranges:
                match = _RANGE_RE.match(text)
                if match is None:
                    raise ValueError(f"{day}: {text!r} is not HH:MM-HH:MM")
                start = int(match[1]) * 60 + int(match[2])
                end = int(match[3]) * 60 + int(match[4])
                if not start < end <= 24 * 60:
                    raise ValueError(f"{day}: {text!r} ends before it starts")
        return value

    @classmethod
    def always(cls, timezone: str = "Europe/Paris") -> OpeningHours:
        """Open around the clock (hospitals, test fleets)."""
        return cls(timezone=timezone, week={day: ["00:00-24:00"] for day in WEEKDAYS})

    def is_open(self, at: datetime) -> bool:
        """Whether the site is open at the aware instant ``at``."""
        local = at.astimezone(ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        for text in self.week.get(WEEKDAYS[local.weekday()], []):
            start_text, end_text = text.split("-")
            if _minutes(start_text) <= minute < _minutes(end_text):
                return True
        return False


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


# --- payloads -------------------------------------------------------------------------


class DeviceInfo(_Model):
    """One instrument the agent is configured to read."""

    id: Identifier
    kind: ReadingKind
    model: Annotated[str, StringConstraints(max_length=100)] = "simulated"


class Birth(_Model):
    """What an agent says about itself when it connects."""

    agent_version: Annotated[str, StringConstraints(max_length=40)]
    site_id: Identifier
    site_name: Annotated[str, StringConstraints(max_length=200)]
    kind: AgentKind
    opening_hours: OpeningHours
    devices: list[DeviceInfo] = Field(max_length=64)
    #: Free labels the fleet selects agents by (``fleet config push --target tag:...``).
    tags: list[Identifier] = Field(default_factory=list, max_length=16)


class AgentState(_Model):
    """Retained presence: a birth (``online``) or the Last Will (``online`` false).

    ``session`` increases at every connection of the agent, so a late Last Will from
    an earlier connection can be recognised and ignored.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    agent_id: Identifier
    online: bool
    session: int = Field(ge=0)
    since: UtcDatetime | None = None
    birth: Birth | None = None

    @model_validator(mode="after")
    def _birth_when_online(self) -> AgentState:
        if self.online and self.birth is None:
            raise ValueError("an online state must carry the birth details")
        return self


class _DataMessage(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    agent_id: Identifier
    seq: int = Field(ge=0)
    measured_at: UtcDatetime


ShortText = Annotated[str, StringConstraints(max_length=200)]
#: A quality flag or context key: ``motion``, ``device_clock_invalid``, ``temperature_type``.
FlagName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


#: The fifth level under ``desired/`` and ``reported/``.
STATE_ITEMS: Final = ("config", "release")
_CONSULTATION_RE: Final = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def check_consultation_id(value: str) -> str:
    """An opaque consultation id, or ValueError saying why not (without echoing it).

    The booth's software supplies it so that readings can be grouped per consultation.
    It must be opaque: a UUID or a random token, never something that identifies the
    patient. Long runs of digits only (a social-security number, a phone number) are
    refused for that reason, and so is anything with ``@`` (an e-mail address).
    """
    if not _CONSULTATION_RE.match(value):
        raise ValueError("a consultation id is 8 to 64 letters, digits, '-' or '_'")
    if value.isdigit() and len(value) >= 10:
        raise ValueError("a consultation id made only of digits may be a personal number")
    return value


ConsultationId = Annotated[str, AfterValidator(check_consultation_id)]


class DeviceSource(_Model):
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
            if value is not None and not math.isfinite(value):
                # Python's json accepts NaN/Infinity; they must travel as null + reason.
                raise ValueError(f"{name!r} is not finite; send null with a reason")
        for name, unit in self.units.items():
            if name not in self.values:
                raise ValueError(f"unit given for absent field {name!r}")
            if unit not in allowed[name]:
                raise ValueError(f"{unit!r} is not a unit of {name!r}")
        for name in self.invalid:
            if self.values.get(name, 0.0) is not None:
                raise ValueError(f"'invalid' names {name!r}, which is not null")
        return self


class DeviceStatus(_Model):
    """One instrument's state inside a health report."""

    device: Identifier
    kind: ReadingKind
    status: DeviceStatusCode
    last_reading_at: UtcDatetime | None = None
    #: The instrument's own battery level, when it reports one (BLE Battery Service).
    battery_percent: int | None = Field(default=None, ge=0, le=100)
    #: Days until the calibration date in the agent config; negative once overdue.
    calibration_due_days: int | None = None
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
    backlog_messages: int = Field(default=0, ge=0)
    backlog_oldest_s: float = Field(default=0.0, ge=0)
    #: Since the agent started: messages sent again (unconfirmed in time), and messages
    #: dropped because the outbox reached its disk budget.
    resent_messages: int = Field(default=0, ge=0)
    dropped_messages: int = Field(default=0, ge=0)
    #: Messages the broker refused to take (not authorised by its ACL).
    refused_messages: int = Field(default=0, ge=0)


class Event(_DataMessage):
    """Something an operator may want to know happened on the agent."""

    type: Literal["event"] = "event"
    name: Identifier
    severity: Severity
    detail: Annotated[str, StringConstraints(max_length=1000)] = ""


DataMessage = Reading | HealthReport | Event


# --- desired and reported configuration ------------------------------------------------


class DeviceOverride(_Model):
    """What the fleet may change on one instrument; absent means "keep the agent's"."""

    enabled: bool | None = None
    interval_s: float | None = Field(default=None, gt=0, le=86_400)
    calibration_due: date | None = None
    battery_low_percent: int | None = Field(default=None, ge=0, le=100)
    calibration_warning_days: int | None = Field(default=None, ge=0, le=366)


class ManagedSettings(_Model):
    """The part of an agent's configuration the fleet may set remotely. Everything
    else (identity, broker, instruments' addresses) stays in the agent's own file."""

    health_interval_s: float | None = Field(default=None, gt=0, le=86_400)
    opening_hours: OpeningHours | None = None
    devices: dict[Identifier, DeviceOverride] = Field(default_factory=dict, max_length=64)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON: what a desired configuration is checked by."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class DesiredConfig(_Model):
    """The configuration the fleet wants an agent to run (retained, per agent)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    agent_id: Identifier
    #: Increases with every push; an agent never goes back to a lower one.
    version: int = Field(ge=1)
    sha256: Sha256
    issued_at: UtcDatetime
    settings: ManagedSettings

    @model_validator(mode="after")
    def _intact(self) -> DesiredConfig:
        if self.settings.digest() != self.sha256:
            raise ValueError("sha256 does not match the settings")
        return self


class ConfigRejection(_Model):
    """Why an agent refused a desired configuration (it keeps running the old one).
    ``version`` is 0 and ``sha256`` None when the message itself was unreadable."""

    version: int = Field(ge=0)
    sha256: Sha256 | None
    #: The setting at fault, as a dotted path (``devices.bp.interval_s``).
    field: Annotated[str, StringConstraints(max_length=200)]
    reason: Annotated[str, StringConstraints(max_length=1000)]


class ReportedConfig(_Model):
    """What an agent runs (retained): the version applied (0: only its own file), the
    effective managed settings, and the last rejection if the newest push failed."""

    schema_version: Literal[1] = SCHEMA_VERSION
    agent_id: Identifier
    version: int = Field(ge=0)
    sha256: Sha256
    settings: ManagedSettings
    rejected: ConfigRejection | None = None
    at: UtcDatetime


class Batch(_Model):
    """Several data messages of one agent in one MQTT message (a backlog drains so).

    ``historical`` marks messages sent from a backlog (late, or sent again), so that
    dashboards and alerts can tell them from live data.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    agent_id: Identifier
    historical: bool = False
    messages: list[Annotated[DataMessage, Field(discriminator="type")]] = Field(
        min_length=1, max_length=MAX_BATCH_MESSAGES
    )

    @model_validator(mode="after")
    def _one_agent(self) -> Batch:
        if any(message.agent_id != self.agent_id for message in self.messages):
            raise ValueError("every message of a batch must come from the batch's agent")
        return self


class StoredAck(_Model):
    """From the fleet to one agent: these sequence numbers are stored; forget them.

    ``ranges`` are inclusive ``[first, last]`` pairs.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    agent_id: Identifier
    ranges: list[tuple[int, int]] = Field(min_length=1, max_length=MAX_ACK_RANGES)

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


class DesiredRelease(_Model):
    """The release the fleet wants an agent to run (retained, per agent)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    agent_id: Identifier
    version: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z.+!-]{1,64}$")]
    #: Where releases are served: ``<url>/<version>/manifest.json`` and its signature.
    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,500}$")]
    issued_at: UtcDatetime


class UpdatePhase(enum.StrEnum):
    IDLE = "idle"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    INSTALLING = "installing"
    WAITING = "waiting"  # installed; the restart waits for closing time, a parked bus...
    HEALTH_CHECKING = "health_checking"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    REFUSED = "refused"  # signature, hash, kind, downgrade: nothing installed


class ReportedRelease(_Model):
    """Where an agent is with its release (retained): every step, with a reason."""

    schema_version: Literal[1] = SCHEMA_VERSION
    agent_id: Identifier
    #: The version running now.
    running: Annotated[str, StringConstraints(max_length=64)]
    phase: UpdatePhase
    #: The version being installed, or refused / rolled back.
    target: Annotated[str, StringConstraints(max_length=64)] | None = None
    progress_percent: int | None = Field(default=None, ge=0, le=100)
    reason: Annotated[str, StringConstraints(max_length=1000)] = ""
    at: UtcDatetime


_ConfigMessage = DesiredConfig | ReportedConfig | DesiredRelease | ReportedRelease
Message = AgentState | DataMessage | Batch | StoredAck | _ConfigMessage


# --- topics ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """The parts of a topic the fleet routes on."""

    agent_id: str
    channel: Channel
    kind: ReadingKind | None = None
    #: The fifth level of desired/reported topics: ``config`` or ``release``.
    item: str | None = None


@dataclass(frozen=True, slots=True)
class Topics:
    """Builds and parses the topic tree under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ValueError(f"topic prefix {self.prefix!r} must match {_PREFIX_RE.pattern}")

    def _base(self, agent_id: str) -> str:
        if not _IDENT_RE.match(agent_id):
            raise ValueError(f"agent id {agent_id!r} must match {_IDENT_PATTERN}")
        return f"{self.prefix}/{PROTOCOL_LEVEL}/{agent_id}"

    def state(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.STATE}"

    def reading(self, agent_id: str, kind: ReadingKind) -> str:
        return f"{self._base(agent_id)}/{Channel.READING}/{kind}"

    def health(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.HEALTH}"

    def event(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.EVENT}"

    def batch(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.BATCH}"

    def ack(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.ACK}"

    def topic_for(self, message: DataMessage) -> str:
        """The topic a data message is published on."""
        if isinstance(message, Reading):
            return self.reading(message.agent_id, message.kind)
        if isinstance(message, HealthReport):
            return self.health(message.agent_id)
        return self.event(message.agent_id)

    def from_agents(self) -> list[str]:
        """The subscription filters for everything agents publish (not the fleet's acks)."""
        base = f"{self.prefix}/{PROTOCOL_LEVEL}/+"
        return [
            f"{base}/{Channel.STATE}",
            f"{base}/{Channel.READING}/+",
            f"{base}/{Channel.HEALTH}",
            f"{base}/{Channel.EVENT}",
            f"{base}/{Channel.BATCH}",
        ]

    def desired(self, agent_id: str) -> str:
        """The filter for an agent's desired state (configuration, release), fleet -> agent."""
        return f"{self._base(agent_id)}/{Channel.DESIRED}/#"

    def desired_config(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.DESIRED}/config"

    def reported_config(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.REPORTED}/config"

    def desired_release(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.DESIRED}/release"

    def reported_release(self, agent_id: str) -> str:
        return f"{self._base(agent_id)}/{Channel.REPORTED}/release"

    def every_agent(self, channel: Channel) -> str:
        """The filter for one channel of every agent (``vigie/v1/+/reported/#``)."""
        return f"{self.prefix}/{PROTOCOL_LEVEL}/+/{channel}/#"

    def agent_grants(self, agent_id: str) -> list[tuple[str, str]]:
        """What the broker lets ``agent_id`` do, as (access, topic filter) pairs: publish
        its own data, read its own acknowledgements and desired state, nothing else."""
        base = self._base(agent_id)
        return [
            ("write", self.state(agent_id)),
            ("write", f"{base}/{Channel.READING}/+"),
            ("write", self.health(agent_id)),
            ("write", self.event(agent_id)),
            ("write", self.batch(agent_id)),
            ("write", f"{base}/{Channel.REPORTED}/#"),
            ("read", self.ack(agent_id)),
            ("read", self.desired(agent_id)),
        ]

    def parse(self, topic: str) -> ParsedTopic:
        """Split a topic into agent id, channel and reading kind, or raise ContractError."""
        levels = topic.split("/")
        if len(levels) < 4 or levels[0] != self.prefix or levels[1] != PROTOCOL_LEVEL:
            raise ContractError(RejectReason.BAD_TOPIC, f"not under {self.prefix}/v1/")
        agent_id, rest = levels[2], levels[3:]
        if not _IDENT_RE.match(agent_id):
            raise ContractError(RejectReason.BAD_TOPIC, "agent id level is not an identifier")
        try:
            channel = Channel(rest[0])
        except ValueError:
            raise ContractError(RejectReason.BAD_TOPIC, "unknown channel") from None
        if channel is Channel.READING:
            if len(rest) != 2:
                raise ContractError(RejectReason.BAD_TOPIC, "reading topic needs a kind")
            try:
                return ParsedTopic(agent_id, channel, ReadingKind(rest[1]))
            except ValueError:
                raise ContractError(RejectReason.BAD_TOPIC, "unknown reading kind") from None
        if channel in (Channel.DESIRED, Channel.REPORTED):
            if len(rest) != 2 or rest[1] not in STATE_ITEMS:
                raise ContractError(
                    RejectReason.BAD_TOPIC, f"{channel} topic must end in /config or /release"
                )
            return ParsedTopic(agent_id, channel, item=rest[1])
        if len(rest) != 1:
            raise ContractError(RejectReason.BAD_TOPIC, "unexpected levels after the channel")
        return ParsedTopic(agent_id, channel)


# --- encoding and decoding ------------------------------------------------------------


def encode(message: Message) -> bytes:
    """Serialise a message to its wire form (compact JSON, UTF-8)."""
    return message.model_dump_json(exclude_none=False).encode()


_CHANNEL_MODELS: Final[dict[Channel, type[_Model]]] = {
    Channel.STATE: AgentState,
    Channel.READING: Reading,
    Channel.HEALTH: HealthReport,
    Channel.EVENT: Event,
    Channel.BATCH: Batch,
    Channel.ACK: StoredAck,
}
_STATE_MODELS: Final[dict[tuple[Channel, str], type[_Model]]] = {
    (Channel.DESIRED, "config"): DesiredConfig,
    (Channel.REPORTED, "config"): ReportedConfig,
    (Channel.DESIRED, "release"): DesiredRelease,
    (Channel.REPORTED, "release"): ReportedRelease,
}


def decode(topics: Topics, topic: str, payload: bytes) -> tuple[ParsedTopic, Message]:
    """Validate a received message against the contract.

    Size is checked before anything is parsed; the payload must be UTF-8 JSON and is
    validated strictly (``"120"`` is not a number here). Raises ContractError.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(RejectReason.OVERSIZED, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    parsed = topics.parse(topic)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(RejectReason.NOT_JSON, f"not UTF-8: {exc.reason}") from exc
    model = (
        _STATE_MODELS[(parsed.channel, parsed.item)]
        if parsed.item is not None
        else _CHANNEL_MODELS[parsed.channel]
    )
    try:
        # One parse on the hot path; the reason is worked out only for rejects.
        message = model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise _rejection(text, exc) from exc
    # Every model of the two tables above is one of these (narrows the type).
    assert isinstance(message, AgentState | DataMessage | Batch | StoredAck | _ConfigMessage)  # noqa: S101
    if message.agent_id != parsed.agent_id:
        raise ContractError(RejectReason.AGENT_MISMATCH, "payload agent_id differs from topic")
    if isinstance(message, Reading) and message.kind != parsed.kind:
        raise ContractError(RejectReason.INVALID_PAYLOAD, "payload kind differs from topic")
    return parsed, message


def _rejection(text: str, exc: ValidationError) -> ContractError:
    """Why a payload failed validation: not JSON, another schema version, or a field."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        return ContractError(RejectReason.NOT_JSON, str(error)[:200])
    except RecursionError:  # deeply nested arrays
        return ContractError(RejectReason.NOT_JSON, "nested too deeply")
    if not isinstance(document, dict):
        return ContractError(RejectReason.INVALID_PAYLOAD, "payload is not a JSON object")
    version = document.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        return ContractError(
            RejectReason.UNKNOWN_SCHEMA_VERSION, f"schema_version {str(version)[:20]!r}"
        )
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    return ContractError(RejectReason.INVALID_PAYLOAD, f"{where}: {first['msg']}")


def utc_now() -> datetime:
    """The current time, aware, in UTC (one place to read the clock)."""
    return datetime.now(UTC)


# --- validated documents --------------------------------------------------------------


ModelT = TypeVar("ModelT", bound=BaseModel)


class DocumentError(ValueError):
    """A configuration document (file or pushed) that does not validate.

    The message names the source, the field and the reason, on one line per problem.
    """


def describe_validation_error(exc: ValidationError) -> str:
    """``field.path: reason`` for each problem, one per line."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(document)"
        lines.append(f"{where}: {error['msg']}")
    return "\n".join(lines)


def load_yaml_document(path: Path, model: type[ModelT]) -> ModelT:
    """Read a YAML file and validate it into ``model``, or raise DocumentError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DocumentError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise DocumentError(f"{path}: expected a mapping at the top level")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        problems = describe_validation_error(exc).replace("\n", f"\n{path}: ")
        raise DocumentError(f"{path}: {problems}") from exc
