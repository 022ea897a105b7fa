"""What every Vigie dashboard and panel shares: the data source, the tags, units and
thresholds, the windows the queries look at, and the panel ids."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Final, Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as model

from grafana.build.influx import Query, datasource

TAGS: Final = ["vigie"]
#: Derived points (``agent_status``, ``config_status``...) are written every
#: ``status.interval_s`` (60 s by default): the latest one of each agent is inside
#: this window, and an agent the fleet stopped writing about drops out of it. A
#: dashboard's time range would keep an agent's old state on "now" panels, and drop
#: agents whose last change is older than the range.
NOW: Final = "time > now() - 5m"
#: Instruments are reported with each health report (every 60 s by default).
RECENT: Final = "time > now() - 15m"
#: The panels over derived points never ask for buckets finer than their interval.
STATUS_INTERVAL: Final = "1m"

GREEN, ORANGE, RED, BLUE, GREY = "green", "orange", "red", "blue", "text"


class PanelBuilder(Protocol):
    """What the SDK's panel builders (stat, table, timeseries, ...) have in common."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: model.DataSourceRef) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def thresholds(self, thresholds: cogbuilder.Builder[model.ThresholdsConfig]) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...
    def with_target(self, target: cogbuilder.Builder[cogvariants.Dataquery]) -> Self: ...


P = TypeVar("P", bound=PanelBuilder)


def steps(*pairs: tuple[float | None, str]) -> sdk.ThresholdsConfig:
    """Absolute thresholds: the colour from each value up (the first has none)."""
    return (
        sdk.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in pairs])
    )


def neutral(color: str = GREEN) -> sdk.ThresholdsConfig:
    """One colour: readings of patients get no thresholds (the dashboards run a fleet;
    they make no clinical judgement)."""
    return steps((None, color))


def higher_is_worse(warn: float, bad: float) -> sdk.ThresholdsConfig:
    return steps((None, GREEN), (warn, ORANGE), (bad, RED))


def lower_is_worse(bad: float, warn: float) -> sdk.ThresholdsConfig:
    """Red under ``bad``, orange under ``warn``, green from ``warn`` up."""
    return steps((None, RED), (bad, ORANGE), (warn, GREEN))


def mapping(colors: dict[str, tuple[str, str]]) -> list[model.ValueMapping]:
    """Values shown as a label in a colour: ``mapping({"online": ("online", GREEN)})``."""
    return [
        model.ValueMap(
            options={
                value: model.ValueMappingResult(text=text, color=color, index=index)
                for index, (value, (text, color)) in enumerate(colors.items())
            }
        )
    ]


#: How an agent's ``state`` shows (agent_status): offline means down, since an agent
#: offline outside its opening hours is ``closed``.
STATE_MAPPING: Final = mapping(
    {"online": ("online", GREEN), "offline": ("down", RED), "closed": ("closed", BLUE)}
)


#: Battery: under 20 % red, under 40 % orange. Calibration: overdue red, due within
#: 30 days orange (the agent's own default warning, ``calibration_warning_days``).
BATTERY: Final = lower_is_worse(20, 40)
CALIBRATION: Final = lower_is_worse(0, 30)
DEVICE_MAPPING: Final = mapping(
    {"ok": ("ok", GREEN), "disconnected": ("disconnected", RED), "error": ("error", RED)}
)


def panel(
    builder: P,
    title: str,
    description: str,
    queries: Iterable[Query],
    unit: str,
    thresholds: sdk.ThresholdsConfig,
    size: tuple[int, int],
) -> P:
    """A panel on the Vigie data source, its queries lettered A, B, ... in order."""
    width, height = size
    built = (
        builder.title(title)
        .description(description)
        .datasource(datasource())
        .unit(unit)
        .thresholds(thresholds)
        .span(width)
        .height(height)
    )
    for letter, query in zip(string.ascii_uppercase, queries, strict=False):
        built = built.with_target(query.ref_id(letter))
    return built


def cell_colors(kind: str = "color-text") -> model.DynamicConfigValue:
    """A table column coloured by its thresholds or value mappings."""
    return model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": kind})


def column_unit(unit: str) -> model.DynamicConfigValue:
    return model.DynamicConfigValue(id_val="unit", value=unit)


def column_thresholds(thresholds: sdk.ThresholdsConfig) -> model.DynamicConfigValue:
    return model.DynamicConfigValue(id_val="thresholds", value=thresholds.build())


def column_mappings(mappings: list[model.ValueMapping]) -> model.DynamicConfigValue:
    return model.DynamicConfigValue(id_val="mappings", value=mappings)


def link_to(title: str, dashboard_uid: str, variable: str) -> model.DynamicConfigValue:
    """A table cell that opens another dashboard with ``variable`` set to its value."""
    url = f"/d/{dashboard_uid}?var-{variable}=${{__value.raw}}&${{__url_time_range}}"
    return model.DynamicConfigValue(id_val="links", value=[{"title": title, "url": url}])


def transformation(kind: str, options: object | None = None) -> model.DataTransformerConfig:
    return model.DataTransformerConfig(id_val=kind, options=options or {})


#: InfluxQL returns one frame per series: a table shows them as one.
MERGE: Final = transformation("merge")
HIDE_TIME: Final = transformation("organize", {"excludeByName": {"Time": True}})


def count_by(field: str, counted: str) -> model.DataTransformerConfig:
    """Rows counted per value of a field (InfluxQL groups by tags only)."""
    return transformation(
        "groupBy",
        {
            "fields": {
                field: {"aggregations": [], "operation": "groupby"},
                counted: {"aggregations": ["count"], "operation": "aggregate"},
            }
        },
    )


def section(board: sdk.Dashboard, title: str) -> sdk.Dashboard:
    """An open row: the panels added after it follow it (they are not nested)."""
    return board.with_row(sdk.Row(title).collapsed(False))


def dashboard(uid: str, title: str, description: str, time_from: str) -> sdk.Dashboard:
    return (
        sdk.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .timezone("browser")
        .refresh("1m")
        .time(time_from, "now")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        # Provisioned from files (allowUiUpdates: false): a change is made in the code.
        .readonly()
    )


def finish(board: sdk.Dashboard) -> model.Dashboard:
    """The dashboard with its panels numbered 1, 2, ... (rows and nested panels too)."""
    built = board.build()
    number = 0
    for item in built.panels or []:
        number += 1
        item.id_val = number
        if isinstance(item, model.RowPanel):
            for nested in item.panels:
                number += 1
                nested.id_val = number
    return built


def regex_literal(text: str) -> str:
    """``text`` matched literally inside an InfluxQL ``/regex/`` (RE2)."""
    return re.escape(text).replace("/", r"\/")


def unit_is(field: str, unit: str) -> str:
    """The condition that a reading's ``units`` string (``name=unit;...``, sorted)
    gives ``unit`` for ``field``: anchored, so that ``weight`` never matches
    ``fat_free_mass`` and ``kg`` never matches ``kg/m2``."""
    return f'"units" =~ /(^|;){regex_literal(field)}={regex_literal(unit)}(;|$)/'
