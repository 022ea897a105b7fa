"""Units as people read them on the device, for what the CLI shows.

The wire and InfluxDB keep UCUM (``Cel``, ``mm[Hg]``, ``[kn_i]``, glucose in ``kg/L``):
unambiguous for programs. A technician reads ``°C``, ``mmHg``, ``kn``, and glucose in
g/L, as French practice writes it (1.05 g/L), so values are converted for display only;
``--json`` keeps what is stored.
"""

from __future__ import annotations

from typing import Final

#: UCUM -> (what is shown, the factor from the stored value to the shown one).
DISPLAY: Final[dict[str, tuple[str, float]]] = {
    "Cel": ("°C", 1.0),
    "[degF]": ("°F", 1.0),
    "mm[Hg]": ("mmHg", 1.0),
    "kPa": ("kPa", 1.0),
    "/min": ("/min", 1.0),
    "kg": ("kg", 1.0),
    "[lb_av]": ("lb", 1.0),
    "m": ("m", 1.0),
    "cm": ("cm", 1.0),
    "[in_i]": ("in", 1.0),
    "kg/m2": ("kg/m²", 1.0),
    "kJ": ("kJ", 1.0),
    "kcal": ("kcal", 1.0),
    "Ohm": ("Ω", 1.0),
    "%": ("%", 1.0),
    # Glucose: g/L, as in French practice; mmol/L where the meter counts in moles.
    "kg/L": ("g/L", 1000.0),
    "mg/dL": ("g/L", 0.01),
    "mol/L": ("mmol/L", 1000.0),
    "mmol/L": ("mmol/L", 1.0),
    "deg": ("°", 1.0),
    "km/h": ("km/h", 1.0),
    "[kn_i]": ("kn", 1.0),
    "1": ("", 1.0),
}


def shown(value: float, unit: str) -> str:
    """``37.2 °C``, ``1.05 g/L``: the value in the unit read on the device (an unknown
    unit is shown as stored)."""
    label, factor = DISPLAY.get(unit, (unit, 1.0))
    return f"{value * factor:.4g} {label}".rstrip()
