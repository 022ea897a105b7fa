"""Helpers for line formats: ASCII checks that raise DecodeError, never another error."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from edge_agent.errors import DecodeError


def ascii_line(format_name: str, frame: bytes) -> str:
    """The frame as text without its line terminator; refuses non-ASCII and controls."""
    try:
        text = frame.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError(format_name, "not ASCII text") from None
    text = text.rstrip("\r\n")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise DecodeError(format_name, "control characters in the line")
    if not text.strip():
        raise DecodeError(format_name, "empty line")
    return text


def number(format_name: str, field: str, text: str) -> float:
    """A decimal number field; refuses exponents, NaN and infinities."""
    cleaned = text.strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise DecodeError(format_name, f"{field}: {text!r} is not a number") from None
    if not value.is_finite() or "e" in cleaned.lower():
        raise DecodeError(format_name, f"{field}: {text!r} is not a plain decimal")
    return float(value)
