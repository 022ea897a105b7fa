"""The dashboards ask only for what the fleet writes; the fleet writes only its schema."""

from __future__ import annotations

import pytest

from fleet.storage.points import (
    dead_letter_point,
    delivery_point,
    fleet_event_point,
    message_points,
    ns,
)
from fleet.storage.schema import DERIVED_MEASUREMENTS, SCHEMA
from tests.grafana_queries import dashboard_queries, referenced_names
from tests.samples import AT, every_kind_of_message


def test_every_point_the_fleet_writes_stays_inside_its_schema() -> None:
    points = [
        point
        for message in every_kind_of_message()
        for point in message_points(message, ns(AT) + 1)
    ]
    points.append(dead_letter_point("not_json", "x", "t", b"p", 1))
    points.append(delivery_point("a", 2, 1))
    points.append(fleet_event_point("fleet-a", "session_taken_over", "x", 1))
    assert {point.measurement for point in points} == set(SCHEMA) - DERIVED_MEASUREMENTS
    for point in points:
        names = set(point.fields) | set(point.tags)
        assert names <= SCHEMA[point.measurement], (
            point.measurement,
            names - SCHEMA[point.measurement],
        )


QUERIES = dashboard_queries()


def test_there_are_dashboards() -> None:
    assert len(QUERIES) >= 8


@pytest.mark.parametrize(("where", "query"), QUERIES, ids=[where for where, _ in QUERIES])
def test_dashboard_queries_name_only_written_measurements_and_fields(
    where: str, query: str
) -> None:
    measurement, names = referenced_names(query)
    assert measurement in SCHEMA, f"{where}: unknown measurement {measurement}"
    assert names <= SCHEMA[measurement], f"{where}: unknown {names - SCHEMA[measurement]}"
