"""The InfluxQL queries of the provisioned Grafana dashboards, for contract tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARDS = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"
_FROM = re.compile(r'\bFROM\s+"([^"]+)"')
_QUOTED = re.compile(r'(\bAS\s+)?"([^"]+)"')


def dashboard_queries() -> list[tuple[str, str]]:
    """(dashboard file and panel title, query) for every target of every dashboard."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                found.append((f"{path.name}: {panel['title']}", target["query"]))
    return found


def referenced_names(query: str) -> tuple[str, set[str]]:
    """The measurement a query reads and the fields and tags it names (not its aliases)."""
    (measurement,) = _FROM.findall(query)
    names = {name for alias, name in _QUOTED.findall(query) if not alias} - {measurement}
    return measurement, names


def runnable(query: str) -> str:
    """The query as Grafana would send it over the last hour."""
    return query.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "1m")
