"""Rollouts and configuration: each rollout's state and waves, its progress, each
agent's latest release step, and where pushed configurations stand."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.models import dashboard as model

from grafana.build.common import (
    BLUE,
    GREEN,
    GREY,
    HIDE_TIME,
    MERGE,
    NOW,
    ORANGE,
    RED,
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
    mapping,
    neutral,
    panel,
    section,
)
from grafana.build.influx import Query

UID: Final = "vigie-rollouts"
BOOTH_UID: Final = "vigie-booth"
ROLLOUT_MAPPING: Final = mapping(
    {
        "running": ("running", BLUE),
        "paused": ("paused", ORANGE),
        "halted": ("halted", RED),
        "aborted": ("aborted", GREY),
        "completed": ("completed", GREEN),
    }
)
PHASE_MAPPING: Final = mapping(
    {
        "committed": ("committed", GREEN),
        "rolled_back": ("rolled back", RED),
        "refused": ("refused", RED),
        "health_checking": ("health checking", BLUE),
        "waiting": ("waiting", BLUE),
        "downloading": ("downloading", BLUE),
        "verifying": ("verifying", BLUE),
        "installing": ("installing", BLUE),
        "idle": ("idle", GREY),
    }
)
CONFIG_MAPPING: Final = mapping(
    {"in sync": ("in sync", GREEN), "pending": ("pending", ORANGE), "rejected": ("rejected", RED)}
)
COUNTS: Final = '"updated", "failed", "pending", "not_asked" AS "not asked", "cancelled"'


def rollouts_table() -> table.Panel:
    query = (
        'SELECT "state", "version", "released_waves" AS "released", "waves", "agents", '
        f'{COUNTS}, "reason" FROM "rollout_status" WHERE $timeFilter '
        'GROUP BY "rollout_id" ORDER BY time DESC LIMIT 1'
    )
    return (
        panel(
            table.Panel(),
            "Rollouts",
            "Each rollout's latest state: written every status interval while it runs, "
            "is paused or halted, and once when it ends. Halted: more failures than "
            "it allows (see reason); resume or abort with 'fleet rollout'.",
            [Query(query).table()],
            "none",
            neutral(),
            (24, 8),
        )
        .with_transformation(MERGE)
        .with_transformation(HIDE_TIME)
        .override_by_name("state", [column_mappings(ROLLOUT_MAPPING), cell_colors()])
        .override_by_name("failed", [column_thresholds(higher_is_worse(1, 1)), cell_colors()])
    )


def waves_table() -> table.Panel:
    query = (
        f'SELECT "size", "released", {COUNTS} FROM "rollout_wave" WHERE $timeFilter '
        'GROUP BY "rollout_id", "wave" ORDER BY time DESC LIMIT 1'
    )
    released = mapping({"1": ("released", GREEN), "0": ("waiting", GREY)})
    return (
        panel(
            table.Panel(),
            "Waves",
            "Each wave of each rollout: released or waiting for the one before.",
            [Query(query).table()],
            "none",
            neutral(),
            (12, 8),
        )
        .with_transformation(MERGE)
        .with_transformation(HIDE_TIME)
        .override_by_name("released", [column_mappings(released), cell_colors()])
        .override_by_name("failed", [column_thresholds(higher_is_worse(1, 1)), cell_colors()])
    )


def progress() -> timeseries.Panel:
    queries = [
        Query(
            f'SELECT last("{count}") FROM "rollout_status" WHERE $timeFilter '
            'GROUP BY time($__interval), "rollout_id" fill(none)'
        ).alias(f"$tag_rollout_id {count}")
        for count in ("updated", "failed", "pending")
    ]
    return (
        panel(
            timeseries.Panel(),
            "Progress",
            "Agents updated (their new release passed its health check), failed "
            "(rolled back or refused) and pending, per rollout.",
            queries,
            "short",
            neutral(),
            (12, 8),
        )
        .interval(STATUS_INTERVAL)
        .min(0)
    )


def release_steps() -> table.Panel:
    query = (
        'SELECT "phase", "running", "target", "progress_percent" AS "progress", "reason" '
        'FROM "release_report" WHERE $timeFilter GROUP BY "agent_id" '
        "ORDER BY time DESC LIMIT 1"
    )
    return (
        panel(
            table.Panel(),
            "Release steps (latest per agent)",
            "Each agent's latest update step in the time range, as it reported it "
            "(every step is stored once, at the agent's own time).",
            [Query(query).table()],
            "none",
            neutral(),
            (24, 8),
        )
        .with_transformation(MERGE)
        .override_by_name("phase", [column_mappings(PHASE_MAPPING), cell_colors()])
        .override_by_name("progress", [column_unit("percent")])
        .override_by_name("agent_id", [link_to("Booth detail", BOOTH_UID, "agent")])
        .sort_by([sdk_common.TableSortByFieldState().display_name("Time").desc(True)])
    )


def config_panels() -> list[table.Panel]:
    per_state = (
        panel(
            table.Panel(),
            "Configuration: agents per state",
            "Agents a configuration was pushed to, by where it stands now.",
            [
                Query(
                    'SELECT last("state") AS "state" FROM "config_status" '
                    f'WHERE {NOW} GROUP BY "agent_id"'
                ).table()
            ],
            "none",
            neutral(),
            (8, 8),
        )
        .with_transformation(MERGE)
        .with_transformation(count_by("state", "agent_id"))
        .override_by_name("state", [column_mappings(CONFIG_MAPPING), cell_colors()])
    )
    fields = '"state", "desired_version", "running_version", "reason"'
    waiting = (
        f'SELECT "state", "desired_version" AS "desired", "running_version" AS "running", '
        f'"reason" FROM (SELECT {fields} FROM "config_status" WHERE {NOW} '
        'GROUP BY "agent_id" ORDER BY time DESC LIMIT 1) '
        'WHERE "state" != \'in sync\' GROUP BY "agent_id" ORDER BY time DESC'
    )
    pending = (
        panel(
            table.Panel(),
            "Configuration pending or rejected",
            "Pending: pushed, not applied yet (offline, or on its way). Rejected: the "
            "agent refused it and runs the previous one (reason: the setting and why).",
            [Query(waiting).table()],
            "none",
            neutral(),
            (16, 8),
        )
        .with_transformation(MERGE)
        .with_transformation(HIDE_TIME)
        .override_by_name("state", [column_mappings(CONFIG_MAPPING), cell_colors()])
        .override_by_name("agent_id", [link_to("Booth detail", BOOTH_UID, "agent")])
    )
    return [per_state, pending]


def build() -> model.Dashboard:
    board = dashboard(
        UID,
        "Vigie: rollouts and configuration",
        "Staged rollouts (waves, progress, each agent's steps) and pushed configuration.",
        "now-7d",
    )
    board = board.with_panel(rollouts_table()).with_panel(waves_table()).with_panel(progress())
    board = board.with_panel(release_steps())
    board = section(board, "Configuration")
    for item in config_panels():
        board = board.with_panel(item)
    return finish(board)
