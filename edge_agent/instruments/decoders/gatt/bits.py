"""Bit fields of the SIG characteristics, decoded to names."""

from __future__ import annotations

from collections.abc import Mapping

from edge_agent.instruments.decoders.gatt.reader import Reader


def names(value: int, table: Mapping[int, str], reader: Reader, field: str) -> frozenset[str]:
    """The names of the bits set in ``value``; set bits outside ``table`` are reserved
    for future use (RFU), which the specifications require to be 0: refused."""
    known = 0
    for bit in table:
        known |= 1 << bit
    if value & ~known:
        raise reader.error(f"{field}: reserved bits 0x{value & ~known:x} set")
    return frozenset(name for bit, name in table.items() if value >> bit & 1)


def check_flags(flags: int, used_bits: int, reader: Reader) -> None:
    """Refuse flags with bits at or above ``used_bits`` (reserved for future use)."""
    reserved = flags >> used_bits
    if reserved:
        raise reader.error(f"reserved flag bits 0x{reserved << used_bits:02x} set")
