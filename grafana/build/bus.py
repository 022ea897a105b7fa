"""Health bus: the route over the time range, gaps in its positions and in its
connection, its speed and its backlog."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.builders import geomap, stat, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as viz
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import geomap as geomodel

from grafana.build.common import (
    NOW,
    STATE_MAPPING,
    STATUS_INTERVAL,
    dashboard,
    finish,
    higher_is_worse,
    neutral,
    panel,
    section,
    steps,
    unit_is,
)
from grafana.build.influx import Query, datasource

UID: Final = "vigie-bus"
BUS: Final = '"agent_id" =~ /^$bus$/'
SPEED: Final = 'mean("speed")'
#: km/h from what a GPS may report (READING_FIELDS: km/h or international knots).
SPEED_UNITS: Final = {"km/h": "{}", "[kn_i]": "{} * 1.852"}


def variables() -> list[cogbuilder.Builder[model.VariableModel]]:
    return [
        sdk.QueryVariable("bus")
        .label("Bus")
        .datasource(datasource())
        .query('SHOW TAG VALUES FROM "agent_status" WITH KEY = "agent_id" WHERE "kind" = \'bus\'')
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    ]


def coords() -> sdk_common.FrameGeometrySource:
    return (
        sdk_common.FrameGeometrySource()
        .mode(viz.FrameGeometrySourceMode.COORDS)
        .latitude("latitude")
        .longitude("longitude")
    )


def route_map() -> geomap.Panel:
    route = (
        sdk_common.MapLayerOptions()
        .type("route")
        .name("Route")
        .location(coords())
        .filter_data({"id": "byRefId", "options": "A"})
        .config(
            {
                "arrow": 1,
                "style": {
                    "color": {"field": "speed", "fixed": "blue"},
                    "lineWidth": 3,
                    "opacity": 0.8,
                },
            }
        )
    )
    last = (
        sdk_common.MapLayerOptions()
        .type("markers")
        .name("Last position")
        .location(coords())
        .filter_data({"id": "byRefId", "options": "B"})
        .config(
            {
                "showLegend": False,
                "style": {"color": {"fixed": "red"}, "opacity": 1, "size": {"fixed": 10}},
            }
        )
    )
    return (
        panel(
            geomap.Panel(),
            "Route",
            "Every position over the time range (the line is coloured by speed, km/h as "
            "the GPS reports it), and the last one. The map fits the route.",
            [
                Query(
                    f'SELECT "latitude", "longitude", "speed" FROM "position" WHERE {BUS} '
                    "AND $timeFilter"
                ).table(),
                Query(
                    'SELECT last("latitude") AS "latitude", last("longitude") AS "longitude" '
                    f'FROM "position" WHERE {BUS} AND $timeFilter'
                ).table(),
            ],
            "velocitykmh",
            higher_is_worse(50, 90),
            (24, 14),
        )
        .view(geomap.MapViewConfig().id("fit").all_layers(True).last_only(False).padding(10))
        .basemap(sdk_common.MapLayerOptions().type("default").name("Basemap"))
        .layers([route, last])
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_scale(True))
        .tooltip(geomap.TooltipOptions().mode(geomodel.TooltipMode.DETAILS))
    )


def state_stats() -> list[stat.Panel]:
    latest = f'FROM "agent_status" WHERE {BUS} AND {NOW}'
    state = (
        panel(
            stat.Panel(),
            "State",
            "Online, down (offline while expected in service) or closed.",
            [Query(f'SELECT last("state") AS "state" {latest}').table()],
            "none",
            neutral("text"),
            (8, 4),
        )
        .mappings(STATE_MAPPING)
        .color_mode(viz.BigValueColorMode.BACKGROUND)
        .graph_mode(viz.BigValueGraphMode.NONE)
        .reduce_options(sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).fields("/^state$/"))
    )
    seen = (
        panel(
            stat.Panel(),
            "Last seen",
            "Time since its latest message or state change.",
            [Query(f'SELECT last("last_seen_s") {latest}')],
            "s",
            higher_is_worse(300, 3600),
            (8, 4),
        )
        .color_mode(viz.BigValueColorMode.BACKGROUND)
        .graph_mode(viz.BigValueGraphMode.NONE)
    )
    fix = (
        panel(
            stat.Panel(),
            "Last position measured",
            "When the GPS gave its latest position (stored by measurement time: a bus "
            "out of coverage sends its positions later, in its backlog).",
            [Query(f'SELECT last("latitude") FROM "position" WHERE {BUS} AND $timeFilter').table()],
            "dateTimeFromNow",
            neutral("text"),
            (8, 4),
        )
        .graph_mode(viz.BigValueGraphMode.NONE)
        .reduce_options(sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).fields("/^Time$/"))
    )
    return [state, seen, fix]


def coverage() -> list[timeseries.Panel]:
    positions = (
        panel(
            timeseries.Panel(),
            "Positions per interval (0: a gap)",
            "Positions measured per interval. Zero while the bus runs: no GPS fix, or "
            "the agent was off.",
            [
                Query(
                    f'SELECT count("latitude") FROM "position" WHERE {BUS} AND $timeFilter '
                    "GROUP BY time($__interval) fill(0)"
                ).alias("positions")
            ],
            "short",
            steps((None, "red"), (1, "green")),
            (12, 8),
        )
        .interval(STATUS_INTERVAL)
        .draw_style(viz.GraphDrawStyle.BARS)
    )
    delay = panel(
        timeseries.Panel(),
        "Delay from measurement to reception",
        "How late the positions reached the fleet: minutes or hours while the bus was "
        "out of network coverage (sent from its outbox once back).",
        [
            Query(
                f'SELECT max("delay_s") FROM "position" WHERE {BUS} AND $timeFilter '
                "GROUP BY time($__interval) fill(none)"
            ).alias("delay")
        ],
        "s",
        higher_is_worse(300, 3600),
        (12, 8),
    )
    speeds = [
        Query(
            f"SELECT {expression.format(SPEED)} "
            f'FROM "position" WHERE {BUS} AND $timeFilter AND {unit_is("speed", unit)} '
            "GROUP BY time($__interval) fill(none)"
        ).alias(f"speed ({unit})")
        for unit, expression in SPEED_UNITS.items()
    ]
    speed = panel(
        timeseries.Panel(),
        "Speed",
        "Knots converted to km/h.",
        speeds,
        "velocitykmh",
        neutral(),
        (12, 8),
    ).min(0)
    backlog = panel(
        timeseries.Panel(),
        "Outbox backlog",
        "What the bus still holds for the fleet: it grows out of coverage and drains once back.",
        [
            Query(
                f'SELECT max("backlog_messages") FROM "agent_health" WHERE {BUS} AND '
                "$timeFilter GROUP BY time($__interval) fill(none)"
            ).alias("messages waiting")
        ],
        "short",
        higher_is_worse(1000, 10000),
        (12, 8),
    )
    return [positions, delay, speed, backlog]


def build() -> model.Dashboard:
    board = dashboard(
        UID,
        "Vigie: health bus",
        "One bus: its route, coverage, speed and backlog.",
        "now-12h",
    ).variables(variables())
    for item in state_stats():
        board = board.with_panel(item)
    board = board.with_panel(route_map())
    board = section(board, "Coverage")
    for part in coverage():
        board = board.with_panel(part)
    return finish(board)
