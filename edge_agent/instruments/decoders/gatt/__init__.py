"""Bluetooth SIG characteristics, decoded exactly as the GATT Specification
Supplement (GSS) and the health services' specifications define them."""

from __future__ import annotations

from typing import Final

from edge_agent.instruments.decoders.base import Format
from edge_agent.instruments.decoders.gatt.blood_pressure import (
    decode_blood_pressure_feature,
    decode_blood_pressure_measurement,
    decode_intermediate_cuff_pressure,
)
from edge_agent.instruments.decoders.gatt.date_time import (
    decode_current_time,
    decode_date_time,
    decode_day_date_time,
)
from edge_agent.instruments.decoders.gatt.device import (
    DEVICE_INFORMATION_STRINGS,
    decode_battery_level,
    string_decoder,
)
from edge_agent.instruments.decoders.gatt.glucose import decode_glucose_measurement, decode_racp
from edge_agent.instruments.decoders.gatt.plx import (
    decode_plx_continuous,
    decode_plx_features,
    decode_plx_spot_check,
)
from edge_agent.instruments.decoders.gatt.thermometer import (
    decode_intermediate_temperature,
    decode_temperature_measurement,
    decode_temperature_type,
)
from edge_agent.instruments.decoders.gatt.uuids import full_uuid, short_uuid
from edge_agent.instruments.decoders.gatt.weight import decode_weight_measurement

_TITLES: Final = {
    "2a29": "Manufacturer Name String",
    "2a24": "Model Number String",
    "2a25": "Serial Number String",
    "2a27": "Hardware Revision String",
    "2a26": "Firmware Revision String",
    "2a28": "Software Revision String",
}

GATT_FORMATS: Final[tuple[Format, ...]] = (
    Format("2a35", "Blood Pressure Measurement", "hex", decode_blood_pressure_measurement),
    Format("2a36", "Intermediate Cuff Pressure", "hex", decode_intermediate_cuff_pressure),
    Format("2a49", "Blood Pressure Feature", "hex", decode_blood_pressure_feature),
    Format("2a1c", "Temperature Measurement", "hex", decode_temperature_measurement),
    Format("2a1e", "Intermediate Temperature", "hex", decode_intermediate_temperature),
    Format("2a1d", "Temperature Type", "hex", decode_temperature_type),
    Format("2a9d", "Weight Measurement", "hex", decode_weight_measurement),
    Format("2a5e", "PLX Spot-Check Measurement", "hex", decode_plx_spot_check),
    Format("2a5f", "PLX Continuous Measurement", "hex", decode_plx_continuous),
    Format("2a60", "PLX Features", "hex", decode_plx_features),
    Format("2a18", "Glucose Measurement", "hex", decode_glucose_measurement),
    Format("2a52", "Record Access Control Point", "hex", decode_racp),
    Format("2a19", "Battery Level", "hex", decode_battery_level),
    Format("2a08", "Date Time", "hex", decode_date_time),
    Format("2a0a", "Day Date Time", "hex", decode_day_date_time),
    Format("2a2b", "Current Time", "hex", decode_current_time),
    *(
        Format(uuid, _TITLES[uuid], "hex", string_decoder(uuid))
        for uuid in DEVICE_INFORMATION_STRINGS
    ),
)

__all__ = ["GATT_FORMATS", "full_uuid", "short_uuid"]
