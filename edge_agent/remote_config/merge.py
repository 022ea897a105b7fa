"""Desired configuration: the fleet's settings laid over the agent's own file (pure).

The agent's file says who it is and what it has (identity, broker, instruments and
their addresses); the fleet may change only :class:`ManagedSettings` (intervals,
opening hours, instruments enabled or not, calibration dates, thresholds). Each desired
configuration is applied to the *file*, never to the previous push, so the result
does not depend on the order pushes arrived in.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from edge_agent.config import AgentConfig, device_profiles
from edge_agent.errors import ConfigRejected
from vigie_core.contract.settings import DeviceOverride, ManagedSettings
from vigie_core.documents import describe_validation_error
from vigie_core.errors import DocumentError


def effective_settings(config: AgentConfig) -> ManagedSettings:
    """Every managed setting as ``config`` has it (what an agent reports it runs)."""
    return ManagedSettings(
        health_interval_s=config.health_interval_s,
        opening_hours=config.opening_hours,
        devices={
            device.id: DeviceOverride(
                enabled=device.enabled,
                interval_s=device.interval_s,
                calibration_due=device.calibration_due,
                battery_low_percent=device.battery_low_percent,
                calibration_warning_days=device.calibration_warning_days,
            )
            for device in config.devices
        },
    )


def apply_settings(base: AgentConfig, settings: ManagedSettings) -> AgentConfig:
    """``base`` with ``settings`` laid over it, validated as a whole (the same rules as
    the file, device profiles included); raises ConfigRejected naming the setting."""
    known = {device.id for device in base.devices}
    for device_id in settings.devices:
        if device_id not in known:
            raise ConfigRejected(
                f"devices.{device_id}",
                "no such instrument on this agent (instruments are added in its own file)",
            )
    data: dict[str, Any] = base.model_dump(mode="json")
    if settings.health_interval_s is not None:
        data["health_interval_s"] = settings.health_interval_s
    if settings.opening_hours is not None:
        data["opening_hours"] = settings.opening_hours.model_dump(mode="json")
    for device in data["devices"]:
        override = settings.devices.get(device["id"])
        if override is not None:
            device.update(override.model_dump(mode="json", exclude_none=True))
    try:
        merged = AgentConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigRejected(where, describe_validation_error(exc)) from None
    try:
        device_profiles(merged, "desired")
    except DocumentError as exc:
        # "desired: devices.2.profile: no profile ..." -> the setting and the reason
        _, _, rest = str(exc).partition(": ")
        field, _, reason = rest.partition(": ")
        raise ConfigRejected(field or "devices", reason or str(exc)) from None
    return merged
