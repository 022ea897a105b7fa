"""The dashboards and alert rules ask only for what the fleet writes, are what the code
generates, and are valid as Grafana's schema (through the foundation SDK) describes
it; the fleet writes only its schema."""

from __future__ import annotations

import enum
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from fleet.desired.targets import ConfigSync
from fleet.rollouts.plan import evaluate
from fleet.status.derive import (
    agent_status_point,
    config_status_point,
    crl_point,
    release_report_point,
    rollout_points,
)
from fleet.storage.points import (
    dead_letter_point,
    delivery_point,
    fleet_event_point,
    message_points,
    ns,
)
from fleet.storage.presence import AgentStatus
from fleet.storage.queries import AgentView, SeqWindow
from fleet.storage.schema import SCHEMA
from grafana.build import alerts, booth, bus
from grafana.build.__main__ import differences
from grafana.build.common import unit_is
from grafana.build.influx import DATASOURCE_UID, register
from tests.grafana_queries import (
    Found,
    all_queries,
    dashboards,
    panels,
    referenced_names,
    rule_groups,
    rules,
    runnable,
)
from tests.samples import AT, every_kind_of_message
from tests.unit.test_desired import desired, reported
from tests.unit.test_rollout import report, spec
from vigie_core.contract.data import READING_FIELDS, ReadingKind
from vigie_core.contract.releases import UpdatePhase

ROOT = Path(__file__).resolve().parents[2]


def derived_points() -> list[Any]:
    view = AgentView(
        agent_id="a",
        status=AgentStatus.ONLINE,
        site_id="s",
        site_name="S",
        kind="booth",
        agent_version="1",
        devices=["d"],
        last_seen=AT,
        status_since=AT,
        session=1,
        opening_hours=None,
    )
    status = evaluate(spec([["a"]]), None, None, {}, {})
    sync = config_status_point(ConfigSync("a", desired(2, agent_id="a"), reported(1)), 1)
    return [
        agent_status_point(view, AT, 1, SeqWindow(1, 1, 1)),
        *rollout_points(status, 1),
        sync,
        release_report_point(report("a", UpdatePhase.DOWNLOADING)),
        crl_point(AT, AT, 1),
    ]


def test_every_point_the_fleet_writes_stays_inside_its_schema() -> None:
    points = [
        point
        for message in every_kind_of_message()
        for point in message_points(message, ns(AT) + 1)
    ]
    points.append(dead_letter_point("not_json", "x", "t", b"p", 1))
    points.append(delivery_point("a", 2, 1))
    points.append(fleet_event_point("fleet-a", "session_taken_over", "x", 1))
    points.extend(derived_points())
    assert {point.measurement for point in points} == set(SCHEMA)
    for point in points:
        names = set(point.fields) | set(point.tags)
        assert names <= SCHEMA[point.measurement], (
            point.measurement,
            names - SCHEMA[point.measurement],
        )


QUERIES = all_queries()
BOARDS = dashboards()


def test_there_are_dashboards_and_alert_rules() -> None:
    uids = {board["uid"] for board in BOARDS.values()}
    assert uids == {"vigie-fleet", "vigie-booth", "vigie-bus", "vigie-rollouts"}
    assert len(QUERIES) >= 80
    assert len(rules()) >= 10


@pytest.mark.parametrize("found", QUERIES, ids=[found.where for found in QUERIES])
def test_queries_name_only_written_measurements_and_fields(found: Found) -> None:
    measurements, names = referenced_names(found.query)
    assert measurements, f"{found.where}: no measurement in {found.query}"
    assert measurements <= set(SCHEMA), f"{found.where}: unknown {measurements - set(SCHEMA)}"
    known = set().union(*(SCHEMA[measurement] for measurement in measurements))
    assert names <= known, f"{found.where}: unknown {names - known}"


def test_the_names_of_subqueries_and_several_measurements_are_found() -> None:
    nested = (
        'SELECT sum("closed") FROM (SELECT (1 - last("online")) AS "closed" FROM '
        '"agent_status" WHERE "in_hours" = 1 GROUP BY "agent_id") WHERE "site" = \'x\''
    )
    assert referenced_names(nested) == (
        {"agent_status"},
        {"online", "in_hours", "agent_id", "site"},
    )
    several = 'SELECT last("seq") FROM "agent_health","agent_event" GROUP BY "agent_id"'
    assert referenced_names(several) == ({"agent_health", "agent_event"}, {"seq", "agent_id"})
    show = 'SHOW TAG VALUES FROM "agent_status" WITH KEY = "agent_id" WHERE "kind" = \'bus\''
    assert referenced_names(show) == ({"agent_status"}, {"agent_id", "kind"})


def variables_used(query: str) -> set[str]:
    return {a or b for a, b in re.findall(r"\$(\w+)|\$\{(\w+)\}", query)}


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_each_dashboard_defines_the_variables_its_queries_use(name: str) -> None:
    board = BOARDS[name]
    defined = {variable["name"] for variable in board["templating"].get("list", [])}
    used = {
        variable
        for item in panels(board)
        for target in item["targets"]
        for variable in variables_used(target["query"])
    }
    assert used - {"timeFilter", "__interval"} <= defined
    values = dict.fromkeys(defined, "x-1")
    for item in panels(board):
        for target in item["targets"]:
            runnable(target["query"], values)  # every variable expanded, or it fails


def test_expansion_is_complete_or_fails() -> None:
    query = 'SELECT "x" FROM "m" WHERE "agent_id" =~ /^$agent$/ AND $timeFilter'
    assert runnable(query, {"agent": "a.b"}, window_s=300) == (
        'SELECT "x" FROM "m" WHERE "agent_id" =~ /^a\\.b$/ AND time > now() - 300s'
    )
    with pytest.raises(ValueError, match=r"\$agent"):
        runnable(query)


def test_the_committed_files_are_what_the_code_generates() -> None:
    """Regenerate with: .venv/bin/python -m grafana.build"""
    assert differences() == []


def is_subset(written: Any, read_back: Any, where: str = "") -> list[str]:
    """What the SDK's model dropped or changed of what was written (defaults it adds
    are fine)."""
    if isinstance(written, dict) and isinstance(read_back, dict):
        return [
            problem
            for key, value in written.items()
            for problem in (
                is_subset(value, read_back[key], f"{where}.{key}")
                if key in read_back
                else [f"{where}.{key}: not in Grafana's schema"]
            )
        ]
    if isinstance(written, list) and isinstance(read_back, list) and len(written) == len(read_back):
        return [
            problem
            for index, (value, back) in enumerate(zip(written, read_back, strict=True))
            for problem in is_subset(value, back, f"{where}[{index}]")
        ]
    return [] if written == read_back else [f"{where}: {written!r} read back as {read_back!r}"]


def _sdk_model(value: object) -> bool:
    return type(value).__module__.startswith("grafana_foundation_sdk.models.")


def model_errors(obj: object, where: str) -> list[str]:
    """Each member of an SDK model against its type (the SDK's types are generated
    from Grafana's schema; its ``from_json`` does not check them)."""
    hints = typing.get_type_hints(type(obj))
    return [
        error
        for name, hint in hints.items()
        for error in value_errors(getattr(obj, name), hint, f"{where}.{name}")
    ]


def value_errors(value: Any, hint: Any, where: str) -> list[str]:  # noqa: PLR0911, PLR0912
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        branches = [arg for arg in args if arg is not type(None)]
        exact = [arg for arg in branches if isinstance(arg, type) and isinstance(value, arg)]
        found = [value_errors(value, arg, where) for arg in exact or branches]
        return [] if not all(found) else min(found, key=len)
    if origin is typing.Literal:
        return [] if value in args else [f"{where}: {value!r} is not one of {args}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        return [
            e for i, item in enumerate(value) for e in value_errors(item, args[0], f"{where}[{i}]")
        ]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not an object"]
        return [
            e for key, item in value.items() for e in value_errors(item, args[1], f"{where}.{key}")
        ]
    if hint is typing.Any or hint is object:
        return model_errors(value, where) if _sdk_model(value) else []
    if hint is type(None):
        return [] if value is None else [f"{where}: {value!r} is not null"]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        known = {member.value for member in hint}
        return [] if value in known else [f"{where}: {value!r} is not a {hint.__name__}"]
    if hint in (int, float):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and (hint is float or isinstance(value, int)):
            return []
        return [f"{where}: {value!r} is not {hint.__name__}"]
    if isinstance(hint, type):
        if isinstance(value, dict) and hint.__module__.startswith("grafana_foundation_sdk.models."):
            # The SDK's from_json leaves some members as parsed JSON (transformations).
            return model_errors(typing.cast(Any, hint).from_json(value), where)
        if not isinstance(value, hint):
            return [f"{where}: {type(value).__name__} is not {hint.__name__}"]
        return model_errors(value, where) if _sdk_model(value) else []
    return [f"{where}: cannot check {hint}"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_each_dashboard_is_valid_for_grafanas_schema(name: str) -> None:
    """Read back through the SDK's models (generated from Grafana 11.6's schema):
    nothing unknown to them is dropped, and every member has its schema type; panel
    options and field config by the panel type's own model, InfluxDB queries by
    grafana.build.influx (strict)."""
    register()
    written = BOARDS[name]
    board = Dashboard.from_json(written)
    read_back = json.loads(json.dumps(board, cls=JSONEncoder))
    assert is_subset(written, read_back) == []
    assert model_errors(board, name) == []


def test_the_schema_check_finds_mistakes() -> None:
    register()
    board = json.loads(json.dumps(BOARDS["fleet-overview.json"]))
    board["graphTooltip"] = 7
    first = board["panels"][0]
    first["options"]["colorMode"] = "loud"
    first["gridPos"]["w"] = "12"
    first["fieldConfig"]["defaults"]["thresholds"]["mode"] = "sometimes"
    first["fieldConfig"]["defaults"]["unitt"] = "s"
    errors = model_errors(Dashboard.from_json(board), "x")
    assert len(errors) == 4, errors
    back = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    assert is_subset(board, back) == [
        ".panels[0].fieldConfig.defaults.unitt: not in Grafana's schema"
    ]
    first["targets"][0]["rawQuery"] = False
    with pytest.raises(ValueError, match="raw InfluxQL"):
        Dashboard.from_json(board)


#: Where grafana-foundation-sdk's JSON Schemas are (its repository, branch
#: v11.6.x+cog-v0.0.x, folder jsonschema/): opt-in, as they are not shipped.
#: Grafana 11.6's schemas as JSON Schema (tests/grafana_jsonschema/README.md says whence).
SCHEMAS = Path(__file__).resolve().parents[1] / "grafana_jsonschema"


def validate(file: str, definition: str, value: Any) -> list[str]:
    """``value`` against a definition of one of the SDK's JSON Schemas."""
    schema = json.loads((SCHEMAS / f"{file}.jsonschema.json").read_text())
    loose = schema["definitions"]
    if "Threshold" in loose:
        loose["Threshold"]["properties"]["value"] = {"type": ["number", "null"]}
        loose["MatcherConfig"]["properties"]["options"] = {}
        loose["DynamicConfigValue"]["properties"]["value"] = {}
    schema["$ref"] = f"#/definitions/{definition}"
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(value)
    ]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_each_dashboard_validates_against_the_sdks_json_schema(name: str) -> None:
    """The same schema as JSON Schema (draft 7), with the three places where the
    generated schema is narrower than Grafana itself: a threshold's base step is
    null (-Infinity, as the schema's own comment says), and a matcher's options and
    an override's value may be anything (CUE ``_``, rendered as an object)."""
    board = BOARDS[name]
    errors = validate("dashboard", "Dashboard", board)
    for item in panels(board):
        kind = item["type"].replace("-", "")
        if "options" in item:
            errors += validate(kind, "Options", item["options"])
        custom = item["fieldConfig"]["defaults"].get("custom")
        if custom is not None:
            errors += validate(kind, "FieldConfig", custom)
    assert errors == []


def test_each_alert_rule_validates_against_the_sdks_json_schema() -> None:
    """As the provisioning API has them (the file differs only around the group)."""
    errors = []
    for group, _, group_rules in alerts.GROUPS:
        for rule in group_rules:
            api = alerts.plain(alerts.sdk_rule(rule).folder_uid("vigie").rule_group(group).build())
            errors += validate("alerting", "Rule", api)
            for query in api["data"][1:]:
                kind = {"reduce": "TypeReduce", "threshold": "TypeThreshold"}[
                    query["model"]["type"]
                ]
                errors += validate("expr", kind, query["model"])
    policy = {
        key: value for key, value in alerts.policies_file()["policies"][0].items() if key != "orgId"
    }
    errors += validate("alerting", "NotificationPolicy", policy)
    assert errors == []


def test_each_dashboard_is_complete() -> None:
    for name, board in BOARDS.items():
        assert board["tags"] == ["vigie"], name
        assert board["title"].startswith("Vigie: "), name
        assert board["refresh"], name
        assert board["time"]["from"].startswith("now-"), name
        for item in panels(board):
            assert item["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}, item["title"]
            for target in item["targets"]:
                assert target["rawQuery"] is True
                assert target["datasource"]["uid"] == DATASOURCE_UID
        for variable in board["templating"].get("list", []):
            assert variable["datasource"]["uid"] == DATASOURCE_UID
            assert variable["query"].startswith("SHOW TAG VALUES FROM")


def test_every_panel_has_a_unit_and_thresholds() -> None:
    for name, board in BOARDS.items():
        ids = []
        for item in board["panels"]:
            ids.append(item["id"])
            ids.extend(nested["id"] for nested in item.get("panels", []))
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        for item in panels(board):
            grid = item["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{name}: {item['title']} is off the grid"
            defaults = item["fieldConfig"]["defaults"]
            assert defaults.get("unit"), f"{name}: {item['title']} has no unit"
            steps = defaults["thresholds"]["steps"]
            assert steps, f"{name}: {item['title']} has no thresholds"
            assert steps[0]["value"] is None, f"{name}: {item['title']}"
            values = [step["value"] for step in steps[1:]]
            assert values == sorted(values), f"{name}: {item['title']}"
            assert item["description"], f"{name}: {item['title']} is not described"


def test_instrument_colours_are_as_operators_read_them() -> None:
    (table,) = [
        item for item in panels(BOARDS["booth-detail.json"]) if item["title"] == "Instruments"
    ]
    by_column = {
        override["matcher"]["options"]: {p["id"]: p["value"] for p in override["properties"]}
        for override in table["fieldConfig"]["overrides"]
    }

    def steps(column: str) -> list[tuple[float | None, str]]:
        return [(s["value"], s["color"]) for s in by_column[column]["thresholds"]["steps"]]

    assert steps("battery") == [(None, "red"), (20, "orange"), (40, "green")]
    assert steps("calibration due") == [(None, "red"), (0, "orange"), (30, "green")]


def test_every_unit_an_instrument_may_send_is_shown() -> None:
    for vital in booth.VITALS:
        for measurement, field in vital.fields:
            allowed = READING_FIELDS[ReadingKind(measurement)][field]
            assert allowed <= set(vital.units), (vital.title, field, allowed - set(vital.units))
    assert READING_FIELDS[ReadingKind.POSITION]["speed"] <= set(bus.SPEED_UNITS)


@pytest.mark.parametrize(
    ("field", "unit", "units", "matches"),
    [
        ("weight", "kg", "fat_free_mass=kg;weight=kg", True),
        ("weight", "kg", "fat_free_mass=kg;weight=[lb_av]", False),
        ("weight", "kg", "bmi=kg/m2", False),
        ("glucose_concentration", "mol/L", "glucose_concentration=mmol/L", False),
        ("systolic", "mm[Hg]", "diastolic=mm[Hg];systolic=mm[Hg]", True),
        ("speed", "km/h", "latitude=deg;speed=km/h", True),
    ],
)
def test_a_unit_filter_matches_its_field_and_unit_only(
    field: str, unit: str, units: str, matches: bool
) -> None:
    # The /regex/ of InfluxQL (RE2) with its escaped slashes, read by Python's re.
    pattern = re.search(r"=~ /(.*)/$", unit_is(field, unit))
    assert pattern is not None
    assert bool(re.search(pattern.group(1).replace("\\/", "/"), units)) is matches


ALLOWED_NO_DATA = {"OK", "NoData", "Alerting"}
ALLOWED_ERROR = {"OK", "Error", "Alerting"}


def group_by_tags(query: str) -> set[str]:
    return {
        tag
        for clause in re.findall(r"GROUP BY ([^()]*?)(?:\)|$)", query)
        for tag in re.findall(r'"([^"]+)"', clause)
    }


@pytest.mark.parametrize("rule", rules(), ids=[rule["uid"] for rule in rules()])
def test_each_alert_rule_is_complete(rule: dict[str, Any]) -> None:
    assert set(rule) >= {
        "uid",
        "title",
        "condition",
        "data",
        "for",
        "labels",
        "annotations",
        "noDataState",
        "execErrState",
    }
    refs = [query["refId"] for query in rule["data"]]
    assert len(refs) == len(set(refs))
    assert rule["condition"] in refs
    first, *expressions = rule["data"]
    assert first["datasourceUid"] == DATASOURCE_UID
    assert first["model"]["rawQuery"] is True
    assert first["relativeTimeRange"]["from"] > 0
    assert "$timeFilter" in first["model"]["query"]
    for expression in expressions:
        assert expression["datasourceUid"] == "__expr__"
        assert expression["model"]["type"] in {"reduce", "threshold", "math"}
        assert expression["model"]["expression"] in refs[: refs.index(expression["refId"])]
    assert rule["noDataState"] in ALLOWED_NO_DATA
    assert rule["execErrState"] in ALLOWED_ERROR
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]
    # Every label an annotation shows is one the query's series carry.
    shown = set(re.findall(r"\$labels\.(\w+)", json.dumps(rule["annotations"])))
    assert shown <= group_by_tags(first["model"]["query"]), shown
    assert not re.search(r"\$\{", json.dumps(rule)), (
        "provisioning would read ${...} as the environment"
    )


def test_rule_groups_and_examples() -> None:
    groups = rule_groups()
    assert all(group["folder"] == "Vigie" and group["interval"] for group in groups)
    uids = [rule["uid"] for rule in rules()]
    assert len(uids) == len(set(uids))
    examples = ROOT / "grafana" / "alerting-examples"
    points = yaml.safe_load((examples / "contact-points.yaml").read_text())
    policies = yaml.safe_load((examples / "notification-policies.yaml").read_text())
    names = {point["name"] for point in points["contactPoints"]}
    (root,) = policies["policies"]
    assert root["receiver"] in names
    assert all(route["receiver"] in names for route in root["routes"])
    receiver = points["contactPoints"][0]["receivers"][0]
    assert receiver["settings"]["addresses"].endswith(".invalid")  # clearly a placeholder


def test_the_examples_are_not_provisioned() -> None:
    # Grafana reads every file of provisioning/alerting/ (older versions refuse any
    # other suffix): only the rules live there.
    folder = ROOT / "grafana" / "provisioning" / "alerting"
    assert [path.name for path in folder.iterdir()] == ["vigie-rules.yaml"]
