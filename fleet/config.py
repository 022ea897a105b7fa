"""The fleet service's and CLI's configuration, validated once."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.contract import DEFAULT_PREFIX, DocumentError, load_yaml_document

#: Where the CLI looks when no --config is given.
CONFIG_ENV = "VIGIE_FLEET_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = DEFAULT_PREFIX
    #: Stable and distinct per instance: the broker keeps this instance's session (and
    #: the messages queued for it) under this id while it is down.
    client_id: str = Field(default_factory=lambda: f"fleet-{socket.gethostname()}")
    #: Instances in the same group share the agents' traffic ($share/<group>/...).
    share_group: str = Field(default="fleet", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    keepalive_s: int = Field(default=30, ge=5, le=3600)


class InfluxSettings(_Section):
    url: str = "http://127.0.0.1:8086"
    database: str = Field(default="vigie", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    timeout_s: float = Field(default=10.0, gt=0)


class IngestSettings(_Section):
    #: A write is sent when it holds this many points, or when the oldest has waited
    #: batch_max_delay_s, whichever comes first.
    batch_max_points: int = Field(default=5000, ge=1, le=100_000)
    batch_max_delay_s: float = Field(default=0.2, gt=0, le=10)
    #: Where batches wait while InfluxDB is unreachable (None: hold the MQTT
    #: acknowledgements instead and let the broker keep the messages).
    spill_dir: Path | None = None
    spill_max_bytes: int = Field(default=1024**3, ge=1024 * 1024)


class FleetConfig(_Section):
    schema_version: Literal[1]
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    influxdb: InfluxSettings = Field(default_factory=InfluxSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)


def load_fleet_config(path: Path | None) -> FleetConfig:
    """Load the config named on the command line, in $VIGIE_FLEET_CONFIG, or ./fleet.yaml."""
    if path is None:
        path = Path(os.environ.get(CONFIG_ENV, "fleet.yaml"))
        if not path.exists():
            raise DocumentError(
                f"{path}: no fleet configuration (give --config or set {CONFIG_ENV})"
            )
    return load_yaml_document(path, FleetConfig)
