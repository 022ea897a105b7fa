"""Helpers shared by the health-service decoders."""

from __future__ import annotations

from edge_agent.instruments.decoders.gatt.ieee11073 import Medical


def medical_values(**fields: Medical | None) -> tuple[dict[str, float | None], dict[str, str]]:
    """Split named medical floats into values and the reasons of those that are not
    numbers (absent fields are left out of both)."""
    values: dict[str, float | None] = {}
    invalid: dict[str, str] = {}
    for name, medical in fields.items():
        if medical is None:
            continue
        values[name] = medical.value
        if medical.special is not None:
            invalid[name] = medical.special.value
    return values, invalid
