"""InfluxDB line protocol, encoded by hand.

Written here rather than taken from influxdb-client because that library speaks only
the v2 API, which the 1.x server does not serve; the encoding itself is small and is
the part that must be exactly right, since tag values come from devices and the
network. Escaping follows the InfluxDB 1.x line protocol reference:

- measurement: escape comma and space;
- tag keys, tag values, field keys: escape comma, equals sign and space;
- string field values: double-quoted, escape double quote and backslash;
- a newline ends a point, so it may appear in none of them unquoted.

InfluxDB 1.x keeps a backslash in a name or tag literally (it does not unescape
``\\``), so a name that ends with a backslash, or has one right before a comma, an
equals sign or a space, cannot be written faithfully: such names are refused rather
than stored altered. The fleet's own tags are identifiers and never hit this.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fleet.errors import LineProtocolError

FieldValue = float | int | bool | str

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_AMBIGUOUS_BACKSLASH = re.compile(r"\\($|[, =])")
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": "\\\\"})


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point: a measurement, tags, fields and a time in nanoseconds."""

    measurement: str
    fields: Mapping[str, FieldValue]
    time_ns: int
    tags: Mapping[str, str] = field(default_factory=dict)


def _no_newline(text: str, what: str) -> str:
    if "\n" in text or "\r" in text:
        raise LineProtocolError(f"{what} {text[:40]!r} contains a line break")
    if not text:
        raise LineProtocolError(f"empty {what}")
    if _AMBIGUOUS_BACKSLASH.search(text):
        raise LineProtocolError(f"{what} {text[:40]!r} has a backslash InfluxDB 1.x would misread")
    return text


#: Names already checked and escaped: measurements, tag keys, field keys and tag values
#: repeat from point to point (the contract's field names, the fleet's agent ids), and
#: checking and escaping them again was two thirds of the encoding's time. Bounded:
#: cleared when full (10,000 agents with their devices fit several times over).
_CACHE_MAX = 200_000
_measurements: dict[str, str] = {}
_names: dict[str, str] = {}


def _measurement(text: str) -> str:
    escaped = _measurements.get(text)
    if escaped is None:
        escaped = _no_newline(text, "measurement").translate(_MEASUREMENT_ESCAPES)
        if len(_measurements) >= _CACHE_MAX:
            _measurements.clear()
        _measurements[text] = escaped
    return escaped


def _name(text: str, what: str) -> str:
    """A tag key, tag value or field key, checked and escaped (they escape alike)."""
    escaped = _names.get(text)
    if escaped is None:
        escaped = _no_newline(text, what).translate(_KEY_ESCAPES)
        if len(_names) >= _CACHE_MAX:
            _names.clear()
        _names[text] = escaped
    return escaped


def _field_value(value: FieldValue) -> str:
    # Exact types first (the hot path); bool before int, since bool is an int.
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise LineProtocolError(f"field value {value} is not finite")
        return repr(value)  # shortest text that round-trips the float exactly
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return f"{value}i"
    if kind is str:
        # String fields may hold newlines: they are quoted, and the 1.x parser accepts them.
        if '"' in value or "\\" in value:  # type: ignore[operator]
            return '"' + value.translate(_STRING_ESCAPES) + '"'  # type: ignore[union-attr]
        return f'"{value}"'
    return _field_value_of_subclass(value)


def _field_value_of_subclass(value: FieldValue) -> str:
    """An enum member or another subclass of the four types, as its base type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{int(value)}i"
    if isinstance(value, float):
        return _field_value(float(value))
    return _field_value(str.__str__(value))


def encode_point(point: Point) -> str:
    """One point as a line (without the trailing newline)."""
    if not point.fields:
        raise LineProtocolError(f"point in {point.measurement!r} has no fields")
    names = _names
    parts = [_measurement(point.measurement)]
    # Tags sorted by key: the order InfluxDB stores them in, cheaper for it to index.
    tags = point.tags
    for key in sorted(tags) if len(tags) > 1 else tags:
        value = tags[key]
        if value == "":
            continue  # an empty tag value means "no tag" to InfluxDB
        parts.append(
            f",{names.get(key) or _name(key, 'tag key')}"
            f"={names.get(value) or _name(value, 'tag value')}"
        )
    separator = " "
    for key, item in point.fields.items():
        # A finite float, inline (most fields are); everything else by _field_value.
        text = repr(item) if type(item) is float and item - item == 0 else _field_value(item)
        parts.append(f"{separator}{names.get(key) or _name(key, 'field key')}={text}")
        separator = ","
    parts.append(f" {point.time_ns}")
    return "".join(parts)


def encode_batch(points: Iterable[Point]) -> bytes:
    """Points as a request body for ``/write?precision=ns``."""
    return "".join(encode_point(point) + "\n" for point in points).encode()


def measurement_of(line: bytes) -> str:
    """The measurement a line writes to, to say which one a refused point was for.
    The fleet's measurement names never need escaping (``points.SCHEMA``)."""
    return line.split(b" ", 1)[0].split(b",", 1)[0].decode(errors="replace")
