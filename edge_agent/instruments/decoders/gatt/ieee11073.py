"""IEEE 11073-20601 SFLOAT (16-bit) and FLOAT (32-bit), as the BLE health services use them.

A value is ``mantissa * 10**exponent`` with both parts in two's complement (SFLOAT:
4-bit exponent, 12-bit mantissa; FLOAT: 8-bit exponent, 24-bit mantissa). Some
mantissas are reserved for special values (IEEE 11073-20601 Annex F.6/F.7; GATT
Specification Supplement, "Medical float"): those never become numbers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import Final


class SpecialValue(enum.StrEnum):
    NAN = "nan"
    NRES = "nres"  # not at this resolution
    POSITIVE_INFINITY = "positive_infinity"
    NEGATIVE_INFINITY = "negative_infinity"
    RESERVED = "reserved"


#: Special mantissas, whatever the exponent (IEEE 11073-20601, F.6 and F.7).
SFLOAT_SPECIALS: Final = {
    0x07FF: SpecialValue.NAN,
    0x0800: SpecialValue.NRES,
    0x07FE: SpecialValue.POSITIVE_INFINITY,
    0x0802: SpecialValue.NEGATIVE_INFINITY,
    0x0801: SpecialValue.RESERVED,
}
FLOAT_SPECIALS: Final = {
    0x7FFFFF: SpecialValue.NAN,
    0x800000: SpecialValue.NRES,
    0x7FFFFE: SpecialValue.POSITIVE_INFINITY,
    0x800002: SpecialValue.NEGATIVE_INFINITY,
    0x800001: SpecialValue.RESERVED,
}


@dataclass(frozen=True, slots=True)
class Medical:
    """A decoded medical float: a number, or None with the special value it was."""

    value: float | None
    special: SpecialValue | None = None


def _signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw & (1 << (bits - 1)) else raw


def _value(mantissa: int, exponent: int) -> float:
    # Decimal keeps 366 * 10**-1 at exactly 36.6 instead of 36.600000000000001.
    return float(Decimal(mantissa).scaleb(exponent))


def sfloat(raw: int) -> Medical:
    """Decode a 16-bit SFLOAT given as an unsigned integer (little-endian already read)."""
    mantissa_raw = raw & 0x0FFF
    if mantissa_raw in SFLOAT_SPECIALS:
        return Medical(None, SFLOAT_SPECIALS[mantissa_raw])
    return Medical(_value(_signed(mantissa_raw, 12), _signed(raw >> 12, 4)))


def float32(raw: int) -> Medical:
    """Decode a 32-bit FLOAT given as an unsigned integer."""
    mantissa_raw = raw & 0xFFFFFF
    if mantissa_raw in FLOAT_SPECIALS:
        return Medical(None, FLOAT_SPECIALS[mantissa_raw])
    return Medical(_value(_signed(mantissa_raw, 24), _signed(raw >> 24, 8)))


def encode_sfloat(value: Decimal | float | SpecialValue, exponent: int = 0) -> int:
    """The SFLOAT for ``value`` at ``10**exponent`` resolution; raises ValueError when
    the mantissa does not fit (-2045..2045) or the exponent (-8..7)."""
    return _encode(value, exponent, 12, 4, {v: k for k, v in SFLOAT_SPECIALS.items()})


def encode_float(value: Decimal | float | SpecialValue, exponent: int = 0) -> int:
    """The FLOAT for ``value`` at ``10**exponent`` resolution."""
    return _encode(value, exponent, 24, 8, {v: k for k, v in FLOAT_SPECIALS.items()})


def _encode(
    value: Decimal | float | SpecialValue,
    exponent: int,
    mantissa_bits: int,
    exponent_bits: int,
    specials: dict[SpecialValue, int],
) -> int:
    if isinstance(value, SpecialValue):
        return specials[value]
    low_e, high_e = -(1 << (exponent_bits - 1)), (1 << (exponent_bits - 1)) - 1
    if not low_e <= exponent <= high_e:
        raise ValueError(f"exponent {exponent} outside {low_e}..{high_e}")
    mantissa = int(Decimal(str(value)).scaleb(-exponent).to_integral_value())
    # The top positive values and the bottom negative ones are the special mantissas.
    high_m = (1 << (mantissa_bits - 1)) - 3
    low_m = -(1 << (mantissa_bits - 1)) + 3
    if not low_m <= mantissa <= high_m:
        raise ValueError(f"{value} needs a mantissa outside {low_m}..{high_m}")
    mask = (1 << mantissa_bits) - 1
    return ((exponent & ((1 << exponent_bits) - 1)) << mantissa_bits) | (mantissa & mask)
