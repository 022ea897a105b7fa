"""The agent's configuration, validated once at the edge of the program."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from edge_agent.instruments.profiles import DEFAULT_PROFILES_DIR, DeviceProfile, load_profiles
from edge_agent.instruments.simulation.devices import encodable
from edge_agent.storage.space import MIB, MIN_BUDGET_BYTES
from vigie_core.addresses import HostName
from vigie_core.contract.data import ReadingKind
from vigie_core.contract.identifiers import DEFAULT_PREFIX, AgentKind, Identifier, TopicPrefix
from vigie_core.contract.presence import DeviceInfo, OpeningHours
from vigie_core.documents import load_yaml_document
from vigie_core.errors import DocumentError, TlsError
from vigie_core.paths import ExistingDir, ReleasePublicKeyFile, WatchedFile, WritableDir
from vigie_core.tls import BrokerCredentials, check_identity


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(_Section):
    id: Identifier
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class BrokerConfig(_Section):
    host: HostName = "127.0.0.1"
    port: int = Field(default=8883, ge=1, le=65535)
    #: TLS and this agent's identity (its certificate from ``fleet agent enroll``).
    tls: BrokerCredentials | None = None
    #: Plain MQTT, no identity: only for a lab network, never with health data.
    allow_plaintext: bool = False
    topic_prefix: TopicPrefix = DEFAULT_PREFIX
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    #: How long a publish may wait for its PUBACK before the connection is rebuilt.
    ack_timeout_s: float = Field(default=20.0, gt=0)
    #: MQTT messages awaiting their PUBACK at once.
    publish_window: int = Field(default=20, ge=1, le=1000)
    reconnect_initial_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _secure_by_default(self) -> BrokerConfig:
        if self.tls is None and not self.allow_plaintext:
            raise ValueError(
                "broker.tls is required (ca_file, cert_file, key_file from 'fleet agent "
                "enroll'); set broker.allow_plaintext: true only on a lab network"
            )
        return self


class DeviceConfig(_Section):
    id: Identifier
    kind: ReadingKind
    model: Annotated[str, StringConstraints(max_length=100)] = "simulated"
    #: ``ble`` and ``serial`` read a real instrument described by ``profile``;
    #: ``simulated`` makes up readings, through the profile's real decoder when a
    #: profile is named (the simulator then produces the device's bytes).
    source: Literal["simulated", "ble", "serial"] = "simulated"
    #: A file name stem in the profiles folder (``sig_blood_pressure``).
    profile: Identifier | None = None
    #: BLE address or serial port; overrides the profile's discovery or port.
    address: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    #: Seconds between simulated readings (real instruments send when they measure).
    interval_s: float = Field(default=60.0, gt=0)
    #: When the instrument's calibration (metrological check) is due; the health
    #: report counts down to it.
    calibration_due: date | None = None
    enabled: bool = True
    #: Thresholds (the fleet may change them): a ``battery_low`` event when the
    #: instrument's battery falls to this level, a ``calibration_due`` event this many
    #: days before its calibration date (and again once overdue).
    battery_low_percent: int = Field(default=20, ge=0, le=100)
    calibration_warning_days: int = Field(default=30, ge=0, le=366)

    @model_validator(mode="after")
    def _real_needs_profile(self) -> DeviceConfig:
        if self.source != "simulated" and self.profile is None:
            raise ValueError(f"a {self.source} instrument needs a profile")
        return self

    def info(self) -> DeviceInfo:
        return DeviceInfo(id=self.id, kind=self.kind, model=self.model)


class OutboxConfig(_Section):
    """Where messages wait for the fleet, and how much of the disk they may take
    (``edge_agent/storage/space.py``)."""

    #: FULL: each reading is on disk before it counts as taken (survives power loss);
    #: NORMAL: faster, may lose the last transactions on power loss but never corrupts.
    synchronous: Literal["full", "normal"] = "full"
    #: What the outbox may occupy on disk, all its files counted; past it, health
    #: reports are thinned first, then the oldest readings dropped (and the drops
    #: reported).
    max_bytes: int = Field(default=256 * MIB, ge=MIN_BUDGET_BYTES)
    #: The disk's last bytes, left to the system and the booth's other software: the
    #: outbox does not grow into them (older messages make way for new ones instead).
    min_free_bytes: int = Field(default=64 * MIB, ge=0)
    #: Below this much free space the health report says the disk is low, and a
    #: ``disk_low`` event is recorded: before anything is dropped.
    warn_free_bytes: int = Field(default=1024 * MIB, ge=0)
    #: Messages kept in memory when the disk has no room at all (same policy).
    memory_max_bytes: int = Field(default=16 * MIB, ge=64 * 1024, le=1024 * MIB)

    @model_validator(mode="after")
    def _warn_before_full(self) -> OutboxConfig:
        if self.warn_free_bytes < self.min_free_bytes:
            raise ValueError(
                "warn_free_bytes must be at least min_free_bytes: the warning comes "
                "before the outbox starts dropping"
            )
        return self


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


class UpdateSettings(_Section):
    """Signed updates into A/B slots (``edge_agent/updates/slots.py``); the launcher runs the
    agent from ``root``."""

    root: WritableDir
    #: ``release.pub`` from ``fleet keys generate``: the only key releases may carry.
    public_key_file: ReleasePublicKeyFile
    #: How long a new release has to prove itself (connected, instruments answering).
    health_timeout_s: float = Field(default=300.0, gt=0)
    #: How often the restart window (opening hours, consultation, parked) is checked.
    check_interval_s: float = Field(default=30.0, gt=0)
    #: A bus counts as parked when its GPS has shown no movement for this long.
    parked_after_s: float = Field(default=300.0, ge=0)


class AgentConfig(_Section):
    schema_version: Literal[1]
    agent_id: Identifier
    site: SiteConfig
    kind: AgentKind
    #: Labels for targeting from the fleet (``sarthe``, ``pilot``), lower-case words.
    tags: list[Identifier] = Field(default_factory=list, max_length=16)
    #: Default: open around the clock, so that an offline agent shows as offline, never
    #: as "closed", until someone enters the real hours.
    opening_hours: OpeningHours = Field(default_factory=OpeningHours.always)
    broker: BrokerConfig
    #: Created if need be (the outbox, the saved desired configuration).
    state_dir: WritableDir
    health_interval_s: float = Field(default=60.0, gt=0)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    devices: list[DeviceConfig] = Field(default_factory=list, max_length=64)
    #: Where the device profiles are; by default the source checkout's
    #: ``device_profiles/`` (deployments install them in /etc/vigie/device_profiles).
    profiles_dir: ExistingDir = DEFAULT_PROFILES_DIR
    #: A file the booth's teleconsultation software writes while a consultation is in
    #: progress, holding the consultation's opaque id (see edge_agent/consultation.py).
    consultation_file: WatchedFile | None = None
    #: Signed updates; None: this agent is updated by the deployment only.
    updates: UpdateSettings | None = None

    @model_validator(mode="after")
    def _unique_devices(self) -> AgentConfig:
        ids = [device.id for device in self.devices]
        duplicates = sorted({device_id for device_id in ids if ids.count(device_id) > 1})
        if duplicates:
            raise ValueError(f"device ids must be unique, repeated: {', '.join(duplicates)}")
        return self

    @property
    def enabled_devices(self) -> list[DeviceConfig]:
        return [device for device in self.devices if device.enabled]


def load_agent_config(path: Path) -> AgentConfig:
    """Load and validate an agent config file, and the device profiles it names.

    Raises DocumentError naming the file and the field.
    """
    config = load_yaml_document(path, AgentConfig)
    _check_identity(config, path)
    device_profiles(config, path)
    return config


def _check_identity(config: AgentConfig, source: Path) -> None:
    """A certificate (or user name) for another agent is a mistake in this file: the
    broker would refuse everything this agent publishes."""
    credentials = config.broker.tls
    if credentials is None:
        return
    field = "cert_file" if credentials.cert_file is not None else "username"
    try:
        check_identity(credentials, config.agent_id)
    except TlsError as exc:
        raise DocumentError(f"{source}: broker.tls.{field}: {exc}", source=str(source)) from None


def device_profiles(config: AgentConfig, source: Path | str = "config") -> dict[str, DeviceProfile]:
    """The profile of each enabled device that names one, by device id.

    Raises DocumentError for a profile that does not exist, is invalid, measures
    another kind than the device, or uses another transport.
    """
    devices = [device for device in config.enabled_devices if device.profile is not None]
    if not devices:
        return {}
    profiles = load_profiles(config.profiles_dir)
    found: dict[str, DeviceProfile] = {}
    for device in devices:
        where = f"{source}: devices.{config.devices.index(device)}.profile"
        profile = profiles.get(device.profile or "")
        if profile is None:
            raise DocumentError(f"{where}: no profile {device.profile!r} in {config.profiles_dir}")
        if profile.kind != device.kind:
            raise DocumentError(
                f"{where}: {profile.name!r} measures {profile.kind}, not {device.kind}"
            )
        if device.source not in ("simulated", profile.transport):
            raise DocumentError(
                f"{where}: {profile.name!r} is a {profile.transport} profile, not {device.source}"
            )
        if device.source == "simulated" and not encodable(profile):
            raise DocumentError(f"{where}: no simulated device speaks {profile.name!r}")
        if device.source == "serial" and not (device.address or _serial_port(profile)):
            raise DocumentError(f"{where}: {profile.name!r} names no port; give an address")
        found[device.id] = profile
    return found


def _serial_port(profile: DeviceProfile) -> str | None:
    return None if profile.serial is None else profile.serial.port
