"""One configured instrument as the agent sees it: the listener its driver reports to.

Frames are decoded here (pure decoders), readings handed to the agent's outbox, and
the instrument's state kept for the health report: connection, battery, last
reading, calibration date, with an event when the battery or the calibration date
crosses its threshold. A frame that does not decode is counted and reported,
rate-limited, and never stops the instrument: the next frame may be fine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from edge_agent.config import DeviceConfig
from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders import registry
from edge_agent.instruments.decoders.base import ReadingDraft, Record
from edge_agent.instruments.profiles import DeviceProfile
from vigie_core.contract.data import DeviceSource, DeviceStatus, DeviceStatusCode, Severity

log = logging.getLogger(__name__)

#: GATT characteristics that describe the instrument rather than measure (0x180A, 0x180F).
BATTERY_LEVEL: Final = "2a19"
SERIAL_NUMBER: Final = "2a25"
#: At most one event of each name per instrument in this many seconds: a device that
#: floods garbage must not flood the outbox with reports about it.
EVENT_INTERVAL_S: Final = 300.0

SubmitReading = Callable[["Instrument", ReadingDraft, datetime], object]
RecordEvent = Callable[[str, Severity, str], object]


@dataclass
class Instrument:
    config: DeviceConfig
    profile: DeviceProfile | None
    timezone: ZoneInfo
    submit_reading: SubmitReading
    record_event: RecordEvent
    status: DeviceStatusCode = DeviceStatusCode.DISCONNECTED
    detail: str = ""
    battery_percent: int | None = None
    serial_number: str | None = None
    last_reading_at: datetime | None = None
    decode_errors: int = 0
    garbage_bytes: int = 0
    _last_event: dict[str, float] = field(default_factory=dict)
    _battery_low: bool = False
    #: The calibration date and stage (due soon, overdue) last warned about.
    _calibration_warned: tuple[date, bool] | None = None

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def sends_stored_records(self) -> bool:
        """Whether the device sends measurements from its memory, possibly days old."""
        ble = None if self.profile is None else self.profile.ble
        if ble is None:
            return False
        asks = any(write.value == "racp_all_records" for write in ble.write)
        return asks or ble.disconnects_after_transfer

    def source(self) -> DeviceSource | None:
        if self.profile is None:
            return None
        if self.config.source == "simulated":
            address = f"simulated:{self.config.id}"
        else:
            address = self.config.address or _profile_address(self.profile) or "unknown"
        return DeviceSource(
            profile=self.profile.name, address=address, serial_number=self.serial_number
        )

    # --- InstrumentListener -----------------------------------------------------------

    def on_frame(self, format_name: str, data: bytes, received_at: datetime) -> None:
        try:
            record = registry.decode(format_name, data)
        except (DecodeError, KeyError) as exc:
            self.decode_errors += 1
            self._event("decode_error", Severity.WARNING, f"{self.id}: {exc}")
            return
        self.on_record(format_name, record, received_at)

    def on_record(self, format_name: str, record: Record, received_at: datetime) -> None:
        details = record.as_json()
        if format_name == BATTERY_LEVEL and isinstance(details.get("battery_level"), int):
            self._note_battery(int(details["battery_level"]))  # type: ignore[arg-type]
            return
        if format_name == SERIAL_NUMBER and isinstance(details.get("value"), str):
            self.serial_number = str(details["value"])[:100] or None
            return
        draft = record.reading()
        if draft is None:
            return
        self.last_reading_at = received_at
        self.submit_reading(self, draft, received_at)

    def on_status(self, status: DeviceStatusCode, detail: str = "") -> None:
        changed = status is not self.status
        self.status, self.detail = status, detail[:200]
        if not changed:
            return
        log.info("%s: %s %s", self.id, status.value, detail)
        if status is DeviceStatusCode.ERROR:
            self._event("instrument_error", Severity.ERROR, f"{self.id}: {detail}")

    def on_garbage(self, size: int, reason: str) -> None:
        self.garbage_bytes += size
        self._event("instrument_noise", Severity.WARNING, f"{self.id}: {reason} ({size} bytes)")

    # --- thresholds -------------------------------------------------------------------

    def _note_battery(self, percent: int) -> None:
        """One event as the battery falls to its threshold, not one per reading."""
        self.battery_percent = percent
        threshold = self.config.battery_low_percent
        low = percent <= threshold
        if low and not self._battery_low:
            self._event(
                "battery_low",
                Severity.WARNING,
                f"{self.id}: battery at {percent} % (warning at {threshold} %)",
            )
        self._battery_low = low

    def check_calibration(self, now: datetime) -> None:
        """One event when the calibration date comes within its warning days, one more
        once it has passed; a new date (after a calibration) starts again."""
        due = self.config.calibration_due
        days = calibration_due_days(due, now, self.timezone)
        if due is None or days is None or days > self.config.calibration_warning_days:
            return
        stage = (due, days < 0)
        if self._calibration_warned == stage:
            return
        self._calibration_warned = stage
        if days < 0:
            severity, detail = Severity.ERROR, f"{self.id}: calibration overdue since {due}"
        else:
            severity = Severity.WARNING
            detail = f"{self.id}: calibration due on {due}, in {days} day(s)"
        log.warning("%s", detail)
        self.record_event("calibration_due", severity, detail)

    # --- health -----------------------------------------------------------------------

    def device_status(self, now: datetime) -> DeviceStatus:
        return DeviceStatus(
            device=self.id,
            kind=self.config.kind,
            status=self.status,
            last_reading_at=self.last_reading_at,
            battery_percent=self.battery_percent,
            calibration_due_days=calibration_due_days(
                self.config.calibration_due, now, self.timezone
            ),
            detail=self.detail,
        )

    def _event(self, name: str, severity: Severity, detail: str) -> None:
        now = time.monotonic()
        if now - self._last_event.get(name, -EVENT_INTERVAL_S) < EVENT_INTERVAL_S:
            return
        self._last_event[name] = now
        log.warning("%s", detail)
        self.record_event(name, severity, detail)


def calibration_due_days(due: date | None, now: datetime, zone: ZoneInfo) -> int | None:
    """Days from the site's today to ``due``: 0 on the day, negative once overdue."""
    if due is None:
        return None
    return (due - now.astimezone(zone).date()).days


def _profile_address(profile: DeviceProfile) -> str | None:
    if profile.serial is not None:
        return profile.serial.port
    if profile.ble is not None:
        return profile.ble.match.address
    return None
