"""What technicians ask of the fleet, answered from InfluxDB with InfluxQL.

Every value placed in a query is validated first (identifiers, kinds, durations), so
nothing from the command line reaches InfluxQL unchecked.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from fleet.errors import QueryError
from fleet.storage.influx import InfluxClient
from fleet.storage.presence import AgentStatus, PresenceRecord, agent_status, current_presence
from fleet.storage.schema import (
    AGENT_DELIVERY,
    AGENT_EVENT,
    AGENT_HEALTH,
    AGENT_PRESENCE,
    BIRTH_FIELDS,
    DEVICE_STATUS,
)
from vigie_core.contract.data import ReadingKind
from vigie_core.contract.presence import OpeningHours

_IDENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_DURATION_RE = re.compile(r"^[1-9]\d{0,5}[smhdw]$")
#: How many state changes per agent are read to find its current presence.
_PRESENCE_DEPTH = 20
#: Every measurement that holds numbered messages (readings, health, events).
DATA_MEASUREMENTS: Final = [AGENT_HEALTH, AGENT_EVENT, *(kind.value for kind in ReadingKind)]


def from_ns(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1e9, tz=UTC)


def _ident(value: str, what: str) -> str:
    if not _IDENT_RE.match(value):
        raise QueryError(f"{what} {value!r} is not a valid identifier ({_IDENT_RE.pattern})")
    return value


def _quoted(names: list[str]) -> str:
    return ",".join(f'"{name}"' for name in names)


@dataclass(frozen=True, slots=True)
class AgentView:
    """One row of ``fleet agents``."""

    agent_id: str
    status: AgentStatus
    site_id: str | None
    site_name: str | None
    kind: str | None
    agent_version: str | None
    devices: list[str]
    last_seen: datetime | None
    status_since: datetime
    session: int
    opening_hours: OpeningHours | None
    tags: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "status": self.status.value,
            "site_id": self.site_id,
            "site_name": self.site_name,
            "kind": self.kind,
            "agent_version": self.agent_version,
            "devices": self.devices,
            "tags": self.tags,
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
            "status_since": self.status_since.isoformat(),
            "session": self.session,
        }


def _presence_records(
    client: InfluxClient, agent_id: str | None
) -> dict[str, list[PresenceRecord]]:
    where = f"WHERE agent_id = '{_ident(agent_id, 'agent id')}' " if agent_id else ""
    series = client.query(
        f'SELECT * FROM "{AGENT_PRESENCE}" {where}GROUP BY agent_id '
        f"ORDER BY time DESC LIMIT {_PRESENCE_DEPTH}"
    )
    records: dict[str, list[PresenceRecord]] = {}
    for item in series:
        for row in item.rows():
            if row.get("online") is None or row.get("session") is None:
                # InfluxDB 1.x may answer with a point whose fields are half written
                # while a burst of them is being written (bench/scale.py met it at a
                # 10,000-agent reconnection): skip it; the next read has it whole.
                continue
            birth = None
            if row.get("site_id") is not None:
                birth = {key: row[key] for key in BIRTH_FIELDS}
            records.setdefault(item.tags["agent_id"], []).append(
                PresenceRecord(
                    bool(row["online"]), int(row["session"]), from_ns(row["time"]), birth
                )
            )
    return records


def _last_seen(client: InfluxClient, agent_id: str | None) -> dict[str, datetime]:
    where = f" WHERE agent_id = '{_ident(agent_id, 'agent id')}'" if agent_id else ""
    series = client.query(
        f'SELECT last("seq") FROM {_quoted(DATA_MEASUREMENTS)}{where} GROUP BY agent_id'
    )
    seen: dict[str, datetime] = {}
    for item in series:
        agent = item.tags["agent_id"]
        for row in item.rows():
            at = from_ns(row["time"])
            seen[agent] = max(at, seen.get(agent, at))
    return seen


def list_agents(
    client: InfluxClient, now: datetime, agent_id: str | None = None
) -> list[AgentView]:
    """Every agent that ever announced itself, with its current status."""
    last_seen = _last_seen(client, agent_id)
    views = []
    for agent, records in sorted(_presence_records(client, agent_id).items()):
        presence = current_presence(records)
        if presence is None:
            continue
        birth = presence.birth or {}
        hours = (
            OpeningHours.model_validate_json(birth["opening_hours"])
            if birth.get("opening_hours")
            else None
        )
        devices = [device["id"] for device in json.loads(birth.get("devices") or "[]")]
        seen = max(filter(None, [last_seen.get(agent), presence.changed_at]))
        views.append(
            AgentView(
                agent_id=agent,
                status=agent_status(presence.online, hours, now),
                site_id=birth.get("site_id"),
                site_name=birth.get("site_name"),
                kind=birth.get("kind"),
                agent_version=birth.get("agent_version"),
                devices=devices,
                last_seen=seen,
                status_since=presence.changed_at,
                session=presence.session,
                opening_hours=hours,
                tags=[tag for tag in str(birth.get("tags") or "").split(",") if tag],
            )
        )
    return views


@dataclass(frozen=True, slots=True)
class Delivery:
    """Sequence-number accounting for one agent over a window."""

    window: str
    stored: int
    first_seq: int | None
    last_seq: int | None
    missing: int
    #: The first few gaps, as inclusive ranges.
    gaps: list[tuple[int, int]]
    #: Redeliveries the fleet stored again (harmless, counted).
    duplicates: int

    def as_json(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "stored": self.stored,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "missing": self.missing,
            "gaps": [list(gap) for gap in self.gaps],
            "duplicates": self.duplicates,
        }


def summarize_delivery(
    seqs: Iterable[int], duplicates: int, window: str, max_gaps: int = 10
) -> Delivery:
    """Gaps between the first and the last sequence number stored. Pure."""
    ordered = sorted(set(seqs))
    gaps: list[tuple[int, int]] = []
    missing = 0
    for before, after in itertools.pairwise(ordered):
        if after > before + 1:
            missing += after - before - 1
            if len(gaps) < max_gaps:
                gaps.append((before + 1, after - 1))
    return Delivery(
        window,
        len(ordered),
        ordered[0] if ordered else None,
        ordered[-1] if ordered else None,
        missing,
        gaps,
        duplicates,
    )


@dataclass(frozen=True, slots=True)
class SeqWindow:
    """One agent's sequence numbers stored over the recent window, and the messages it
    counted as dropped over the same window."""

    stored: int
    first: int
    last: int
    dropped: int = 0

    @property
    def missing(self) -> int:
        """Numbers neither stored nor counted as dropped (never below zero: drops may
        concern messages outside the window)."""
        return max(0, self.last - self.first + 1 - self.stored - self.dropped)


def merge_seq_windows(parts: Iterable[tuple[int, int, int]]) -> SeqWindow | None:
    """(count, min, max) per measurement → one agent's window (None: nothing stored)."""
    found = [part for part in parts if part[0] > 0]
    if not found:
        return None
    return SeqWindow(
        stored=sum(count for count, _, _ in found),
        first=min(first for _, first, _ in found),
        last=max(last for _, _, last in found),
    )


def seq_windows(
    client: InfluxClient, window: str = "1h", settle: str = "1m"
) -> dict[str, SeqWindow]:
    """Per agent, the sequence numbers stored from ``window`` ago until ``settle`` ago
    (messages still on their way are left out) and the drops it counted meanwhile: one
    aggregate query for the whole fleet, never a row per message."""
    check_duration(window, "window")
    check_duration(settle, "settle")
    when = f"time > now() - {window} AND time < now() - {settle}"
    parts: dict[str, list[tuple[int, int, int]]] = {}
    for item in client.query(
        f'SELECT count("seq"), min("seq"), max("seq") FROM {_quoted(DATA_MEASUREMENTS)} '
        f"WHERE {when} GROUP BY agent_id"
    ):
        for row in item.rows():
            if row.get("count"):
                parts.setdefault(item.tags["agent_id"], []).append(
                    (int(row["count"]), int(row["min"]), int(row["max"]))
                )
    dropped: dict[str, int] = {}
    for item in client.query(
        f'SELECT spread("dropped_messages") FROM "{AGENT_HEALTH}" WHERE {when} GROUP BY agent_id'
    ):
        for row in item.rows():
            dropped[item.tags["agent_id"]] = int(row.get("spread") or 0)
    found = {}
    for agent, agent_parts in parts.items():
        merged = merge_seq_windows(agent_parts)
        if merged is not None:
            found[agent] = dataclasses.replace(merged, dropped=dropped.get(agent, 0))
    return found


@dataclass(frozen=True, slots=True)
class AgentDetail:
    """``fleet agent ID``: the agent's row, its latest health and its instruments."""

    agent: AgentView
    health: dict[str, Any] | None
    devices: list[dict[str, Any]]
    delivery: Delivery

    def as_json(self) -> dict[str, Any]:
        return {
            **self.agent.as_json(),
            "opening_hours": self.agent.opening_hours.model_dump(mode="json")
            if self.agent.opening_hours
            else None,
            "health": self.health,
            "device_status": self.devices,
            "delivery": self.delivery.as_json(),
        }


def check_duration(value: str, option: str) -> str:
    """An InfluxQL duration a technician may give (``30m``, ``24h``, ``7d``, ``2w``), or
    QueryError naming ``option``."""
    if not _DURATION_RE.match(value):
        raise QueryError(
            f"{option} {value!r} is not a duration: a number and s, m, h, d or w (30m, 24h, 7d)"
        )
    return value


_READING_KINDS: Final = frozenset(kind.value for kind in ReadingKind)


def _with_iso_time(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "time": from_ns(row["time"]).isoformat()}


def agent_detail(
    client: InfluxClient, agent_id: str, now: datetime, window: str = "24h"
) -> AgentDetail:
    check_duration(window, "--window")
    views = list_agents(client, now, agent_id=agent_id)
    if not views:
        raise QueryError(f"no agent {agent_id!r} has ever reported to this fleet")
    health = client.query(
        f"SELECT * FROM \"{AGENT_HEALTH}\" WHERE agent_id = '{agent_id}' ORDER BY time DESC LIMIT 1"
    )
    devices = client.query(
        f"SELECT * FROM \"{DEVICE_STATUS}\" WHERE agent_id = '{agent_id}' "
        "GROUP BY device ORDER BY time DESC LIMIT 1"
    )
    latest = _with_iso_time(health[0].rows()[0]) if health else None
    device_rows = [
        {"device": item.tags["device"], **_with_iso_time(item.rows()[0])} for item in devices
    ]
    # Each instrument's last reading, for the technician to compare with its display.
    kinds = sorted({row["kind"] for row in device_rows if row.get("kind") in _READING_KINDS})
    last = (
        client.query(
            f"SELECT * FROM {_quoted(kinds)} WHERE agent_id = '{agent_id}' "
            "GROUP BY device ORDER BY time DESC LIMIT 1"
        )
        if kinds
        else []
    )
    latest_readings = {
        item.tags["device"]: {"kind": item.name, **_with_iso_time(item.rows()[0])}
        for item in last
        if item.rows()
    }
    for row in device_rows:
        row["last_reading"] = latest_readings.get(row["device"])
    since = f"agent_id = '{agent_id}' AND time > now() - {window}"
    seqs = [
        row["seq"]
        for item in client.query(f"SELECT seq FROM {_quoted(DATA_MEASUREMENTS)} WHERE {since}")
        for row in item.rows()
    ]
    repeats = client.query(f'SELECT sum("duplicates") FROM "{AGENT_DELIVERY}" WHERE {since}')
    duplicates = int(repeats[0].rows()[0]["sum"]) if repeats else 0
    return AgentDetail(views[0], latest, device_rows, summarize_delivery(seqs, duplicates, window))


def readings(
    client: InfluxClient,
    agent_id: str,
    kind: ReadingKind | None,
    since: str,
    limit: int,
) -> list[dict[str, Any]]:
    """An agent's readings, newest first, one dict per reading with its ``kind``."""
    _ident(agent_id, "agent id")
    check_duration(since, "--since")
    if not 1 <= limit <= 100_000:
        raise QueryError("--limit must be between 1 and 100000")
    kinds = [kind.value] if kind else [item.value for item in ReadingKind]
    series = client.query(
        f"SELECT * FROM {_quoted(kinds)} WHERE agent_id = '{agent_id}' "
        f"AND time > now() - {since} ORDER BY time DESC LIMIT {limit}"
    )
    rows = []
    for item in series:
        for row in item.rows():
            values = {key: value for key, value in row.items() if value is not None}
            values.pop("agent_id", None)
            rows.append({"kind": item.name, **_with_iso_time(values)})
    rows.sort(key=lambda row: row["time"], reverse=True)
    return rows[:limit]
