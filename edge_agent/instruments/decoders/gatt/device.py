"""Battery Level (0x2A19, GSS 3.27) and the Device Information Service (0x180A)
strings (GSS 3.146 Manufacturer Name, 3.153 Model Number, 3.196 Serial Number,
3.115 Hardware, 3.95 Firmware and 3.212 Software Revision)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from edge_agent.instruments.decoders.base import Record
from edge_agent.instruments.decoders.gatt.reader import Reader

#: Short UUID -> the characteristic's snake_case name.
DEVICE_INFORMATION_STRINGS: Final = {
    "2a29": "manufacturer_name",
    "2a24": "model_number",
    "2a25": "serial_number",
    "2a27": "hardware_revision",
    "2a26": "firmware_revision",
    "2a28": "software_revision",
}


@dataclass(frozen=True, slots=True)
class BatteryLevel(Record):
    battery_level: int


@dataclass(frozen=True, slots=True)
class DeviceInformationString(Record):
    characteristic: str
    value: str


def decode_battery_level(data: bytes) -> BatteryLevel:
    reader = Reader("2a19", data)
    level = reader.uint(1, "battery_level")
    reader.finish()
    if level > 100:
        raise reader.error(f"battery_level {level} above 100 %")
    return BatteryLevel(level)


def string_decoder(uuid: str) -> Callable[[bytes], DeviceInformationString]:
    """A decoder for one Device Information string characteristic."""
    name = DEVICE_INFORMATION_STRINGS[uuid]

    def decode(data: bytes) -> DeviceInformationString:
        reader = Reader(uuid, data)
        try:
            # GSS: a UTF-8 string; some devices pad with NULs, which mean nothing.
            text = data.rstrip(b"\x00").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise reader.error(f"{name} is not UTF-8 (byte {exc.start})") from None
        if any(ord(char) < 0x20 for char in text):
            raise reader.error(f"{name} contains control characters")
        return DeviceInformationString(name, text.strip())

    return decode
