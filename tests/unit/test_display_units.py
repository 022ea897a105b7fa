"""What technicians read: the units on the device's display, not UCUM codes."""

from __future__ import annotations

import pytest

from fleet.cli.render import format_values
from fleet.cli.units import DISPLAY, shown
from vigie_core.contract.data import READING_FIELDS


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (37.25, "Cel", "37.25 °C"),
        (128.0, "mm[Hg]", "128 mmHg"),
        (12.5, "[kn_i]", "12.5 kn"),
        (0.00105, "kg/L", "1.05 g/L"),  # a glucose meter's kg/L, as French practice reads it
        (105.0, "mg/dL", "1.05 g/L"),
        (0.0058, "mol/L", "5.8 mmol/L"),
        (24.2, "kg/m2", "24.2 kg/m²"),
        (512.0, "Ohm", "512 Ω"),
        (9.0, "1", "9"),
    ],
)
def test_values_are_shown_in_the_unit_read_on_the_device(
    value: float, unit: str, text: str
) -> None:
    assert shown(value, unit) == text


def test_every_unit_the_contract_allows_has_a_display() -> None:
    allowed = {
        unit for fields in READING_FIELDS.values() for units in fields.values() for unit in units
    }
    assert allowed <= set(DISPLAY), allowed - set(DISPLAY)


def test_a_reading_row_shows_display_units() -> None:
    row = {
        "kind": "blood_glucose",
        "glucose_concentration": 0.00098,
        "units": "glucose_concentration=kg/L",
    }
    assert format_values(row) == "glucose_concentration 0.98 g/L"
