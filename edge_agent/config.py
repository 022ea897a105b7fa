"""The agent's configuration, validated once at the edge of the program."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from edge_agent.contract import (
    DEFAULT_PREFIX,
    AgentKind,
    DeviceInfo,
    Identifier,
    OpeningHours,
    ReadingKind,
    load_yaml_document,
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(_Section):
    id: Identifier
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class BrokerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = DEFAULT_PREFIX
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    #: How long a publish may wait for its PUBACK before the connection is rebuilt.
    ack_timeout_s: float = Field(default=20.0, gt=0)
    #: MQTT messages awaiting their PUBACK at once.
    publish_window: int = Field(default=20, ge=1, le=1000)
    reconnect_initial_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)


class DeviceConfig(_Section):
    id: Identifier
    kind: ReadingKind
    model: Annotated[str, StringConstraints(max_length=100)] = "simulated"
    #: Only simulated instruments exist until the drivers land; the field is explicit so
    #: that a real booth's config says what it reads.
    source: Literal["simulated"] = "simulated"
    interval_s: float = Field(default=60.0, gt=0)

    def info(self) -> DeviceInfo:
        return DeviceInfo(id=self.id, kind=self.kind, model=self.model)


class OutboxConfig(_Section):
    #: FULL: each reading is on disk before it counts as taken (survives power loss);
    #: NORMAL: faster, may lose the last transactions on power loss but never corrupts.
    synchronous: Literal["full", "normal"] = "full"
    #: Disk budget for waiting messages; past it, health reports are thinned first,
    #: then the oldest readings dropped (and the drop reported).
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=64 * 1024)


class DeliveryConfig(_Section):
    #: How long to wait for the fleet's "stored" before sending a message again
    #: (doubling with each attempt, up to 32 times this).
    confirm_timeout_s: float = Field(default=30.0, gt=0)
    #: Messages sent but not yet confirmed, at most: the end-to-end window.
    max_unconfirmed: int = Field(default=2000, ge=1)
    #: Messages per batch when more than one is due (a backlog drains in batches).
    batch_max_messages: int = Field(default=100, ge=1, le=500)
    #: Drain pace, messages per second, with bursts of up to drain_burst.
    drain_rate_per_s: float = Field(default=500.0, gt=0)
    drain_burst: int = Field(default=500, ge=1)
    #: A message sent later than this after it was taken is marked historical.
    live_window_s: float = Field(default=60.0, gt=0)


class AgentConfig(_Section):
    schema_version: Literal[1]
    agent_id: Identifier
    site: SiteConfig
    kind: AgentKind
    #: Default: open around the clock, so that an offline agent shows as offline, never
    #: as "closed", until someone enters the real hours.
    opening_hours: OpeningHours = Field(default_factory=OpeningHours.always)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    state_dir: Path
    health_interval_s: float = Field(default=60.0, gt=0)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    devices: list[DeviceConfig] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _unique_devices(self) -> AgentConfig:
        ids = [device.id for device in self.devices]
        duplicates = sorted({device_id for device_id in ids if ids.count(device_id) > 1})
        if duplicates:
            raise ValueError(f"device ids must be unique, repeated: {', '.join(duplicates)}")
        return self


def load_agent_config(path: Path) -> AgentConfig:
    """Load and validate an agent config file; raises DocumentError naming file and field."""
    return load_yaml_document(path, AgentConfig)
