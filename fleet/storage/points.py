"""How contract messages become InfluxDB points. Pure: no I/O, no clock.

Every point of a data message is written with the measurement's own timestamp and
the same tags each time, so a redelivered message overwrites itself instead of
doubling (InfluxDB identifies a point by measurement, tag set and time).

The measurements, their tags and fields are listed in ``fleet.storage.schema``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Final

from fleet.storage.lineprotocol import FieldValue, Point
from fleet.storage.schema import (
    AGENT_DELIVERY,
    AGENT_EVENT,
    AGENT_HEALTH,
    AGENT_PRESENCE,
    DEAD_LETTER,
    DEVICE_STATUS,
    FLEET_EVENT,
)
from vigie_core.contract.codec import Message
from vigie_core.contract.data import (
    EARLIEST_VALID_TIME,
    Batch,
    DataMessage,
    DeviceStatusCode,
    Event,
    HealthReport,
    Reading,
    StoredAck,
)
from vigie_core.contract.presence import AgentState
from vigie_core.contract.releases import DesiredRelease, ReportedRelease
from vigie_core.contract.settings import DesiredConfig, ReportedConfig

#: A measurement time this far ahead of reception comes from a wrong clock.
MAX_CLOCK_AHEAD_NS: Final = 5 * 60 * 1_000_000_000

#: How much of a rejected payload is kept for inspection.
DEAD_LETTER_EXCERPT_BYTES: Final = 2048


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def ns(at: datetime) -> int:
    """An aware datetime as integer nanoseconds since the epoch, without float rounding."""
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


EARLIEST_VALID_NS: Final = ns(EARLIEST_VALID_TIME)


def _pairs(mapping: dict[str, str]) -> str:
    return ";".join(f"{key}={value}" for key, value in sorted(mapping.items()))


#: A data point's time is its measured time plus ``seq % SEQ_NS_SPREAD`` nanoseconds.
#: Two readings from an instrument whose clock has whole seconds (BLE cuffs and
#: thermometers send their own time), taken within one second, would otherwise share
#: measurement, tags and time, and InfluxDB would keep only the second: a reading
#: stored "exactly once" lost silently. Agents' times have microseconds, so the
#: measured time stays exact to the microsecond, and a message sent twice lands on
#: the same point (idempotent). Only readings of one device more than
#: SEQ_NS_SPREAD messages apart could still meet, within the same microsecond.
SEQ_NS_SPREAD: Final = 1000


def _timing(
    message: DataMessage, received_ns: int, historical: bool
) -> tuple[int, dict[str, FieldValue]]:
    """The point time (made unique by the sequence number, see SEQ_NS_SPREAD) and the
    fields every data point carries.

    A time before the protocol existed, or minutes ahead of reception, comes from an
    unset or wrong clock: the point gets the receive time instead, flagged, with the
    reported time kept (never a point in 1970).
    """
    measured = ns(message.measured_at)
    fields: dict[str, FieldValue] = {"seq": message.seq, "historical": historical}
    if measured < EARLIEST_VALID_NS or measured > received_ns + MAX_CLOCK_AHEAD_NS:
        fields["clock_suspect"] = True
        fields["reported_time_ns"] = measured
        return received_ns, fields
    at = measured + message.seq % SEQ_NS_SPREAD
    # From measurement to reception: seconds for live data, hours for a bus's backlog.
    fields["delay_s"] = round(max(0, received_ns - at) / 1e9, 3)
    return at, fields


def reading_points(message: Reading, received_ns: int, historical: bool = False) -> list[Point]:
    at, fields = _timing(message, received_ns, historical)
    fields |= {name: float(value) for name, value in message.values.items() if value is not None}
    if message.units:
        fields["units"] = _pairs(message.units)
    if message.invalid:
        fields["invalid"] = _pairs(message.invalid)
    if message.quality:
        fields["quality"] = ";".join(sorted(message.quality))
    if message.context:
        fields["context"] = _pairs(message.context)
    if message.consultation_id is not None:
        # A field, not a tag: one value per consultation would grow the series index.
        fields["consultation_id"] = message.consultation_id
    if message.source is not None:
        fields["profile"] = message.source.profile
        fields["address"] = message.source.address
        if message.source.serial_number is not None:
            fields["serial_number"] = message.source.serial_number
    if message.device_time is not None and message.received_at is not None:
        # Positive: the device's clock is behind the agent's. Drift shows on dashboards
        # long before it is bad enough to make a reading's time suspect.
        offset = (message.received_at - message.device_time).total_seconds()
        fields["device_clock_offset_s"] = round(offset, 3)
    tags = {"agent_id": message.agent_id, "device": message.device}
    return [Point(message.kind.value, fields, at, tags)]


def health_points(message: HealthReport, received_ns: int, historical: bool = False) -> list[Point]:
    at, fields = _timing(message, received_ns, historical)
    ok = sum(device.status is DeviceStatusCode.OK for device in message.devices)
    fields |= {
        "agent_version": message.agent_version,
        "uptime_s": message.uptime_s,
        "cpu_percent": message.cpu_percent,
        "memory_percent": message.memory_percent,
        "disk_percent": message.disk_percent,
        "devices_ok": ok,
        "devices_total": len(message.devices),
        "backlog_messages": message.backlog_messages,
        "backlog_oldest_s": message.backlog_oldest_s,
        "resent_messages": message.resent_messages,
        "dropped_messages": message.dropped_messages,
        "refused_messages": message.refused_messages,
        "disk_low": message.disk_low,
        "outbox_bytes": message.outbox_bytes,
        "held_messages": message.held_messages,
    }
    if message.disk_free_bytes is not None:
        fields["disk_free_bytes"] = message.disk_free_bytes
    points = [Point(AGENT_HEALTH, fields, at, {"agent_id": message.agent_id})]
    for device in message.devices:
        device_fields: dict[str, FieldValue] = {
            "status": device.status.value,
            "ok": int(device.status is DeviceStatusCode.OK),
        }
        if device.last_reading_at is not None:
            age = (message.measured_at - device.last_reading_at).total_seconds()
            device_fields["last_reading_age_s"] = max(age, 0.0)
        if device.battery_percent is not None:
            device_fields["battery_percent"] = device.battery_percent
        if device.calibration_due_days is not None:
            device_fields["calibration_due_days"] = device.calibration_due_days
        if device.detail:
            device_fields["detail"] = device.detail
        tags = {"agent_id": message.agent_id, "device": device.device, "kind": device.kind.value}
        points.append(Point(DEVICE_STATUS, device_fields, at, tags))
    return points


def event_points(message: Event, received_ns: int, historical: bool = False) -> list[Point]:
    at, fields = _timing(message, received_ns, historical)
    fields["detail"] = message.detail
    tags = {"agent_id": message.agent_id, "name": message.name, "severity": message.severity.value}
    return [Point(AGENT_EVENT, fields, at, tags)]


def data_points(message: DataMessage, received_ns: int, historical: bool = False) -> list[Point]:
    if isinstance(message, Reading):
        return reading_points(message, received_ns, historical)
    if isinstance(message, HealthReport):
        return health_points(message, received_ns, historical)
    return event_points(message, received_ns, historical)


def presence_points(message: AgentState, received_ns: int) -> list[Point]:
    fields: dict[str, FieldValue] = {"online": message.online, "session": message.session}
    if message.birth is not None:
        birth = message.birth
        fields |= {
            "site_id": birth.site_id,
            "site_name": birth.site_name,
            "kind": birth.kind.value,
            "agent_version": birth.agent_version,
            "devices": json.dumps([device.model_dump(mode="json") for device in birth.devices]),
            "opening_hours": birth.opening_hours.model_dump_json(),
            "tags": ",".join(birth.tags),
        }
    return [Point(AGENT_PRESENCE, fields, received_ns, {"agent_id": message.agent_id})]


def message_points(message: Message, received_ns: int) -> list[Point]:
    """The points that store one valid message.

    ``received_ns`` must be unique per message, and a batch needs one per message it
    holds (see ``fleet.ingest.decoding.UniqueClock``): points timed by reception would otherwise
    overwrite each other.
    """
    if isinstance(message, AgentState):
        return presence_points(message, received_ns)
    if isinstance(message, Batch):
        return [
            point
            for index, item in enumerate(message.messages)
            for point in data_points(item, received_ns + index, message.historical)
        ]
    if isinstance(
        message, StoredAck | DesiredConfig | ReportedConfig | DesiredRelease | ReportedRelease
    ):
        return []  # configuration and acknowledgements: not subscribed to, never stored
    return data_points(message, received_ns)


def receive_slots(message: Message) -> int:
    """How many distinct receive times ``message_points`` may use."""
    return len(message.messages) if isinstance(message, Batch) else 1


def delivery_point(agent_id: str, duplicates: int, received_ns: int) -> Point:
    """Redeliveries of one agent's messages that a fleet instance stored again."""
    return Point(AGENT_DELIVERY, {"duplicates": duplicates}, received_ns, {"agent_id": agent_id})


def dead_letter_point(
    reason: str, detail: str, topic: str, payload: bytes, received_ns: int
) -> Point:
    """A rejected message, kept for inspection with why it was refused."""
    excerpt = payload[:DEAD_LETTER_EXCERPT_BYTES].decode("utf-8", errors="replace")
    fields: dict[str, FieldValue] = {
        # Topics and payloads are hostile input here; keep them as quoted strings only.
        "topic": topic[:512],
        "detail": detail[:512],
        "size": len(payload),
        "payload": excerpt,
    }
    return Point(DEAD_LETTER, fields, received_ns, {"reason": str(reason)})


def fleet_event_point(instance: str, name: str, detail: str, at_ns: int) -> Point:
    """Something that happened to a fleet instance itself (its session taken over)."""
    return Point(FLEET_EVENT, {"detail": detail[:512]}, at_ns, {"instance": instance, "name": name})
