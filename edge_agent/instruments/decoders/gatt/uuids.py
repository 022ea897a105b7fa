"""Bluetooth SIG UUIDs in their short form, and the conversion from any spelling."""

from __future__ import annotations

import re
from typing import Final

#: Every 16-bit SIG UUID is this base with the short value in the first group
#: (Core Specification, Vol 3, Part B, 2.5.1).
_BASE_RE: Final = re.compile(r"^0000([0-9a-f]{4})-0000-1000-8000-00805f9b34fb$")
_SHORT_RE: Final = re.compile(r"^(?:0x)?([0-9a-f]{4})$")

# Services.
BLOOD_PRESSURE_SERVICE: Final = "1810"
HEALTH_THERMOMETER_SERVICE: Final = "1809"
WEIGHT_SCALE_SERVICE: Final = "181d"
PULSE_OXIMETER_SERVICE: Final = "1822"
GLUCOSE_SERVICE: Final = "1808"
BATTERY_SERVICE: Final = "180f"
DEVICE_INFORMATION_SERVICE: Final = "180a"
CURRENT_TIME_SERVICE: Final = "1805"


def short_uuid(uuid: str) -> str:
    """``2a35`` from ``2a35``, ``0x2A35`` or ``00002a35-0000-1000-8000-00805f9b34fb``;
    raises ValueError for anything else (a vendor's own 128-bit UUID)."""
    text = uuid.strip().lower()
    match = _SHORT_RE.match(text) or _BASE_RE.match(text)
    if match is None:
        raise ValueError(f"{uuid!r} is not a 16-bit Bluetooth SIG UUID")
    return match[1]


def full_uuid(short: str) -> str:
    """The 128-bit form bleak uses: ``00002a35-0000-1000-8000-00805f9b34fb``."""
    return f"0000{short_uuid(short)}-0000-1000-8000-00805f9b34fb"
