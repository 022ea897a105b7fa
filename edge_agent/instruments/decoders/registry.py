"""Every format by name: short GATT UUIDs (``2a35``) and serial format names."""

from __future__ import annotations

import contextlib
from typing import Final

from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders.base import Format, Record
from edge_agent.instruments.decoders.gatt import GATT_FORMATS, short_uuid
from edge_agent.instruments.decoders.serial import FORMAT_FRAMING, FRAMERS, SERIAL_FORMATS
from edge_agent.instruments.decoders.serial.framing import Framer

FORMATS: Final[dict[str, Format]] = {item.name: item for item in (*GATT_FORMATS, *SERIAL_FORMATS)}


def resolve(name: str) -> Format:
    """The format called ``name``: a serial format name, or a GATT characteristic UUID
    in any usual spelling (``2a35``, ``0x2A35``, ``00002a35-0000-1000-8000-00805f9b34fb``).

    Raises KeyError with a message naming what was asked for.
    """
    key = name.strip().lower()
    if key not in FORMATS:
        with contextlib.suppress(ValueError):
            key = short_uuid(key)
    if key not in FORMATS:
        raise KeyError(f"unknown format {name!r}; `edge-agent decode --list` shows them")
    return FORMATS[key]


def decode(name: str, data: bytes) -> Record:
    """Decode one frame of the format ``name``; raises KeyError or DecodeError."""
    return resolve(name).decode(data)


def framer_for(name: str) -> str | None:
    """The framing a serial format needs (``line``, ``nonin_df2``); None for GATT ones."""
    return FORMAT_FRAMING.get(name)


def new_framer(name: str) -> Framer:
    """A fresh framer for the serial format ``name``."""
    framing = framer_for(name)
    if framing is None:
        raise KeyError(f"{name!r} is not a serial format")
    return FRAMERS[framing]()


__all__ = ["FORMATS", "DecodeError", "decode", "framer_for", "new_framer", "resolve"]
