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


def _field_value(value: FieldValue) -> str:
    # bool before int: bool is a subclass of int in Python.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"field value {value} is not finite")
        return repr(value)  # shortest text that round-trips the float exactly
    # String fields may hold newlines: they are quoted, and the 1.x parser accepts them.
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def encode_point(point: Point) -> str:
    """One point as a line (without the trailing newline)."""
    if not point.fields:
        raise LineProtocolError(f"point in {point.measurement!r} has no fields")
    head = _no_newline(point.measurement, "measurement").translate(_MEASUREMENT_ESCAPES)
    # Tags sorted by key: the order InfluxDB stores them in, cheaper for it to index.
    for key, value in sorted(point.tags.items()):
        if value == "":
            continue  # an empty tag value means "no tag" to InfluxDB
        head += (
            ","
            + _no_newline(key, "tag key").translate(_KEY_ESCAPES)
            + "="
            + _no_newline(value, "tag value").translate(_KEY_ESCAPES)
        )
    fields = ",".join(
        _no_newline(key, "field key").translate(_KEY_ESCAPES) + "=" + _field_value(value)
        for key, value in point.fields.items()
    )
    return f"{head} {fields} {point.time_ns}"


def encode_batch(points: Iterable[Point]) -> bytes:
    """Points as a request body for ``/write?precision=ns``."""
    return "".join(encode_point(point) + "\n" for point in points).encode()


def measurement_of(line: bytes) -> str:
    """The measurement a line writes to, to say which one a refused point was for.
    The fleet's measurement names never need escaping (``points.SCHEMA``)."""
    return line.split(b" ", 1)[0].split(b",", 1)[0].decode(errors="replace")
