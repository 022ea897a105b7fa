"""Booth detail: one agent's state, health, instruments, readings (in the units the
booth's staff read on the instruments) and events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as viz
from grafana_foundation_sdk.models import dashboard as model

from grafana.build.common import (
    BATTERY,
    CALIBRATION,
    DEVICE_MAPPING,
    GREY,
    HIDE_TIME,
    MERGE,
    NOW,
    RECENT,
    STATE_MAPPING,
    cell_colors,
    column_mappings,
    column_thresholds,
    column_unit,
    dashboard,
    finish,
    higher_is_worse,
    lower_is_worse,
    mapping,
    neutral,
    panel,
    section,
    unit_is,
)
from grafana.build.influx import Query, datasource

UID: Final = "vigie-booth"
AGENT: Final = '"agent_id" =~ /^$agent$/'


def variables() -> list[cogbuilder.Builder[model.VariableModel]]:
    site = (
        sdk.QueryVariable("site")
        .label("Site")
        .datasource(datasource())
        .query('SHOW TAG VALUES FROM "agent_status" WITH KEY = "site_id"')
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .include_all(True)
    )
    agent = (
        sdk.QueryVariable("agent")
        .label("Agent")
        .datasource(datasource())
        .query(
            'SHOW TAG VALUES FROM "agent_status" WITH KEY = "agent_id" WHERE "site_id" =~ /^$site$/'
        )
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )
    return [site, agent]


def status_stat(
    title: str, description: str, query: str, unit: str, colors: sdk.ThresholdsConfig
) -> stat.Panel:
    return (
        panel(stat.Panel(), title, description, [Query(query)], unit, colors, (4, 4))
        .graph_mode(viz.BigValueGraphMode.NONE)
        .color_mode(viz.BigValueColorMode.BACKGROUND)
    )


def text_stat(title: str, description: str, query: str, field: str) -> stat.Panel:
    """A stat of a text field: stat panels show numbers unless told which field, and
    only the table format names a field after its column."""
    return (
        panel(
            stat.Panel(), title, description, [Query(query).table()], "none", neutral(GREY), (4, 4)
        )
        .graph_mode(viz.BigValueGraphMode.NONE)
        .color_mode(viz.BigValueColorMode.BACKGROUND)
        .reduce_options(
            sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).fields(f"/^{field}$/")
        )
    )


def state_row() -> list[stat.Panel | statetimeline.Panel]:
    latest = f'FROM "agent_status" WHERE {AGENT} AND {NOW}'
    state = text_stat(
        "State",
        "Online, down (offline while its site is open) or closed (offline outside its "
        "opening hours), as the fleet wrote it at its last status interval.",
        f'SELECT last("state") AS "state" {latest}',
        "state",
    ).mappings(STATE_MAPPING)
    timeline = (
        panel(
            statetimeline.Panel(),
            "State over time",
            "One sample per status interval.",
            [
                Query(f'SELECT "state" FROM "agent_status" WHERE {AGENT} AND $timeFilter').alias(
                    "state"
                )
            ],
            "none",
            neutral(GREY),
            (24, 4),
        )
        .mappings(STATE_MAPPING)
        .show_value(viz.VisibilityMode.NEVER)
    )
    return [
        state,
        status_stat(
            "Last seen",
            "Time since its latest message or state change.",
            f'SELECT last("last_seen_s") {latest}',
            "s",
            higher_is_worse(300, 3600),
        ),
        text_stat(
            "Version",
            "As announced in its latest birth.",
            f'SELECT last("agent_version") AS "version" {latest}',
            "version",
        ),
        status_stat(
            "Missing sequence numbers",
            "Messages neither stored nor counted as dropped over the last hour.",
            f'SELECT last("seq_missing") {latest}',
            "none",
            higher_is_worse(1, 100),
        ),
        status_stat(
            "Availability in opening hours",
            "Share of the time it was online while its site was open (time range).",
            f'SELECT mean("online") FROM "agent_status" WHERE {AGENT} AND "in_hours" = 1 '
            "AND $timeFilter",
            "percentunit",
            lower_is_worse(0.9, 0.98),
        )
        .decimals(1)
        .span(8),
        timeline,
    ]


def health(expression: str) -> str:
    """An expression of ``agent_health`` per interval, for this agent."""
    return (
        f'SELECT {expression} FROM "agent_health" WHERE {AGENT} AND $timeFilter '
        "GROUP BY time($__interval) fill(none)"
    )


def increase(counter: str) -> str:
    """How much a counter grew per interval (it may restart at 0 with the agent)."""
    return f'non_negative_difference(max("{counter}"))'


def health_row() -> list[timeseries.Panel]:
    resources = panel(
        timeseries.Panel(),
        "CPU, memory and disk",
        "From the agent's health reports. CPU may pass 100 % on several cores.",
        [
            Query(health('mean("cpu_percent")')).alias("cpu"),
            Query(health('mean("memory_percent")')).alias("memory"),
            Query(health('max("disk_percent")')).alias("disk"),
        ],
        "percent",
        higher_is_worse(80, 95),
        (8, 8),
    ).min(0)
    free = panel(
        timeseries.Panel(),
        "Free disk space (outbox file system)",
        "Under 1 GiB the agent warns (disk_low, outbox.warn_free_bytes); under 64 MiB "
        "(outbox.min_free_bytes) its outbox stops growing and drops by its policy.",
        [Query(health('min("disk_free_bytes")')).alias("free")],
        "bytes",
        lower_is_worse(64 * 2**20, 2**30),
        (8, 8),
    ).thresholds_style(DASHED)
    backlog = panel(
        timeseries.Panel(),
        "Outbox backlog",
        "Messages waiting for the fleet's confirmation (left), and the age of the oldest (right).",
        [
            Query(health('max("backlog_messages")')).alias("messages"),
            Query(health('max("backlog_oldest_s")')).alias("oldest"),
        ],
        "short",
        neutral(),
        (8, 8),
    ).override_by_query(
        "B",
        [
            model.DynamicConfigValue(id_val="unit", value="s"),
            model.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
        ],
    )
    delivery = panel(
        timeseries.Panel(),
        "Messages dropped, resent, refused",
        "Per interval. Dropped: no room in the outbox (its overflow policy). Resent: "
        "unconfirmed in time. Refused: the broker would not take them (its rights).",
        [
            Query(health(increase("dropped_messages"))).alias("dropped"),
            Query(health(increase("resent_messages"))).alias("resent"),
            Query(health(increase("refused_messages"))).alias("refused"),
        ],
        "short",
        higher_is_worse(1, 100),
        (24, 6),
    )
    return [resources, free, backlog, delivery]


def instruments_row() -> list[table.Panel | timeseries.Panel]:
    query = (
        'SELECT "status", "battery_percent" AS "battery", "calibration_due_days" AS '
        '"calibration due", "last_reading_age_s" AS "last reading", "detail" '
        f'FROM "device_status" WHERE {AGENT} AND {RECENT} GROUP BY "device", "kind" '
        "ORDER BY time DESC LIMIT 1"
    )
    instruments = (
        panel(
            table.Panel(),
            "Instruments",
            "Each instrument's latest status. Battery: red under 20 %, orange under "
            "40 %. Calibration due in days: red when overdue, orange within 30 days.",
            [Query(query).table()],
            "none",
            neutral(),
            (14, 8),
        )
        .with_transformation(MERGE)
        .with_transformation(HIDE_TIME)
        .override_by_name("status", [column_mappings(DEVICE_MAPPING), cell_colors()])
        .override_by_name(
            "battery",
            [column_unit("percent"), column_thresholds(BATTERY), cell_colors("color-background")],
        )
        .override_by_name(
            "calibration due",
            [column_unit("d"), column_thresholds(CALIBRATION), cell_colors("color-background")],
        )
        .override_by_name("last reading", [column_unit("s")])
    )
    batteries = (
        panel(
            timeseries.Panel(),
            "Instrument batteries",
            "As the instruments report them (BLE Battery Service).",
            [
                Query(
                    f'SELECT last("battery_percent") FROM "device_status" WHERE {AGENT} AND '
                    '$timeFilter GROUP BY time($__interval), "device" fill(none)'
                ).alias("$tag_device")
            ],
            "percent",
            BATTERY,
            (10, 8),
        )
        .min(0)
        .max(100)
        .thresholds_style(DASHED)
    )
    return [instruments, batteries]


@dataclass(frozen=True)
class Vital:
    """A panel of readings in one display unit: each (measurement, field) queried
    once per unit the instrument may be set to (``READING_FIELDS``), converted.

    ``units`` maps a UCUM unit to the InfluxQL expression that converts the field
    (``{}``) to the display unit. tests/unit/test_grafana.py checks that every unit a
    field may carry has one.
    """

    title: str
    description: str
    unit: str
    fields: tuple[tuple[str, str], ...]
    units: dict[str, str]
    decimals: int | None = None


VITALS: Final = (
    Vital(
        "Blood pressure (mmHg)",
        "Cuffs set to mmHg as read; kPa x 7.50062.",
        "suffix: mmHg",
        (("blood_pressure", "systolic"), ("blood_pressure", "diastolic")),
        {"mm[Hg]": "{}", "kPa": "{} * 7.50062"},
    ),
    Vital(
        "Body temperature (\u00b0C)",
        "Thermometers in Celsius as read; Fahrenheit converted.",
        "celsius",
        (("body_temperature", "temperature"),),
        {"Cel": "{}", "[degF]": "({} - 32) / 1.8"},
        decimals=1,
    ),
    Vital(
        "SpO2 (%)",
        "Pulse oximeters' oxygen saturation.",
        "percent",
        (("pulse_oximetry", "spo2"),),
        {"%": "{}"},
    ),
    Vital(
        "Pulse rate (/min)",
        "From the blood pressure cuffs and the pulse oximeters.",
        "suffix: /min",
        (("blood_pressure", "pulse_rate"), ("pulse_oximetry", "pulse_rate")),
        {"/min": "{}"},
    ),
    Vital(
        "Weight (kg)",
        "Scales and body composition monitors; pounds x 0.45359237.",
        "masskg",
        (("body_weight", "weight"), ("body_composition", "weight")),
        {"kg": "{}", "[lb_av]": "{} * 0.45359237"},
        decimals=1,
    ),
    Vital(
        "Blood glucose (g/L)",
        "Every meter in g/L, as French practice reads it: kg/L (the GATT Glucose "
        "service's unit) x 1000, mg/dL x 0.01, mmol/L x 0.18016 (glucose, 180.16 "
        "g/mol), mol/L x 180.16.",
        "suffix: g/L",
        (("blood_glucose", "glucose_concentration"),),
        {
            "kg/L": "{} * 1000",
            "mg/dL": "{} * 0.01",
            "mmol/L": "{} * 0.18016",
            "mol/L": "{} * 180.16",
        },
        decimals=2,
    ),
)


def vital_queries(vital: Vital) -> list[Query]:
    """Raw readings, not means: each point is one patient's measurement."""
    queries = []
    for measurement, field in vital.fields:
        for unit, expression in vital.units.items():
            converted = expression.format(f'"{field}"')
            label = field if len(vital.units) == 1 else f"{field} ({unit})"
            queries.append(
                Query(
                    f'SELECT {converted} AS "{field}" FROM "{measurement}" WHERE {AGENT} '
                    f'AND $timeFilter AND {unit_is(field, unit)} GROUP BY "device"'
                ).alias(f"$tag_device {label}")
            )
    return queries


def vital_panel(vital: Vital) -> timeseries.Panel:
    built = (
        panel(
            timeseries.Panel(),
            vital.title,
            vital.description,
            vital_queries(vital),
            vital.unit,
            neutral(),
            (12, 8),
        )
        # One point per reading: a line between two patients would mean nothing.
        .draw_style(viz.GraphDrawStyle.POINTS)
        .point_size(6)
    )
    return built.decimals(vital.decimals) if vital.decimals is not None else built


def events_row() -> sdk.Row:
    events = (
        panel(
            table.Panel(),
            "Events",
            "The agent's latest events, newest first.",
            [
                Query(
                    f'SELECT "detail", "seq" FROM "agent_event" WHERE {AGENT} AND $timeFilter '
                    'GROUP BY "name", "severity" ORDER BY time DESC LIMIT 50'
                ).table()
            ],
            "none",
            neutral(),
            (24, 10),
        )
        .with_transformation(MERGE)
        .override_by_name("severity", [column_mappings(SEVERITY_MAPPING), cell_colors()])
        .sort_by([sdk_common.TableSortByFieldState().display_name("Time").desc(True)])
    )
    return sdk.Row("Events").with_panel(events)


SEVERITY_MAPPING: Final = mapping(
    {"info": ("info", GREY), "warning": ("warning", "orange"), "error": ("error", "red")}
)
DASHED: Final = sdk_common.GraphThresholdsStyleConfig().mode(viz.GraphThresholdsStyleMode.DASHED)


def build() -> model.Dashboard:
    board = dashboard(
        UID,
        "Vigie: booth detail",
        "One agent: state, health, instruments, readings, events.",
        "now-24h",
    ).variables(variables())
    for item in state_row():
        board = board.with_panel(item)
    board = section(board, "Health")
    for part in health_row():
        board = board.with_panel(part)
    board = section(board, "Instruments")
    for piece in instruments_row():
        board = board.with_panel(piece)
    board = section(board, "Readings")
    for vital in VITALS:
        board = board.with_panel(vital_panel(vital))
    return finish(board.with_row(events_row()))
