"""Device profiles: how to find an instrument, talk to it, and decode what it sends.

One YAML file per instrument kind in ``device_profiles/``; the file's stem is the
profile's name. Adding an instrument of a known kind is a new file here, never code.
Profiles are validated once, when loaded: unknown fields, unknown decoders and
characteristics that the BLE section does not subscribe to are refused with the file
and the field named.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from edge_agent.instruments.decoders.gatt import short_uuid
from edge_agent.instruments.decoders.registry import FORMATS, framer_for
from vigie_core.contract.data import ReadingKind
from vigie_core.contract.identifiers import Identifier
from vigie_core.documents import load_yaml_document
from vigie_core.errors import DocumentError

#: The profiles shipped as package data (``device_profiles/``); a deployment may set
#: ``profiles_dir`` to a folder of its own.
DEFAULT_PROFILES_DIR: Final = Path(str(resources.files("device_profiles")))

_MAC_RE: Final = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_HEX_RE: Final = re.compile(r"^([0-9a-f]{2})+$")


def _uuid(value: str) -> str:
    try:
        return short_uuid(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a Bluetooth SIG UUID") from exc


def _mac(value: str) -> str:
    if not _MAC_RE.match(value.upper()):
        raise ValueError(f"{value!r} is not a Bluetooth address like AA:BB:CC:DD:EE:FF")
    return value.upper()


def _hex(value: str) -> str:
    cleaned = value.replace(" ", "").lower()
    if not _HEX_RE.match(cleaned):
        raise ValueError(f"{value!r} is not an even number of hex digits")
    return cleaned


def _known_format(value: str) -> str:
    if value not in FORMATS:
        raise ValueError(f"unknown decoder {value!r}; `edge-agent decode --list` shows them")
    return value


Uuid = Annotated[str, AfterValidator(_uuid)]
MacAddress = Annotated[str, AfterValidator(_mac)]
HexBytes = Annotated[str, AfterValidator(_hex)]
DecoderName = Annotated[str, AfterValidator(_known_format)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BleMatch(_Strict):
    """How discovery recognises the device; every criterion given must match."""

    service_uuids: list[Uuid] = Field(default_factory=list)
    name_prefix: str | None = Field(default=None, min_length=1, max_length=64)
    address: MacAddress | None = None

    @model_validator(mode="after")
    def _something_to_match(self) -> BleMatch:
        if not (self.service_uuids or self.name_prefix or self.address):
            raise ValueError("give at least one of service_uuids, name_prefix, address")
        return self


class BleCharacteristic(_Strict):
    """A characteristic to read once after connecting, or to subscribe to."""

    characteristic: Uuid
    #: The decoder for its values; by default the one named after the characteristic.
    decoder: DecoderName | None = None
    #: Many devices lack some characteristics of a service (Intermediate Cuff
    #: Pressure, Device Information): a missing optional one is skipped, a missing
    #: required one is an error that needs a human (wrong profile for the device).
    optional: bool = False

    @property
    def format_name(self) -> str:
        return self.decoder or self.characteristic


class BleWrite(_Strict):
    """A value written after subscribing: set the device clock, ask for stored records.

    ``value`` is computed when written (``current_time``, ``date_time``: the agent's
    clock in the site's time zone; ``racp_all_records``: Record Access Control Point
    "report all stored records"), ``hex`` is sent as is.
    """

    characteristic: Uuid
    value: Literal["current_time", "date_time", "racp_all_records"] | None = None
    hex: HexBytes | None = None
    #: Write with response (an ATT Write Request) rather than a Write Command.
    response: bool = True
    #: A device that refuses this write (many never had their clock settable) is
    #: still read; set false for writes without which the device sends nothing.
    optional: bool = True

    @model_validator(mode="after")
    def _one_value(self) -> BleWrite:
        if (self.value is None) == (self.hex is None):
            raise ValueError("give exactly one of value, hex")
        return self


class BleSettings(_Strict):
    match: BleMatch
    #: Bond before subscribing (devices whose health characteristics need encryption).
    pair: bool = False
    scan_timeout_s: float = Field(default=10.0, gt=0, le=300)
    connect_timeout_s: float = Field(default=20.0, gt=0, le=300)
    read: list[BleCharacteristic] = Field(default_factory=list, max_length=16)
    subscribe: list[BleCharacteristic] = Field(min_length=1, max_length=16)
    write: list[BleWrite] = Field(default_factory=list, max_length=8)
    #: The device sends what it measured (or stored) and disconnects by itself: the
    #: usual way of BLE blood-pressure monitors and scales. Not a fault.
    disconnects_after_transfer: bool = False


SerialParity = Literal["none", "even", "odd", "mark", "space"]
BAUD_RATES: Final = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


class SerialWrite(_Strict):
    """Bytes sent after opening the port (a request for data), ``text`` or ``hex``."""

    text: str | None = Field(default=None, max_length=200)
    hex: HexBytes | None = None

    @model_validator(mode="after")
    def _one_value(self) -> SerialWrite:
        if (self.text is None) == (self.hex is None):
            raise ValueError("give exactly one of text, hex")
        return self

    def payload(self) -> bytes:
        if self.text is not None:
            return self.text.encode("ascii", errors="strict")
        return bytes.fromhex(self.hex or "")


class SerialSettings(_Strict):
    #: The usual port; an agent config's ``address`` overrides it. Prefer the stable
    #: ``/dev/serial/by-id/...`` names over ``/dev/ttyUSB0``, which move on replug.
    port: str | None = None
    baudrate: int = 9600
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: SerialParity = "none"
    stopbits: float = 1
    decoder: DecoderName
    write: list[SerialWrite] = Field(default_factory=list, max_length=8)
    #: No byte for this long while the port is open: the instrument is reported
    #: silent (disconnected), the port is kept open.
    silence_timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _standard_baud(self) -> SerialSettings:
        if self.baudrate not in BAUD_RATES:
            rates = ", ".join(map(str, BAUD_RATES))
            raise ValueError(f"baudrate {self.baudrate} is not one of {rates}")
        if self.stopbits not in (1, 1.5, 2):
            raise ValueError(f"stopbits {self.stopbits:g} is not 1, 1.5 or 2")
        if framer_for(self.decoder) is None:
            raise ValueError(f"decoder {self.decoder!r} is not a serial format")
        return self


class DeviceProfile(_Strict):
    schema_version: Literal[1]
    name: Identifier
    title: str = Field(min_length=1, max_length=200)
    kind: ReadingKind
    transport: Literal["ble", "serial"]
    ble: BleSettings | None = None
    serial: SerialSettings | None = None

    @model_validator(mode="after")
    def _transport_section(self) -> DeviceProfile:
        sections = {"ble": self.ble, "serial": self.serial}
        if sections[self.transport] is None:
            raise ValueError(f"transport {self.transport!r} needs a {self.transport!r} section")
        other = "serial" if self.transport == "ble" else "ble"
        if sections[other] is not None:
            raise ValueError(f"transport {self.transport!r} takes no {other!r} section")
        return self

    @property
    def decoders(self) -> list[str]:
        if self.ble is not None:
            return [item.format_name for item in (*self.ble.read, *self.ble.subscribe)]
        assert self.serial is not None  # noqa: S101 - the validator guarantees it
        return [self.serial.decoder]


def load_profile(path: Path) -> DeviceProfile:
    """Load one profile; raises DocumentError naming the file and the field."""
    profile = load_yaml_document(path, DeviceProfile)
    if profile.name != path.stem:
        raise DocumentError(f"{path}: name: {profile.name!r} differs from the file name")
    return profile


def load_profiles(directory: Path) -> dict[str, DeviceProfile]:
    """Every ``*.yaml`` profile in ``directory``, by name."""
    if not directory.is_dir():
        raise DocumentError(f"{directory}: no such profiles folder")
    return {
        profile.name: profile
        for profile in (load_profile(path) for path in sorted(directory.glob("*.yaml")))
    }
