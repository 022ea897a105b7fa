"""The fleet service's and CLI's configuration, validated once."""

from __future__ import annotations

import os
import socket
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from fleet.storage.influx import InfluxCredentials
from vigie_core.addresses import HostName, HttpUrlString
from vigie_core.contract.identifiers import DEFAULT_PREFIX, Identifier, TopicPrefix
from vigie_core.documents import load_yaml_document
from vigie_core.errors import DocumentError
from vigie_core.paths import WritableDir, check_secret_file
from vigie_core.tls import BrokerCredentials, certificate_name, read_secret

#: Where the CLI looks when no --config is given.
CONFIG_ENV = "VIGIE_FLEET_CONFIG"
PASSWORD_ENV = "VIGIE_INFLUX_PASSWORD"  # noqa: S105 - a variable name, not a secret
TOKEN_ENV = "VIGIE_INFLUX_TOKEN"  # noqa: S105


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    host: HostName = "127.0.0.1"
    port: int = Field(default=8883, ge=1, le=65535)
    #: TLS and the fleet's identity (its certificate, from ``fleet ca init``).
    tls: BrokerCredentials | None = None
    #: Plain MQTT, no identity: only for a lab network, never with health data.
    allow_plaintext: bool = False
    #: The CLI's identity (``fleet-cli``, which may publish desired state), for the
    #: commands that push configuration; default: ``tls``.
    cli_tls: BrokerCredentials | None = None
    topic_prefix: TopicPrefix = DEFAULT_PREFIX
    #: This instance's id: the broker keeps its session (and the messages queued for
    #: it) under it while it is down. The broker names every client after its
    #: certificate, so it is the certificate's name (by default; another is an error):
    #: each instance needs an identity of its own ('fleet ca identity').
    client_id: Identifier | None = None
    #: Instances in the same group share the agents' traffic ($share/<group>/...).
    share_group: str = Field(default="fleet", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    keepalive_s: int = Field(default=30, ge=5, le=3600)

    @model_validator(mode="after")
    def _secure_by_default(self) -> MqttSettings:
        if self.tls is None and not self.allow_plaintext:
            raise ValueError(
                "mqtt.tls is required (ca_file, cert_file, key_file from 'fleet ca init'); "
                "set mqtt.allow_plaintext: true only on a lab network"
            )
        name = self.certificate_name  # the certificate was checked with its field
        if self.client_id is not None and name is not None and name != self.client_id:
            raise ValueError(
                f"client_id {self.client_id!r} is not the certificate's name "
                f"{name!r}: the broker names each client after its "
                "certificate (leave client_id out, or give this instance its own identity)"
            )
        return self

    @cached_property
    def certificate_name(self) -> str | None:
        """The identity in the TLS certificate, if there is one (TlsError if it cannot
        be read)."""
        if self.tls is None or self.tls.cert_file is None:
            return None
        return certificate_name(self.tls.cert_file)

    @property
    def instance_id(self) -> str:
        """This instance's client id: its certificate's name (a lab broker without
        certificates: client_id, or fleet-<host name>)."""
        return self.client_id or self.certificate_name or f"fleet-{socket.gethostname()}"


class InfluxSettings(_Section):
    url: HttpUrlString = "http://127.0.0.1:8086"
    database: str = Field(default="vigie", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    timeout_s: float = Field(default=10.0, gt=0)
    #: InfluxDB 1.x: a user and a file holding its password ($VIGIE_INFLUX_PASSWORD
    #: overrides the file). 2.x and 3.x: a file holding a token ($VIGIE_INFLUX_TOKEN).
    #: Secrets never go in this file or on a command line.
    username: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    password_file: Path | None = None
    token_file: Path | None = None
    #: How long readings, health reports and events are kept (InfluxDB duration;
    #: applied by 'fleet db init' as the database's default retention policy).
    retention: str = Field(default="180d", pattern=r"^([1-9][0-9]*(h|d|w)|INF)$")

    @field_validator("password_file", "token_file")
    @classmethod
    def _secret_readable(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        variable = PASSWORD_ENV if info.field_name == "password_file" else TOKEN_ENV
        if value is None or os.environ.get(variable):
            return value  # the variable wins: the file is not read, and may be absent
        return check_secret_file(value)

    @model_validator(mode="after")
    def _one_credential(self) -> InfluxSettings:
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        if self.username is not None and self.token_file is not None:
            raise ValueError("give username and password_file, or token_file, not both")
        return self

    def credentials(self) -> InfluxCredentials:
        """Read the secret now (file or environment); raises TlsError if unreadable."""
        if self.token_file is not None or os.environ.get(TOKEN_ENV):
            return InfluxCredentials(token=read_secret(self.token_file or Path(), TOKEN_ENV))
        if self.username is not None and self.password_file is not None:
            return InfluxCredentials(
                username=self.username, password=read_secret(self.password_file, PASSWORD_ENV)
            )
        return InfluxCredentials()


class IngestSettings(_Section):
    #: A write is sent when it holds this many points, or when the oldest has waited
    #: batch_max_delay_s, whichever comes first.
    batch_max_points: int = Field(default=5000, ge=1, le=100_000)
    batch_max_delay_s: float = Field(default=0.2, gt=0, le=10)
    #: The broker's ``max_inflight_messages`` (1000 in the shipped delivery settings):
    #: once this many messages wait for their acknowledgement it sends no more, so the
    #: write goes at once instead of at its deadline. Left at 5,000 points a batch, the
    #: ingest waited out the deadline on every full window (measured: ~7,000 readings/s
    #: for one instance however many queued).
    broker_max_inflight: int = Field(default=1000, ge=1, le=65_535)
    #: Where batches wait while InfluxDB is unreachable (None: hold the MQTT
    #: acknowledgements instead and let the broker keep the messages).
    spill_dir: WritableDir | None = None
    spill_max_bytes: int = Field(default=1024**3, ge=1024 * 1024)


class ArtifactSettings(_Section):
    #: The folder 'fleet release publish --store' writes to; served read-only over HTTP
    #: (with Range, for resumable downloads) by 'fleet serve'. None: not served here
    #: (any HTTP server or object store can serve the folder instead).
    dir: WritableDir | None = None
    host: HostName = "0.0.0.0"  # noqa: S104 - agents download from everywhere
    port: int = Field(default=8780, ge=1, le=65535)
    #: How agents reach the releases (this server or another): the default for
    #: 'fleet release deploy --url' and 'fleet rollout start --url'.
    url: HttpUrlString | None = None


class StatusSettings(_Section):
    #: How often each agent's state, each rollout and each pushed configuration are
    #: written for the dashboards and alerts (``fleet.status``): one point per agent per
    #: interval; availability is resolved to it. At most 2 minutes: the dashboards'
    #: "now" panels and the alert rules look at the last 5.
    interval_s: int = Field(default=60, ge=5, le=120)
    #: An agent silent this long is taken for retired: no status is written for it any
    #: more, so a booth taken away does not stay "down" (and alerting) for ever. The CLI
    #: still lists it. Its alert will have fired for all that time before.
    forget_after_days: int = Field(default=30, ge=1, le=3650)
    #: The revocation list the broker checks clients against: its remaining validity
    #: is written too (``crl_status``), for the alert that comes before the broker
    #: refuses every agent. Read at every interval (it is re-signed in place), so a
    #: missing file is reported then, not refused at start.
    crl_file: Path | None = None


class FleetConfig(_Section):
    schema_version: Literal[1]
    mqtt: MqttSettings
    influxdb: InfluxSettings = Field(default_factory=InfluxSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    status: StatusSettings = Field(default_factory=StatusSettings)


def load_fleet_config(path: Path | None) -> FleetConfig:
    """Load the config named on the command line, in $VIGIE_FLEET_CONFIG, or ./fleet.yaml."""
    if path is None:
        path = Path(os.environ.get(CONFIG_ENV, "fleet.yaml"))
        if not path.exists():
            raise DocumentError(
                f"{path}: no fleet configuration (give --config or set {CONFIG_ENV})"
            )
    return load_yaml_document(path, FleetConfig)
