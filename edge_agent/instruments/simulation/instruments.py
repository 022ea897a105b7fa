"""Simulated instruments, one per reading kind. Pure: no I/O, no clock, no global RNG.

Each booth serves many patients, so every sample is a different person; failure
modes that real devices have (a cuff error, a finger off the oximeter probe) appear
at a configurable rate as null values with their reason, never as made-up numbers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from vigie_core.contract.data import ReadingKind


@dataclass(frozen=True, slots=True)
class SimulatedValues:
    """What goes into a Reading's ``values``, ``units`` and ``invalid``."""

    values: dict[str, float | None]
    units: dict[str, str]
    invalid: dict[str, str] = field(default_factory=dict)


class SimulatedInstrument(Protocol):
    @property
    def kind(self) -> ReadingKind: ...

    def sample(self, rng: random.Random, elapsed_s: float) -> SimulatedValues: ...


def _clip(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


@dataclass(frozen=True)
class BloodPressureMonitor:
    failure_rate: float = 0.01
    kind: ReadingKind = ReadingKind.BLOOD_PRESSURE

    def sample(self, rng: random.Random, elapsed_s: float) -> SimulatedValues:
        pulse = float(round(_clip(rng.gauss(74, 11), 50, 110)))
        units = {"pulse_rate": "/min"}
        if rng.random() < self.failure_rate:
            pressures = ("systolic", "diastolic", "mean_arterial_pressure")
            return SimulatedValues(
                {**dict.fromkeys(pressures), "pulse_rate": pulse},
                units,
                dict.fromkeys(pressures, "cuff_error"),
            )
        systolic = round(_clip(rng.gauss(128, 15), 85, 200))
        diastolic = round(_clip(systolic * 0.62 + rng.gauss(0, 5), 50, min(120, systolic - 15)))
        mean = round(diastolic + (systolic - diastolic) / 3, 1)
        return SimulatedValues(
            {
                "systolic": float(systolic),
                "diastolic": float(diastolic),
                "mean_arterial_pressure": mean,
                "pulse_rate": pulse,
            },
            {
                **units,
                "systolic": "mm[Hg]",
                "diastolic": "mm[Hg]",
                "mean_arterial_pressure": "mm[Hg]",
            },
        )


@dataclass(frozen=True)
class Thermometer:
    fever_rate: float = 0.05
    kind: ReadingKind = ReadingKind.BODY_TEMPERATURE

    def sample(self, rng: random.Random, elapsed_s: float) -> SimulatedValues:
        if rng.random() < self.fever_rate:
            value = rng.uniform(38.0, 39.8)
        else:
            value = _clip(rng.gauss(36.9, 0.35), 35.5, 37.9)
        return SimulatedValues({"temperature": round(value, 1)}, {"temperature": "Cel"})


@dataclass(frozen=True)
class Scale:
    kind: ReadingKind = ReadingKind.BODY_WEIGHT

    def sample(self, rng: random.Random, elapsed_s: float) -> SimulatedValues:
        return SimulatedValues({"weight": round(rng.uniform(45, 130), 1)}, {"weight": "kg"})


@dataclass(frozen=True)
class PulseOximeter:
    failure_rate: float = 0.02
    kind: ReadingKind = ReadingKind.PULSE_OXIMETRY

    def sample(self, rng: random.Random, elapsed_s: float) -> SimulatedValues:
        pulse = float(round(_clip(rng.gauss(76, 12), 50, 110)))
        units = {"pulse_rate": "/min"}
        if rng.random() < self.failure_rate:
            return SimulatedValues(
                {"spo2": None, "pulse_rate": pulse}, units, {"spo2": "no_finger"}
            )
        spo2 = float(round(_clip(rng.gauss(97.5, 1.2), 92, 100)))
        return SimulatedValues({"spo2": spo2, "pulse_rate": pulse}, {**units, "spo2": "%"})


@dataclass(frozen=True)
class GlucoseMeter:
    """Capillary glucose of people who are mostly not diabetic, some who are."""

    kind: ReadingKind = ReadingKind.BLOOD_GLUCOSE

    def sample(self, rng: random.Random, elapsed_s: float) -> SimulatedValues:
        mean = 160 if rng.random() < 0.15 else 95
        value = float(round(_clip(rng.gauss(mean, 18), 45, 400)))
        return SimulatedValues({"glucose_concentration": value}, {"glucose_concentration": "mg/dL"})


@dataclass(frozen=True)
class BodyCompositionAnalyser:
    """A bioimpedance analyser: the figures follow from weight, height and fat."""

    kind: ReadingKind = ReadingKind.BODY_COMPOSITION

    def sample(self, rng: random.Random, elapsed_s: float) -> SimulatedValues:
        height_cm = round(_clip(rng.gauss(170, 9), 145, 200))
        weight = round(_clip(rng.gauss(74, 14), 42, 150), 1)
        fat_percent = round(_clip(rng.gauss(27, 7), 8, 50), 1)
        fat_mass = round(weight * fat_percent / 100, 1)
        fat_free = round(weight - fat_mass, 1)
        return SimulatedValues(
            {
                "weight": weight,
                "height": float(height_cm),
                "bmi": round(weight / (height_cm / 100) ** 2, 1),
                "body_fat_percentage": fat_percent,
                "fat_mass": fat_mass,
                "fat_free_mass": fat_free,
                "total_body_water": round(fat_free * 0.73, 1),
                "basal_metabolic_rate": float(round(4.184 * (370 + 21.6 * fat_free))),
                "impedance": float(round(_clip(rng.gauss(520, 60), 300, 800))),
            },
            {
                "weight": "kg",
                "height": "cm",
                "bmi": "kg/m2",
                "body_fat_percentage": "%",
                "fat_mass": "kg",
                "fat_free_mass": "kg",
                "total_body_water": "kg",
                "basal_metabolic_rate": "kJ",
                "impedance": "Ohm",
            },
        )


#: The health bus's tour: eight towns of the Sarthe department, (latitude, longitude).
DEFAULT_BUS_ROUTE: Final[tuple[tuple[float, float], ...]] = (
    (48.1867, 0.6539),  # La Ferté-Bernard
    (47.9214, 0.7458),  # Saint-Calais
    (47.6947, 0.4111),  # Château-du-Loir (Montval-sur-Loir)
    (47.6997, -0.0761),  # La Flèche
    (47.8400, -0.3336),  # Sablé-sur-Sarthe
    (47.9958, -0.1550),  # Loué
    (48.2036, -0.1267),  # Sillé-le-Guillaume
    (48.3494, 0.3711),  # Mamers
)
_EARTH_RADIUS_KM: Final = 6371.0


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (latitude, longitude) points in degrees."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * _EARTH_RADIUS_KM * math.asin(math.sqrt(h))


@dataclass(frozen=True)
class GpsReceiver:
    """A bus touring ``route`` in a loop: it stops ``stop_s`` at each town, then drives."""

    route: Sequence[tuple[float, float]] = DEFAULT_BUS_ROUTE
    speed_kmh: float = 50.0
    stop_s: float = 600.0
    kind: ReadingKind = ReadingKind.POSITION

    def _legs(self) -> list[float]:
        """Driving time in seconds from each town to the next (wrapping around)."""
        towns = list(self.route)
        return [
            haversine_km(a, b) / self.speed_kmh * 3600
            for a, b in zip(towns, towns[1:] + towns[:1], strict=True)
        ]

    def position(self, elapsed_s: float) -> tuple[float, float, bool]:
        """(latitude, longitude, moving) ``elapsed_s`` after arriving at the first town."""
        legs = self._legs()
        t = elapsed_s % (sum(legs) + self.stop_s * len(legs))
        for index, drive in enumerate(legs):
            if t < self.stop_s:
                lat, lon = self.route[index]
                return lat, lon, False
            t -= self.stop_s
            if t < drive:
                (lat1, lon1), (lat2, lon2) = self.route[index], self.route[(index + 1) % len(legs)]
                f = t / drive
                return lat1 + (lat2 - lat1) * f, lon1 + (lon2 - lon1) * f, True
            t -= drive
        lat, lon = self.route[0]  # only reached through float rounding at the very end
        return lat, lon, False

    def sample(self, rng: random.Random, elapsed_s: float) -> SimulatedValues:
        lat, lon, moving = self.position(elapsed_s)
        speed = round(_clip(rng.gauss(self.speed_kmh, 4), 0, 90), 1) if moving else 0.0
        return SimulatedValues(
            {"latitude": round(lat, 6), "longitude": round(lon, 6), "speed": speed},
            {"latitude": "deg", "longitude": "deg", "speed": "km/h"},
        )


def instrument_for(kind: ReadingKind) -> SimulatedInstrument:
    """The default simulated instrument of a kind."""
    instruments: dict[ReadingKind, SimulatedInstrument] = {
        ReadingKind.BLOOD_PRESSURE: BloodPressureMonitor(),
        ReadingKind.BODY_TEMPERATURE: Thermometer(),
        ReadingKind.BODY_WEIGHT: Scale(),
        ReadingKind.PULSE_OXIMETRY: PulseOximeter(),
        ReadingKind.BLOOD_GLUCOSE: GlucoseMeter(),
        ReadingKind.BODY_COMPOSITION: BodyCompositionAnalyser(),
        ReadingKind.POSITION: GpsReceiver(),
    }
    return instruments[kind]
