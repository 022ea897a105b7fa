"""What every payload model of the contract shares."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

SCHEMA_VERSION: Final = 1

#: The times a point can have: InfluxDB counts nanoseconds since 1970 in a signed
#: 64-bit integer (1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z),
#: here to the microsecond inside that range. Refused outside it, on both sides.
EARLIEST_STORABLE: Final = datetime(1677, 9, 21, 0, 12, 43, 145225, tzinfo=UTC)
LATEST_STORABLE: Final = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)
#: Every count on the wire fits the signed 64-bit integers InfluxDB stores.
INT64_MAX: Final = 2**63 - 1


class ContractModel(BaseModel):
    """Frozen; no field the schema does not name (an unknown field is an error, never
    silently dropped); no infinite or NaN number, which no JSON carries and InfluxDB
    cannot store."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _storable_utc(value: datetime) -> datetime:
    # astimezone() overflows for a time whose offset takes it past year 1 or 9999
    # (0001-01-01T00:00:00+14:00): an error here, never an exception for the caller.
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_STORABLE <= utc <= LATEST_STORABLE:
        raise ValueError(
            f"{value.isoformat()} is outside the times that can be stored "
            f"({EARLIEST_STORABLE:%Y-%m-%d} to {LATEST_STORABLE:%Y-%m-%d} UTC)"
        )
    return utc


def storable(value: datetime) -> bool:
    """Whether an aware time can travel in the contract (see ``EARLIEST_STORABLE``)."""
    try:
        _storable_utc(value)
    except ValueError:
        return False
    return True


def _exactly_the_integer(value: object) -> object:
    # JSON has one number type: 1.0 == 1 would pass Literal[1]; a version is 1, exactly.
    if type(value) is not int:
        raise ValueError("schema_version must be the integer 1")
    return value


#: The payload schema's version: the integer 1 (not 1.0, not "1", not true).
SchemaVersion = Annotated[Literal[1], BeforeValidator(_exactly_the_integer)]

#: An aware time, converted to UTC and within what can be stored; a naive one is
#: refused (its zone would be a guess).
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_storable_utc)]
#: A count: a sequence number, a session, a version, messages in a backlog.
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]

ShortText = Annotated[str, StringConstraints(max_length=200)]
#: A quality flag or context key: ``motion``, ``device_clock_invalid``, ``temperature_type``.
FlagName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
