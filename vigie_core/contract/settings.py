"""Managed settings: the part of an agent's configuration the fleet may push, the
desired configuration that carries them, and what an agent reports it runs."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Annotated, Any

from pydantic import Field, StringConstraints, model_validator

from vigie_core.contract.identifiers import Identifier, Sha256
from vigie_core.contract.model import (
    SCHEMA_VERSION,
    ContractModel,
    Count,
    SchemaVersion,
    UtcDatetime,
)
from vigie_core.contract.presence import OpeningHours


class DeviceOverride(ContractModel):
    """What the fleet may change on one instrument; absent means "keep the agent's"."""

    enabled: bool | None = None
    interval_s: float | None = Field(default=None, gt=0, le=86_400)
    calibration_due: date | None = None
    battery_low_percent: int | None = Field(default=None, ge=0, le=100)
    calibration_warning_days: int | None = Field(default=None, ge=0, le=366)


class ManagedSettings(ContractModel):
    """The part of an agent's configuration the fleet may set remotely. Everything
    else (identity, broker, instruments' addresses) stays in the agent's own file."""

    health_interval_s: float | None = Field(default=None, gt=0, le=86_400)
    opening_hours: OpeningHours | None = None
    devices: dict[Identifier, DeviceOverride] = Field(default_factory=dict, max_length=64)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON: what a desired configuration is checked by."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class DesiredConfig(ContractModel):
    """The configuration the fleet wants an agent to run (retained, per agent)."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    agent_id: Identifier
    #: Increases with every push; an agent never goes back to a lower one.
    version: Count = Field(ge=1)
    sha256: Sha256
    issued_at: UtcDatetime
    settings: ManagedSettings

    @model_validator(mode="after")
    def _intact(self) -> DesiredConfig:
        if self.settings.digest() != self.sha256:
            raise ValueError("sha256 does not match the settings")
        return self


class ConfigRejection(ContractModel):
    """Why an agent refused a desired configuration (it keeps running the old one).
    ``version`` is 0 and ``sha256`` None when the message itself was unreadable."""

    version: Count
    sha256: Sha256 | None
    #: The setting at fault, as a dotted path (``devices.bp.interval_s``).
    field: Annotated[str, StringConstraints(max_length=200)]
    reason: Annotated[str, StringConstraints(max_length=1000)]


class ReportedConfig(ContractModel):
    """What an agent runs (retained): the version applied (0: only its own file), the
    effective managed settings, and the last rejection if the newest push failed."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    agent_id: Identifier
    version: Count
    sha256: Sha256
    settings: ManagedSettings
    rejected: ConfigRejection | None = None
    at: UtcDatetime


def differences(desired: ManagedSettings, running: ManagedSettings) -> list[tuple[str, Any, Any]]:
    """(setting, desired value, running value) for each desired setting not in effect."""
    wanted = desired.model_dump(mode="json", exclude_none=True)
    actual = running.model_dump(mode="json")
    found: list[tuple[str, Any, Any]] = []

    def walk(path: str, want: Any, have: Any) -> None:
        if isinstance(want, dict) and path != "opening_hours":
            for key, value in want.items():
                walk(f"{path}.{key}" if path else key, value, (have or {}).get(key))
        elif want != have:
            found.append((path, want, have))

    walk("", wanted, actual)
    return found
