"""Weight Measurement (0x2A9D): GSS 3.259; Weight Scale Service 1.0.

Weight is a uint16 at 0.005 kg (SI) or 0.01 lb (imperial); 0xFFFF means "measurement
unsuccessful". BMI is a uint16 at 0.1 kg/m2; height a uint16 at 0.001 m or 0.1 in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from edge_agent.instruments.decoders.base import PartialTime, ReadingDraft, Record
from edge_agent.instruments.decoders.gatt.bits import check_flags
from edge_agent.instruments.decoders.gatt.date_time import draft_time
from edge_agent.instruments.decoders.gatt.reader import Reader
from vigie_core.contract.data import ReadingKind

UNSUCCESSFUL: Final = 0xFFFF
UNKNOWN_USER: Final = 0xFF


@dataclass(frozen=True, slots=True)
class WeightMeasurement(Record):
    weight: float | None
    weight_unit: str
    timestamp: datetime | PartialTime | None
    user_id: int | None
    bmi: float | None
    height: float | None
    height_unit: str | None
    invalid: dict[str, str]

    def reading(self) -> ReadingDraft:
        values: dict[str, float | None] = {"weight": self.weight}
        units = {"weight": self.weight_unit}
        if self.bmi is not None and self.height is not None and self.height_unit:
            values |= {"bmi": self.bmi, "height": self.height}
            units |= {"bmi": "kg/m2", "height": self.height_unit}
        device_time, timing = draft_time(self.timestamp)
        return ReadingDraft(
            kind=ReadingKind.BODY_WEIGHT,
            values=values,
            units=units,
            invalid=self.invalid,
            device_time=device_time,
            quality=tuple(sorted(timing)),
        )


def _scaled(raw: int, step: str) -> float:
    return float(raw * Decimal(step))


def decode_weight_measurement(data: bytes) -> WeightMeasurement:
    reader = Reader("2a9d", data)
    flags = reader.uint(1, "flags")
    check_flags(flags, 4, reader)
    imperial = bool(flags & 0x01)
    raw_weight = reader.uint(2, "weight")
    timestamp = reader.date_time() if flags & 0x02 else None
    user = reader.uint(1, "user_id") if flags & 0x04 else None
    bmi = height = None
    if flags & 0x08:
        bmi = _scaled(reader.uint(2, "bmi"), "0.1")
        height = _scaled(reader.uint(2, "height"), "0.1" if imperial else "0.001")
    reader.finish()
    unsuccessful = raw_weight == UNSUCCESSFUL
    return WeightMeasurement(
        weight=None if unsuccessful else _scaled(raw_weight, "0.01" if imperial else "0.005"),
        weight_unit="[lb_av]" if imperial else "kg",
        timestamp=timestamp,
        user_id=None if user == UNKNOWN_USER else user,
        bmi=bmi,
        height=height,
        height_unit=None if height is None else ("[in_i]" if imperial else "m"),
        invalid={"weight": "measurement_unsuccessful"} if unsuccessful else {},
    )
