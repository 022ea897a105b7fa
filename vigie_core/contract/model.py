"""What every payload model of the contract shares."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, StringConstraints

SCHEMA_VERSION: Final = 1


class ContractModel(BaseModel):
    """Frozen, and no field the schema does not name: an unknown field is an error,
    never silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


#: An aware time, converted to UTC; a naive one is refused (its zone would be a guess).
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]

ShortText = Annotated[str, StringConstraints(max_length=200)]
#: A quality flag or context key: ``motion``, ``device_clock_invalid``, ``temperature_type``.
FlagName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
