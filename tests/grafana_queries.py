"""The InfluxQL of the provisioned Grafana dashboards and alert rules, for contract
tests: every query of every panel (rows' nested panels too), every template variable,
every alert rule's query A, and each expanded as Grafana expands it before sending."""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "grafana" / "dashboards"
ALERTING = ROOT / "grafana" / "provisioning" / "alerting"
#: Grafana's own macros, as the dashboards' panels get them over the last hour.
MACROS = {"timeFilter": "time > now() - 1h", "__interval": "1m"}
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
_FROM = re.compile(r'\bFROM\s+((?:"[^"]+"\s*,\s*)*"[^"]+")')
_QUOTED = re.compile(r'(\bAS\s+)?"([^"]+)"')


@dataclass(frozen=True)
class Found:
    """One query: where it is (``file: panel [refId]``), the panel it belongs to
    (a panel may query once per unit, and needs only one of them to find data), and
    for an alert rule the window of its ``relativeTimeRange``."""

    where: str
    panel: str
    query: str
    window_s: int | None = None


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, with those nested in (collapsed) rows."""
    for item in board.get("panels", []):
        if item["type"] == "row":
            yield from item.get("panels", [])
        else:
            yield item


def rule_groups() -> list[dict[str, Any]]:
    groups = []
    for path in sorted(ALERTING.glob("*.yaml")):
        groups.extend(yaml.safe_load(path.read_text()).get("groups", []))
    return groups


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def dashboard_queries() -> list[Found]:
    found = []
    for name, board in dashboards().items():
        for item in panels(board):
            for target in item.get("targets", []):
                where = f"{name}: {item['title']}"
                found.append(Found(f"{where} [{target['refId']}]", where, target["query"]))
        for variable in board.get("templating", {}).get("list", []):
            where = f"{name}: variable ${variable['name']}"
            found.append(Found(where, where, variable["query"]))
    return found


def alert_queries() -> list[Found]:
    """Each rule's InfluxDB query (the expressions after it are Grafana's own)."""
    found = []
    for rule in rules():
        for query in rule["data"]:
            if query["datasourceUid"] != "__expr__":
                where = f"alert {rule['uid']} [{query['refId']}]"
                window = query["relativeTimeRange"]["from"]
                found.append(Found(where, where, query["model"]["query"], window))
    return found


def all_queries() -> list[Found]:
    return [*dashboard_queries(), *alert_queries()]


def _regex_escaped(value: str) -> str:
    # Grafana formats a variable used inside /regex/ as a regex-escaped literal.
    return re.sub(r"([\\^$*+?.()|\[\]{}/])", r"\\\1", value)


def runnable(
    query: str, variables: Mapping[str, str] | None = None, window_s: int | None = None
) -> str:
    """The query as Grafana sends it: ``$timeFilter`` over the last hour (an alert
    rule: over its ``relativeTimeRange``), ``$__interval`` one minute, each dashboard
    variable set to a value. Every variable must be expanded."""
    values = dict(MACROS)
    if window_s is not None:
        values["timeFilter"] = f"time > now() - {window_s}s"
    escaped = {name: _regex_escaped(value) for name, value in (variables or {}).items()}

    def expand(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in values:
            return values[name]
        if name in escaped:
            return escaped[name]
        raise ValueError(f"no value for ${name} in {query}")

    expanded = _VARIABLE.sub(expand, query)
    assert not _VARIABLE.search(expanded), expanded
    return expanded


def _subqueries(query: str) -> tuple[str, list[str]]:
    """The query with each ``FROM (subquery)`` as ``FROM ()``, and those subqueries."""
    outer, inner = [], []
    index = 0
    for match in re.finditer(r"\bFROM\s*\(", query):
        if match.start() < index:
            continue  # inside a subquery already taken
        start = match.end()
        depth, end = 1, start
        while depth:
            depth += {"(": 1, ")": -1}.get(query[end], 0)
            end += 1
        outer.append(query[index:start])
        inner.append(query[start : end - 1])
        index = end - 1
    outer.append(query[index:])
    return "".join(outer), inner


def _level(query: str) -> tuple[set[str], set[str], set[str]]:
    """(measurements, names, aliases) of one query, its subqueries resolved: a name
    an outer query gives to a column of its subquery is an alias of the subquery's."""
    text, subqueries = _subqueries(query)
    measurements: set[str] = set()
    for group in _FROM.findall(text):
        measurements.update(re.findall(r'"([^"]+)"', group))
    names: set[str] = set()
    aliases: set[str] = set()
    for alias, name in _QUOTED.findall(text):
        (aliases if alias else names).add(name)
    names -= measurements
    inner_names: set[str] = set()
    inner_aliases: set[str] = set()
    for subquery in subqueries:
        sub_measurements, sub_names, sub_aliases = _level(subquery)
        measurements |= sub_measurements
        inner_names |= sub_names
        inner_aliases |= sub_aliases
    return measurements, inner_names | (names - inner_aliases), aliases


def referenced_names(query: str) -> tuple[set[str], set[str]]:
    """The measurements a query reads (``FROM``, several, in subqueries, ``SHOW TAG
    VALUES FROM``) and the fields and tags it names (not the aliases it gives)."""
    measurements, names, _ = _level(query)
    return measurements, names


_REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "last": lambda values: values[-1],
    "max": max,
    "min": min,
    "mean": lambda values: sum(values) / len(values),
    "sum": sum,
    "count": len,
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "lt": operator.lt,
    "gte": operator.ge,
    "lte": operator.le,
}


def firing(
    rule: Mapping[str, Any], series: Iterable[tuple[Mapping[str, str], list[Any]]]
) -> dict[frozenset[tuple[str, str]], float]:
    """The alerts a rule raises from its query A's series (labels, values), as Grafana
    evaluates its reduce (dropping nulls) and threshold: labels → reduced value."""
    models = {query["refId"]: query["model"] for query in rule["data"]}
    condition = models[rule["condition"]]
    assert condition["type"] == "threshold"
    reduce = models[condition["expression"]]
    assert reduce["type"] == "reduce"
    assert reduce["settings"]["mode"] == "dropNN"
    assert models[reduce["expression"]]["rawQuery"] is True
    (check,) = condition["conditions"]
    compare, (threshold,) = _COMPARE[check["evaluator"]["type"]], check["evaluator"]["params"]
    found = {}
    for labels, values in series:
        numbers = [value for value in values if value is not None]
        if numbers:
            value = _REDUCERS[reduce["reducer"]](numbers)
            if compare(value, threshold):
                found[frozenset(labels.items())] = value
    return found
