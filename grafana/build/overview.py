"""Fleet overview: how many agents are online, down or closed now, availability in
opening hours per site, versions, what is late, lost or doubled, and the instruments
that need a technician."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models import common as viz
from grafana_foundation_sdk.models import dashboard as model

from grafana.build.common import (
    BATTERY,
    BLUE,
    CALIBRATION,
    DEVICE_MAPPING,
    GREY,
    HIDE_TIME,
    MERGE,
    NOW,
    RECENT,
    RED,
    STATE_MAPPING,
    STATUS_INTERVAL,
    cell_colors,
    column_mappings,
    column_thresholds,
    column_unit,
    count_by,
    dashboard,
    finish,
    higher_is_worse,
    link_to,
    lower_is_worse,
    neutral,
    panel,
    section,
    steps,
)
from grafana.build.influx import Query
from vigie_core.contract.data import ReadingKind

UID: Final = "vigie-fleet"
BOOTH_UID: Final = "vigie-booth"
#: Availability: under 90 % red, under 98 % orange.
AVAILABILITY: Final = lower_is_worse(0.9, 0.98)


def latest(field: str, alias: str | None = None) -> str:
    """Each agent's latest value of an ``agent_status`` field (one row per agent)."""
    return (
        f'SELECT last("{field}") AS "{alias or field}" FROM "agent_status" '
        f'WHERE {NOW} GROUP BY "agent_id"'
    )


def fleet_total(expression: str, name: str) -> str:
    """The sum over agents of an expression of their latest ``agent_status``."""
    return f'SELECT sum("{name}") FROM ({expression}) WHERE {NOW}'


def now_stat(title: str, description: str, query: str, color: str) -> stat.Panel:
    return (
        panel(
            stat.Panel(), title, description, [Query(query)], "none", steps((None, color)), (4, 4)
        )
        .color_mode(viz.BigValueColorMode.BACKGROUND)
        .graph_mode(viz.BigValueGraphMode.NONE)
        .no_value("0")
    )


def now_row() -> list[stat.Panel]:
    down = (
        panel(
            stat.Panel(),
            "Down now",
            "Agents offline while their site is open: what an operator must act on.",
            [Query(fleet_total(latest("down"), "down"))],
            "none",
            steps((None, "green"), (1, RED)),
            (4, 4),
        )
        .color_mode(viz.BigValueColorMode.BACKGROUND)
        .graph_mode(viz.BigValueGraphMode.NONE)
    )
    closed = (
        'SELECT (1 - last("online")) * (1 - last("in_hours")) AS "closed" '
        f'FROM "agent_status" WHERE {NOW} GROUP BY "agent_id"'
    )
    availability = (
        panel(
            stat.Panel(),
            "Availability in opening hours",
            "Share of the time agents were online while their site was open, over the "
            "dashboard's time range (closed hours do not count against them).",
            [
                Query(
                    'SELECT mean("online") FROM "agent_status" WHERE "in_hours" = 1 AND $timeFilter'
                )
            ],
            "percentunit",
            AVAILABILITY,
            (8, 4),
        )
        .decimals(1)
        .graph_mode(viz.BigValueGraphMode.NONE)
    )
    return [
        now_stat(
            "Online now",
            "Agents connected (birth received, no Last Will since).",
            fleet_total(latest("online"), "online"),
            "green",
        ),
        down,
        now_stat(
            "Closed now",
            "Agents offline outside their site's opening hours: expected.",
            fleet_total(closed, "closed"),
            BLUE,
        ),
        now_stat(
            "Agents known",
            "Every agent that ever announced itself to this fleet.",
            f'SELECT count("state") FROM ({latest("state")}) WHERE {NOW}',
            GREY,
        ),
        availability,
    ]


def agents_table() -> table.Panel:
    query = (
        'SELECT "state", "agent_version" AS "version", "last_seen_s" AS "last seen", '
        '"session", "seq_missing" AS "missing (1 h)" FROM "agent_status" '
        f'WHERE {NOW} GROUP BY "agent_id", "site_id", "kind" ORDER BY time DESC LIMIT 1'
    )
    return (
        panel(
            table.Panel(),
            "Agents",
            "Every agent and its state now (written by the fleet every status interval): "
            "down = offline in opening hours, closed = offline outside them. Last seen: "
            "its latest message or state change. Missing: sequence numbers lost over "
            "the last hour. Click an agent for its booth dashboard.",
            [Query(query).table()],
            "none",
            neutral(),
            (24, 10),
        )
        .with_transformation(MERGE)
        .with_transformation(HIDE_TIME)
        .override_by_name("state", [column_mappings(STATE_MAPPING), cell_colors()])
        .override_by_name(
            "last seen",
            [column_unit("s"), column_thresholds(higher_is_worse(300, 3600)), cell_colors()],
        )
        .override_by_name(
            "missing (1 h)", [column_thresholds(higher_is_worse(1, 100)), cell_colors()]
        )
        .override_by_name("agent_id", [link_to("Booth detail", BOOTH_UID, "agent")])
        .sort_by([sdk_common.TableSortByFieldState().display_name("state")])
    )


def availability_row() -> list[timeseries.Panel | table.Panel]:
    availability = (
        panel(
            timeseries.Panel(),
            "Availability in opening hours, per site",
            "Mean of online over the agents of each site while it is open; agents "
            "outside their opening hours are left out.",
            [
                Query(
                    'SELECT mean("online") FROM "agent_status" WHERE "in_hours" = 1 '
                    'AND $timeFilter GROUP BY time($__interval), "site_id" fill(none)'
                ).alias("$tag_site_id")
            ],
            "percentunit",
            AVAILABILITY,
            (16, 8),
        )
        .min(0)
        .max(1)
        .interval(STATUS_INTERVAL)
        .thresholds_style(
            sdk_common.GraphThresholdsStyleConfig().mode(viz.GraphThresholdsStyleMode.DASHED)
        )
    )
    versions = (
        panel(
            table.Panel(),
            "Agents per version",
            "The version each agent announced in its latest birth.",
            [Query(latest("agent_version", "version")).table()],
            "none",
            neutral(),
            (8, 8),
        )
        .with_transformation(MERGE)
        .with_transformation(count_by("version", "agent_id"))
    )
    return [availability, versions]


def per_agent_sum(inner: str, name: str) -> str:
    """The fleet's total per interval of a per-agent, per-interval expression."""
    return (
        f'SELECT sum("{name}") FROM ({inner} WHERE $timeFilter '
        f'GROUP BY time($__interval), "agent_id") WHERE $timeFilter GROUP BY time($__interval)'
    )


def delivery_row() -> list[timeseries.Panel | table.Panel]:
    backlog = panel(
        timeseries.Panel(),
        "Outbox backlog (all agents)",
        "Messages waiting in the agents' outboxes for the fleet's confirmation. A bus "
        "back in coverage flushes hours of them.",
        [
            Query(
                per_agent_sum(
                    'SELECT max("backlog_messages") AS "backlog" FROM "agent_health"', "backlog"
                )
            ).alias("messages waiting")
        ],
        "short",
        higher_is_worse(1000, 10000),
        (8, 8),
    )
    oldest = panel(
        timeseries.Panel(),
        "Oldest unsent message (worst agent)",
        "Age of the oldest message still in an outbox, the worst agent of the interval.",
        [
            Query(
                'SELECT max("backlog_oldest_s") FROM "agent_health" '
                "WHERE $timeFilter GROUP BY time($__interval)"
            ).alias("oldest")
        ],
        "s",
        higher_is_worse(900, 3600),
        (8, 8),
    )
    lost = panel(
        timeseries.Panel(),
        "Messages lost, missing or stored twice",
        "Dropped: what agents' outboxes had no room for (counted by the agents). "
        "Missing: sequence numbers neither stored nor counted as dropped over the last "
        "hour (the fleet's count). Stored twice: redeliveries, harmless (they overwrite "
        "themselves).",
        [
            Query(
                per_agent_sum(
                    'SELECT non_negative_difference(max("dropped_messages")) AS "dropped" '
                    'FROM "agent_health"',
                    "dropped",
                )
            ).alias("dropped by agents"),
            Query(
                per_agent_sum(
                    'SELECT last("seq_missing") AS "missing" FROM "agent_status"', "missing"
                )
            ).alias("missing sequence numbers (last hour)"),
            Query(
                'SELECT sum("duplicates") FROM "agent_delivery" '
                "WHERE $timeFilter GROUP BY time($__interval) fill(0)"
            ).alias("stored twice"),
        ],
        "short",
        higher_is_worse(1, 100),
        (8, 8),
    )
    per_agent = (
        panel(
            table.Panel(),
            "Losses, gaps and duplicates per agent (time range)",
            "Per agent over the time range: messages dropped by its outbox, the most "
            "sequence numbers missing at once, and redeliveries stored again.",
            [
                Query(
                    'SELECT spread("dropped_messages") AS "dropped" FROM "agent_health" '
                    'WHERE $timeFilter GROUP BY "agent_id"'
                ).table(),
                Query(
                    'SELECT max("seq_missing") AS "missing" FROM "agent_status" '
                    'WHERE $timeFilter GROUP BY "agent_id"'
                ).table(),
                Query(
                    'SELECT sum("duplicates") AS "stored twice" FROM "agent_delivery" '
                    'WHERE $timeFilter GROUP BY "agent_id"'
                ).table(),
            ],
            "short",
            higher_is_worse(1, 100),
            (12, 8),
        )
        .with_transformation(MERGE)
        .with_transformation(HIDE_TIME)
        .override_by_name("dropped", [cell_colors()])
        .override_by_name("missing", [cell_colors()])
        .sort_by([sdk_common.TableSortByFieldState().display_name("dropped").desc(True)])
    )
    dead = panel(
        timeseries.Panel(),
        "Dead letters by reason",
        "Messages the fleet refused and kept for inspection (see docs/protocol.md).",
        [
            Query(
                'SELECT count("size") FROM "dead_letter" WHERE $timeFilter '
                'GROUP BY time($__interval), "reason" fill(0)'
            ).alias("$tag_reason")
        ],
        "short",
        higher_is_worse(1, 100),
        (12, 8),
    )
    return [backlog, oldest, lost, per_agent, dead]


def readings_panel() -> timeseries.Panel:
    queries = [
        Query(
            f'SELECT count("seq") FROM "{kind.value}" WHERE $timeFilter '
            "GROUP BY time($__interval) fill(0)"
        ).alias(kind.value)
        for kind in ReadingKind
    ]
    return (
        panel(
            timeseries.Panel(),
            "Readings stored, by kind",
            "Readings stored per interval, by the time they were measured.",
            queries,
            "short",
            neutral(),
            (12, 8),
        )
        .interval(STATUS_INTERVAL)
        .draw_style(viz.GraphDrawStyle.BARS)
        .stacking(sdk_common.StackingConfig().mode(viz.StackingMode.NORMAL))
    )


def instruments_table() -> table.Panel:
    query = (
        'SELECT "status", "battery_percent" AS "battery", "calibration_due_days" AS '
        '"calibration due", "last_reading_age_s" AS "last reading", "detail" FROM '
        '(SELECT "ok", "status", "battery_percent", "calibration_due_days", '
        f'"last_reading_age_s", "detail" FROM "device_status" WHERE {RECENT} '
        'GROUP BY "agent_id", "device", "kind" ORDER BY time DESC LIMIT 1) '
        'WHERE "ok" = 0 OR "battery_percent" < 40 OR "calibration_due_days" < 30 '
        'GROUP BY "agent_id", "device", "kind" ORDER BY time DESC'
    )
    return (
        panel(
            table.Panel(),
            "Instruments needing a technician",
            "Instruments disconnected or in error, with a battery under 40 %, or due "
            "for calibration within 30 days (negative: overdue), from their agents' "
            "latest health report.",
            [Query(query).table()],
            "none",
            neutral(),
            (12, 8),
        )
        .with_transformation(MERGE)
        .with_transformation(HIDE_TIME)
        .override_by_name(
            "battery", [column_unit("percent"), column_thresholds(BATTERY), cell_colors()]
        )
        .override_by_name(
            "calibration due",
            [column_unit("d"), column_thresholds(CALIBRATION), cell_colors()],
        )
        .override_by_name("last reading", [column_unit("s")])
        .override_by_name("status", [column_mappings(DEVICE_MAPPING), cell_colors()])
        .override_by_name("agent_id", [link_to("Booth detail", BOOTH_UID, "agent")])
    )


def build() -> model.Dashboard:
    board = dashboard(
        UID,
        "Vigie: fleet overview",
        "The whole fleet: state now, availability in opening hours, delivery, instruments.",
        "now-24h",
    )
    for item in now_row():
        board = board.with_panel(item)
    board = board.with_panel(agents_table())
    board = section(board, "Availability and versions")
    for part in availability_row():
        board = board.with_panel(part)
    board = section(board, "Delivery")
    for part in delivery_row():
        board = board.with_panel(part)
    board = section(board, "Readings and instruments")
    board = board.with_panel(readings_panel()).with_panel(instruments_table())
    return finish(board)
