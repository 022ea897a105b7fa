"""Raw InfluxQL queries of Grafana's InfluxDB data source.

The foundation SDK has models for many data sources but not for InfluxDB, so its
query is modelled here as the SDK models its own (a ``Dataquery`` with ``to_json`` and
``from_json``) and registered with the SDK's runtime: a dashboard read back with
``Dashboard.from_json`` decodes its targets with this class, which refuses what it
does not know. The keys are those of Grafana's ``InfluxQuery`` (the data source's
``types.ts``) that a raw query uses; InfluxQL mode only, never Flux (see
docs/architecture.md and the data source provisioning).
"""

from __future__ import annotations

from typing import Any, Final, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import plugins, runtime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

#: The provisioned data source (grafana/provisioning/datasources/vigie.yaml).
DATASOURCE_UID: Final = "vigie-influxdb"
DATASOURCE_TYPE: Final = "influxdb"
RESULT_FORMATS: Final = ("time_series", "table", "logs")
_KEYS: Final = frozenset(
    {
        "refId",
        "datasource",
        "rawQuery",
        "resultFormat",
        "query",
        "alias",
        "hide",
        "intervalMs",
        "maxDataPoints",
    }
)


def datasource() -> DataSourceRef:
    return DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class InfluxQuery(cogvariants.Dataquery):
    """One raw InfluxQL query (``rawQuery: true``): the query is a plain string."""

    def __init__(
        self,
        query: str = "",
        ref_id: str = "A",
        result_format: str = "time_series",
        alias: str | None = None,
        hide: bool | None = None,
        interval_ms: int | None = None,
        max_data_points: int | None = None,
    ) -> None:
        if result_format not in RESULT_FORMATS:
            raise ValueError(f"resultFormat {result_format!r} is not one of {RESULT_FORMATS}")
        self.query = query
        self.ref_id = ref_id
        self.result_format = result_format
        self.alias = alias
        self.hide = hide
        self.interval_ms = interval_ms
        self.max_data_points = max_data_points

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": datasource(),
            "rawQuery": True,
            "resultFormat": self.result_format,
            "query": self.query,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.hide is not None:
            payload["hide"] = self.hide
        if self.interval_ms is not None:
            payload["intervalMs"] = self.interval_ms
        if self.max_data_points is not None:
            payload["maxDataPoints"] = self.max_data_points
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """Strict, unlike the SDK's own models: an unknown key, a query builder's
        query (not raw InfluxQL) or another data source is an error."""
        unknown = set(data) - _KEYS
        if unknown:
            raise ValueError(f"unknown InfluxDB query keys {sorted(unknown)}")
        if data.get("rawQuery") is not True or not isinstance(data.get("query"), str):
            raise ValueError("only raw InfluxQL queries (rawQuery: true, query: str)")
        source = data.get("datasource")
        if source is not None and source != {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}:
            raise ValueError(f"unexpected data source {source!r}")
        return cls(
            query=data["query"],
            ref_id=data["refId"],
            result_format=data.get("resultFormat", "time_series"),
            alias=data.get("alias"),
            hide=data.get("hide"),
            interval_ms=data.get("intervalMs"),
            max_data_points=data.get("maxDataPoints"),
        )


class Query(cogbuilder.Builder[cogvariants.Dataquery]):
    """``Query('SELECT ...').alias('$tag_agent_id')``; panels give the refIds."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQuery(query=query)

    def build(self) -> InfluxQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def alias(self, alias: str) -> Self:
        self._internal.alias = alias
        return self

    def table(self) -> Self:
        self._internal.result_format = "table"
        return self

    def for_alerting(self) -> Self:
        """As Grafana's alert rule editor saves a query."""
        self._internal.interval_ms = 1000
        self._internal.max_data_points = 43200
        return self


def register() -> None:
    """Make the SDK's runtime decode InfluxDB targets (and every built-in plugin's)."""
    plugins.register_default_plugins()
    runtime.register_dataquery_variant(
        runtime.DataqueryConfig(identifier=DATASOURCE_TYPE, from_json_hook=InfluxQuery.from_json)
    )
