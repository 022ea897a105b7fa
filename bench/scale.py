"""Scale benchmark: how many agents one Mosquitto and one fleet instance hold.

Starts its own Mosquitto (TLS, a certificate per agent, the dynamic-security ACLs, as
deployed) and InfluxDB, a real ``fleet serve`` process, and ``--agents`` light
simulated agents (``bench/scale_sim.py``: thousands per process over ``--processes``
worker processes, each agent with its own TLS connection and certificate, a health
report every 30 s and a reading a minute, its outbox in memory). Then, each phase
timed:

1. ramp-up: every agent connects (``--connect-rate`` a second), until ``list_agents``
   (what ``fleet agents`` shows) has exactly the agents the simulator has connected,
   each with its current session;
2. steady state for ``--steady-s``: messages/s, end-to-end confirmation delay, CPU and
   memory of the broker, the fleet, InfluxDB and the simulator;
3. broker restart: SIGTERM, ``--outage-s`` down (agents keep producing), started again
   on the same persistence; time until every agent is back, presence is exact again,
   and every message produced before the broker came back is confirmed;
4. final count: per agent, the sequence numbers stored in InfluxDB against those
   generated (lost, duplicated), the fleet's dead letters and ``agent_delivery``.

    .venv/bin/python bench/scale.py --agents 1000 --steady-s 60

Agent certificates are issued once and kept in ``--workdir`` (default
/tmp/vigie-scale); every run starts with a fresh broker store and InfluxDB. Not a
test: it never fails on a figure, it prints them.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
import yaml
from rich.console import Console
from rich.table import Table
from scale_sim import HEALTH_INTERVAL_S, READING_INTERVAL_S, serve

from fleet.devstack.influxdb import InfluxDB, fleet_settings
from fleet.devstack.processes import start_fleet_service, terminate
from fleet.devstack.services import Mosquitto
from fleet.storage.influx import InfluxClient
from fleet.storage.presence import AgentStatus
from fleet.storage.queries import DATA_MEASUREMENTS, list_agents
from fleet.storage.schema import AGENT_DELIVERY, AGENT_PRESENCE, DEAD_LETTER
from vigie_core.clock import utc_now

DATABASE = "scale"
console = Console(width=150)


def enroll(broker: Mosquitto, names: list[str]) -> dict[str, Any]:
    """Every agent's identity, issued once (kept in the broker's folder); before the
    broker starts, so it starts knowing them all (``dynamic-security.json``)."""
    started = time.monotonic()
    existing = sum((broker.workdir / "identities" / name / "client.crt").exists() for name in names)
    broker.enroll(*names)
    broker.service_credentials  # noqa: B018 - the fleet's identity, issued the same way
    return {
        "issued": len(names) - existing,
        "cached": existing,
        "seconds": round(time.monotonic() - started, 1),
    }


# --- resource use ------------------------------------------------------------------------


@dataclass
class Usage:
    """CPU and memory of named processes over a phase (a process may be replaced)."""

    find: dict[str, Callable[[], list[psutil.Process]]]
    started: float = field(default_factory=time.monotonic)
    _cpu: dict[str, dict[int, float]] = field(default_factory=dict)
    _base: dict[str, float] = field(default_factory=dict)
    rss: Counter[str] = field(default_factory=Counter)
    fds: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.sample()
        self._base = {name: sum(cpu.values()) for name, cpu in self._cpu.items()}
        self.started = time.monotonic()

    def sample(self) -> None:
        for name, find in self.find.items():
            seen = self._cpu.setdefault(name, {})
            rss = fds = 0
            for process in find():
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    seen[process.pid] = times.user + times.system
                    rss += process.memory_info().rss
                    fds += process.num_fds()
            self.rss[name] = max(self.rss[name], rss)
            self.fds[name] = max(self.fds[name], fds)

    def result(self) -> dict[str, dict[str, float]]:
        self.sample()
        wall = time.monotonic() - self.started
        return {
            name: {
                "cpu_percent": round(
                    100 * (sum(self._cpu[name].values()) - self._base.get(name, 0)) / wall, 1
                ),
                "rss_mib": round(self.rss[name] / 2**20, 1),
                "fds": self.fds[name],
            }
            for name in self.find
        }


def children_named(name: str) -> Callable[[], list[psutil.Process]]:
    def find() -> list[psutil.Process]:
        found = []
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                if child.name() == name:
                    found.append(child)
        return found

    return find


# --- the simulator's workers -------------------------------------------------------------


class Workers:
    """The simulator's processes, asked over one pipe each."""

    def __init__(self, ids: list[str], count: int, broker: Mosquitto, client: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for number in range(count):
            ours, theirs = context.Pipe()
            options = {
                "agent_ids": [(i, ids[i]) for i in range(number, len(ids), count)],
                "host": broker.host,
                "port": broker.port,
                "ca_file": broker.authority.ca_path,
                "identities": broker.workdir / "identities",
                "client": client,
                "seed": number,
            }
            process = context.Process(target=serve, args=(theirs, options), daemon=True)
            process.start()
            self.pipes.append(ours)
            self.processes.append(process)
        for pipe in self.pipes:
            if not pipe.poll(120) or pipe.recv() != "ready":
                raise RuntimeError("a simulator worker did not start")

    def psutil(self) -> list[psutil.Process]:
        return [psutil.Process(p.pid) for p in self.processes if p.pid and p.is_alive()]

    def ask(self, *request: Any) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(request)
        return [pipe.recv() for pipe in self.pipes]

    def status(self, latencies: bool = False) -> dict[str, Any]:
        merged: dict[str, Any] = {"connected": {}, "latencies": []}
        for part in self.ask("status", latencies):
            merged["connected"].update(part.pop("connected"))
            merged["latencies"].extend(part.pop("latencies", []))
            for key, value in part.items():
                merged[key] = merged.get(key, 0) + value
        return merged

    def seqs(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for part in self.ask("seqs"):
            found.update(part)
        return found

    def stop(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("stop",))
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()


# --- what the fleet shows ----------------------------------------------------------------


@dataclass
class Presence:
    """``list_agents`` against the simulator's connected agents and their sessions."""

    seconds: float
    online: int
    #: Connected in the simulator, not shown online (or not at all).
    missing: list[str]
    #: Shown online, not connected in the simulator.
    extra: list[str]
    #: Online with another session than the simulator's (a birth it never stored).
    stale: list[str]

    @property
    def exact(self) -> bool:
        return not (self.missing or self.extra or self.stale)

    def summary(self) -> dict[str, Any]:
        return {
            "list_agents_s": round(self.seconds, 2),
            "online": self.online,
            "missing": len(self.missing),
            "extra": len(self.extra),
            "stale_session": len(self.stale),
            "examples": (self.missing + self.extra + self.stale)[:5],
        }


#: list_agents calls that raised: it trusts every presence row to hold all its fields,
#: and InfluxDB 1.6 can return a point half-written while a burst of births is stored
#: (``int(row["session"])`` on None, fleet/storage/queries.py).
LIST_AGENTS_ERRORS: Counter[str] = Counter()


def presence(influx: InfluxClient, connected: dict[str, int]) -> Presence:
    started = time.monotonic()
    try:
        views = list_agents(influx, utc_now())
    except TypeError as exc:
        LIST_AGENTS_ERRORS[str(exc)] += 1
        console.print(f"  list_agents failed: {exc}", markup=False)
        return Presence(time.monotonic() - started, 0, sorted(connected), [], [])
    took = time.monotonic() - started
    online = {view.agent_id: view.session for view in views if view.status is AgentStatus.ONLINE}
    return Presence(
        took,
        len(online),
        sorted(connected.keys() - online.keys()),
        sorted(online.keys() - connected.keys()),
        sorted(a for a in connected.keys() & online.keys() if online[a] != connected[a]),
    )


def stored_seqs(influx: InfluxClient) -> dict[str, Counter[int]]:
    """Per agent, how many times each sequence number is stored (one query)."""
    quoted = ",".join(f'"{name}"' for name in DATA_MEASUREMENTS)
    counts: dict[str, Counter[int]] = {}
    for item in influx.query(f'SELECT "seq" FROM {quoted} GROUP BY agent_id'):
        counts.setdefault(item.tags["agent_id"], Counter()).update(
            row["seq"] for row in item.rows()
        )
    return counts


def scalar(influx: InfluxClient, query: str, column: str) -> int:
    series = influx.query(query)
    return int(series[0].rows()[0][column] or 0) if series else 0


# --- the phases --------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    workers: Workers
    influx: InfluxClient
    broker: Mosquitto
    find: dict[str, Callable[[], list[psutil.Process]]]
    ids: list[str]
    figures: dict[str, Any] = field(default_factory=dict)
    #: (seconds since the run began, agents connected, outbox, confirmed), every poll.
    timeline: list[tuple[float, int, int, int]] = field(default_factory=list)
    _noted: float = 0.0
    _began: float = field(default_factory=time.monotonic)

    def status(self, latencies: bool = False) -> dict[str, Any]:
        found = self.workers.status(latencies)
        self.timeline.append(
            (
                round(time.monotonic() - self._began, 1),
                len(found["connected"]),
                found["outbox"],
                found["confirmed"],
            )
        )
        return found

    def longest_stall(self, since: float) -> float:
        """The longest time (s) confirmations ran under a tenth of the production rate
        while messages waited: the fleet (or the acks' way back) all but stopped."""
        floor = 0.1 * len(self.ids) * (1 / HEALTH_INTERVAL_S + 1 / READING_INTERVAL_S)
        longest, start = 0.0, None
        points = [point for point in self.timeline if point[0] >= since]
        for before, after in itertools.pairwise(points):
            rate = (after[3] - before[3]) / max(after[0] - before[0], 0.1)
            if rate < floor and before[2] > 0:
                start = before[0] if start is None else start
                longest = max(longest, after[0] - start)
            else:
                start = None
        return round(longest, 1)

    def note(self, status: dict[str, Any]) -> None:
        """A progress line at most every 10 s (a 10,000-agent phase takes minutes)."""
        if time.monotonic() - self._noted >= 10:
            self._noted = time.monotonic()
            console.print(
                f"  {time.strftime('%H:%M:%S')} connected {len(status['connected']):,}, "
                f"outbox {status['outbox']:,}, confirmed {status['confirmed']:,}, "
                f"failures {status['connect_failures']:,}"
            )

    def until(
        self, check: Callable[[], bool], usage: Usage, timeout_s: float, every_s: float = 1.0
    ) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            usage.sample()
            if check():
                return True
            time.sleep(every_s)
        return False

    def fleet_connected(self) -> bool:
        """Whether ``fleet serve`` holds a connection to the broker (TCP, its side)."""
        port = self.broker.port
        with contextlib.suppress(psutil.Error):
            for process in self.find["fleet"]():
                for connection in process.net_connections("tcp"):
                    if connection.raddr and connection.raddr.port == port:
                        return connection.status == psutil.CONN_ESTABLISHED
        return False

    def ramp_up(self) -> None:
        started = time.monotonic()
        usage = Usage(self.find)
        marks: dict[str, Any] = {}
        self.workers.ask("ramp", self.args.connect_rate / len(self.workers.pipes))
        status: dict[str, Any] = {}

        def all_connected() -> bool:
            nonlocal status
            status = self.status()
            self.note(status)
            return len(status["connected"]) == len(self.ids)

        ok = self.until(all_connected, usage, self.args.timeout_s)
        marks["all_connected_s"] = round(time.monotonic() - started, 1) if ok else None
        marks["connected"] = len(status["connected"])
        if ok:
            marks["connects_per_s"] = round(len(self.ids) / marks["all_connected_s"], 1)
        check = self.wait_presence(usage, started)
        marks.update(check)
        marks["connect_failures"] = status["connect_failures"]
        marks["usage"] = usage.result()
        self.figures["ramp_up"] = marks
        table = Table(title=f"(1) ramp-up: {len(self.ids):,} agents, {self.args.connect_rate:g}/s")
        for column in (
            "all connected (s)",
            "connects/s",
            "presence exact (s)",
            "list_agents (s)",
            "online",
            "missing / extra / stale",
            "connect failures",
        ):
            table.add_column(column, justify="right")
        table.add_row(
            _s(marks["all_connected_s"]),
            _s(marks.get("connects_per_s")),
            _s(marks["presence_exact_s"]),
            _s(marks["presence"]["list_agents_s"]),
            f"{marks['presence']['online']:,}",
            "{missing} / {extra} / {stale_session}".format(**marks["presence"]),
            f"{marks['connect_failures']:,}",
        )
        console.print(table)
        console.print(usage_table("ramp-up", marks["usage"]))

    def wait_presence(
        self, usage: Usage, started: float, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Poll ``list_agents`` until it matches the simulator exactly (or time out)."""
        found: Presence | None = None

        def exact() -> bool:
            nonlocal found
            connected = self.status()["connected"]
            found = presence(self.influx, connected)
            return found.exact

        ok = self.until(exact, usage, timeout_s or self.args.timeout_s, every_s=3.0)
        assert found is not None  # noqa: S101 - until() ran the check at least once
        return {
            "presence_exact_s": round(time.monotonic() - started, 1) if ok else None,
            "presence": found.summary(),
        }

    def steady(self) -> None:
        # First let the fleet catch up with the ramp-up (births, first messages): the
        # steady state is what it sustains, not the tail of a burst.
        settling = time.monotonic()
        settled = self.until(
            lambda: self.status()["outbox"] <= max(20, len(self.ids) // 20),
            Usage(self.find),
            300,
        )
        settle_s = round(time.monotonic() - settling, 1) if settled else None
        before = self.status(latencies=True)  # drops the ramp-up's delays
        usage = Usage(self.find)
        started = time.monotonic()
        self.until(lambda: False, usage, self.args.steady_s, every_s=2.0)
        after = self.status(latencies=True)
        wall = time.monotonic() - started
        check = presence(self.influx, after["connected"])
        delays = sorted(after["latencies"])
        marks: dict[str, Any] = {
            "settle_s": settle_s,
            "seconds": round(wall, 1),
            "generated_per_s": round((after["generated"] - before["generated"]) / wall, 1),
            "confirmed_per_s": round((after["confirmed"] - before["confirmed"]) / wall, 1),
            "resent": after["resent"] - before["resent"],
            "disconnects": after["disconnects"] - before["disconnects"],
            "outbox_at_end": after["outbox"],
            "confirm_delay_p50_s": _quantile(delays, 0.5),
            "confirm_delay_p99_s": _quantile(delays, 0.99),
            "confirm_delay_max_s": round(delays[-1], 3) if delays else None,
            "presence": check.summary(),
            "usage": usage.result(),
        }
        self.figures["steady"] = marks
        table = Table(title=f"(2) steady state, {wall:.0f} s (after {_s(settle_s)} s to settle)")
        for column in (
            "messages/s made",
            "confirmed/s",
            "confirm delay p50 / p99 / max (s)",
            "resent",
            "disconnects",
            "list_agents (s)",
            "presence exact",
        ):
            table.add_column(column, justify="right")
        table.add_row(
            f"{marks['generated_per_s']:,.1f}",
            f"{marks['confirmed_per_s']:,.1f}",
            f"{_s(marks['confirm_delay_p50_s'], 3)} / {_s(marks['confirm_delay_p99_s'], 3)} / "
            f"{_s(marks['confirm_delay_max_s'], 3)}",
            f"{marks['resent']:,}",
            f"{marks['disconnects']:,}",
            _s(check.seconds, 2),
            "yes"
            if check.exact
            else "no: {missing} / {extra} / {stale_session}".format(**check.summary()),
        )
        console.print(table)
        console.print(usage_table("steady state", marks["usage"]))

    def broker_restart(self) -> None:
        before = self.status()["connected"]
        usage = Usage(self.find)
        started = time.monotonic()
        self.broker.stop()  # SIGTERM: Mosquitto saves its store, as in a restart
        stopped_s = time.monotonic() - started
        self.until(lambda: False, usage, self.args.outage_s)
        restarting = time.monotonic()
        self.broker.start()
        came_back = time.monotonic()
        back_at = utc_now().isoformat(timespec="seconds")  # to line up with fleet.log
        self.workers.ask("mark")  # what was produced until now must all be confirmed
        marks: dict[str, Any] = {
            "sigterm_to_exit_s": round(stopped_s, 1),
            "down_s": round(came_back - started, 1),
            "start_s": round(came_back - restarting, 1),
            "broker_back_at": back_at,
        }
        status: dict[str, Any] = {}
        found: Presence | None = None
        next_check = 0.0
        fleet_back: list[float] = []

        def back() -> bool:
            nonlocal status, found, next_check
            status = self.status()
            self.note(status)
            now = time.monotonic()
            since = round(now - came_back, 1)
            connected = status["connected"]
            if (
                "all_reconnected_s" not in marks
                and len(connected) == len(self.ids)
                and all(connected[a] > before.get(a, 0) for a in connected)
            ):
                marks["all_reconnected_s"] = since
            if "backlog_drained_s" not in marks and status["backlog_before_mark"] == 0:
                marks["backlog_drained_s"] = since
            if "fleet_reconnected_s" not in marks and self.fleet_connected():
                marks["fleet_reconnected_s"] = since
                fleet_back.append(now)
            # Once all are back, every few seconds (a list_agents call is not free).
            if (
                "all_reconnected_s" in marks
                and "presence_exact_s" not in marks
                and now >= next_check
            ):
                found = presence(self.influx, connected)
                next_check = time.monotonic() + 3.0
                if found.exact:
                    marks["presence_exact_s"] = round(time.monotonic() - came_back, 1)
            if "backlog_drained_s" in marks and "presence_exact_s" not in marks:
                # A birth the fleet never stored stays missing (no agent says it twice):
                # give up on presence some time after the backlog is drained.
                waited: float = now - came_back - marks["backlog_drained_s"]
                return bool(waited > self.args.presence_timeout_s)
            return "backlog_drained_s" in marks and "presence_exact_s" in marks

        self.until(back, usage, self.args.timeout_s)
        for key in (
            "all_reconnected_s",
            "backlog_drained_s",
            "presence_exact_s",
            "fleet_reconnected_s",
        ):
            marks.setdefault(key, None)
        marks["backlog_left"] = status.get("backlog_before_mark")
        marks["longest_confirmation_stall_s"] = self.longest_stall(came_back - self._began)
        # Their births reached a broker where the fleet had no subscription yet.
        marks["agents_back_before_fleet"] = (
            sum(self.workers.ask("connected_before", fleet_back[0])) if fleet_back else None
        )
        if found is None:
            found = presence(self.influx, self.status()["connected"])
        marks["presence"] = found.summary()
        marks["usage"] = usage.result()
        self.figures["broker_restart"] = marks
        self._print_restart(marks)

    def _print_restart(self, marks: dict[str, Any]) -> None:
        table = Table(title=f"(3) broker restart: SIGTERM, {self.args.outage_s:g} s down")
        for column in (
            "SIGTERM to exit (s)",
            "down (s)",
            "fleet back (s)",
            "agents back before it",
            "all reconnected (s)",
            "presence exact (s)",
            "missing / extra / stale",
            "backlog drained (s)",
            "longest stall (s)",
        ):
            table.add_column(column, justify="right")
        table.add_row(
            _s(marks["sigterm_to_exit_s"]),
            _s(marks["down_s"]),
            _s(marks["fleet_reconnected_s"]),
            f"{marks['agents_back_before_fleet']}",
            _s(marks["all_reconnected_s"]),
            _s(marks["presence_exact_s"]),
            "{missing} / {extra} / {stale_session}".format(**marks["presence"]),
            _s(marks["backlog_drained_s"]),
            _s(marks["longest_confirmation_stall_s"]),
        )
        console.print(table)
        console.print(
            "(times after the broker answered again; stall: confirmations under a tenth "
            "of the production rate while messages waited)"
        )
        console.print(usage_table("broker restart", marks["usage"]))

    def final_count(self) -> None:
        self.workers.ask("quiesce")
        usage = Usage(self.find)
        started = time.monotonic()
        emptied = self.until(lambda: self.status()["outbox"] == 0, usage, 300)
        generated = self.workers.seqs()
        counts = stored_seqs(self.influx)
        lost = sum(
            len(set(range(1, last + 1)) - counts.get(agent, Counter()).keys())
            for agent, last in generated.items()
        )
        duplicated = sum(n - 1 for c in counts.values() for n in c.values() if n > 1)
        unknown = sum(
            1 for agent, c in counts.items() for seq in c if seq > generated.get(agent, 0)
        )
        status = self.status()
        marks = {
            "outboxes_emptied_s": round(time.monotonic() - started, 1) if emptied else None,
            "generated": sum(generated.values()),
            "stored_distinct": sum(len(c) for c in counts.values()),
            "lost": lost,
            "duplicated": duplicated,
            "stored_not_generated": unknown,
            "resent_total": status["resent"],
            "dead_letters": scalar(
                self.influx, f'SELECT count("size") FROM "{DEAD_LETTER}"', "count"
            ),
            "fleet_duplicates": scalar(
                self.influx, f'SELECT sum("duplicates") FROM "{AGENT_DELIVERY}"', "sum"
            ),
            "presence_points": scalar(
                self.influx, f'SELECT count("session") FROM "{AGENT_PRESENCE}"', "count"
            ),
            "offline_points": scalar(
                self.influx,
                f'SELECT count("session") FROM "{AGENT_PRESENCE}" WHERE "online" = false',
                "count",
            ),
        }
        self.figures["final"] = marks
        table = Table(title="(4) final count, per agent and sequence number")
        for column in (
            "generated",
            "stored",
            "lost",
            "duplicated",
            "resent",
            "agent_delivery duplicates",
            "dead letters",
            "presence points (offline)",
        ):
            table.add_column(column, justify="right")
        table.add_row(
            f"{marks['generated']:,}",
            f"{marks['stored_distinct']:,}",
            f"{marks['lost']:,}",
            f"{marks['duplicated']:,}",
            f"{marks['resent_total']:,}",
            f"{marks['fleet_duplicates']:,}",
            f"{marks['dead_letters']:,}",
            f"{marks['presence_points']:,} ({marks['offline_points']:,})",
        )
        console.print(table)


def usage_table(phase: str, usage: dict[str, dict[str, float]]) -> Table:
    table = Table(title=f"resources, {phase} (CPU: 100 % = one core)")
    for column in ("process", "CPU %", "RSS max (MiB)", "open files max"):
        table.add_column(column, justify="right")
    for name, figures in usage.items():
        table.add_row(
            name,
            f"{figures['cpu_percent']:.1f}",
            f"{figures['rss_mib']:,.0f}",
            f"{figures['fds']:,}",
        )
    return table


def _quantile(values: list[float], q: float) -> float | None:
    if len(values) < 2:
        return round(values[0], 3) if values else None
    return round(statistics.quantiles(values, n=1000)[int(q * 1000) - 1], 3)


def _s(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def summary(figures: dict[str, Any]) -> None:
    table = Table(title="bench/scale.py: summary")
    table.add_column("figure")
    table.add_column("value", justify="right")
    ramp, steady = figures["ramp_up"], figures["steady"]
    restart, final = figures.get("broker_restart", {}), figures.get("final", {})
    use = steady["usage"]
    processes = ("mosquitto", "fleet", "influxd", "simulator")
    certificates = figures["certificates"]
    rows = [
        ("agents / worker processes / client", f"{figures['agents']:,} / "
         f"{figures['processes']} / {figures['client']}"),
        ("certificates issued / cached (s)", f"{certificates['issued']:,} / "
         f"{certificates['cached']:,} ({certificates['seconds']} s)"),
        ("ramp-up: all connected (s)", _s(ramp["all_connected_s"])),
        ("ramp-up: presence exact (s)", _s(ramp["presence_exact_s"])),
        ("steady: messages/s made / confirmed",
         f"{steady['generated_per_s']:,.1f} / {steady['confirmed_per_s']:,.1f}"),
        ("steady: confirm delay p99 (s)", _s(steady["confirm_delay_p99_s"], 3)),
        ("steady: CPU % broker / fleet / InfluxDB / simulator",
         " / ".join(f"{use[name]['cpu_percent']:.0f}" for name in processes)),
        ("steady: RSS MiB broker / fleet / InfluxDB / simulator",
         " / ".join(f"{use[name]['rss_mib']:,.0f}" for name in processes)),
        ("restart: all reconnected (s)", _s(restart.get("all_reconnected_s"))),
        ("restart: presence exact (s)", _s(restart.get("presence_exact_s"))),
        ("restart: backlog drained (s)", _s(restart.get("backlog_drained_s"))),
        ("lost / duplicated", f"{final.get('lost')} / {final.get('duplicated')}"),
        ("dead letters / agent_delivery duplicates",
         f"{final.get('dead_letters')} / {final.get('fleet_duplicates')}"),
        ("list_agents calls that raised", f"{sum(figures.get('list_agents_errors', {}).values())}"),
        ("run (s)", _s(figures.get("run_s"))),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


@contextlib.contextmanager
def stack(root: Path, broker: Mosquitto) -> Iterator[tuple[InfluxClient, Any]]:
    """The broker, InfluxDB and ``fleet serve``, all stopped on the way out."""
    with contextlib.ExitStack() as stop:
        broker.start()
        stop.callback(broker.stop)
        influxdb = InfluxDB(workdir=root / "influxdb")
        influxdb.start()
        stop.callback(influxdb.stop)
        config = root / "fleet.yaml"
        config.write_text(yaml.safe_dump(fleet_settings(broker, influxdb, DATABASE)))
        fleet = start_fleet_service(config, root / "fleet.ready", root / "fleet.log")
        stop.callback(terminate, fleet)
        influx = stop.enter_context(influxdb.client(DATABASE, timeout_s=300))
        yield influx, fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--client", choices=["paho", "aiomqtt"], default="paho")
    parser.add_argument("--connect-rate", type=float, default=500.0)
    parser.add_argument("--steady-s", type=float, default=120.0)
    parser.add_argument("--outage-s", type=float, default=30.0)
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per phase")
    parser.add_argument("--presence-timeout-s", type=float, default=180.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/vigie-scale"))  # noqa: S108
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    # SIGTERM stops the run as Ctrl-C does: every child is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    started = time.monotonic()
    ids = [f"scale-{index:05d}" for index in range(args.agents)]
    run_dir = args.workdir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    # The broker's folder keeps the CA and identities; its store is new every run.
    shutil.rmtree(args.workdir / "mosquitto" / "data", ignore_errors=True)
    broker = Mosquitto(workdir=args.workdir / "mosquitto")
    console.print(f"enrolling {len(ids):,} agents (issued once, kept in {args.workdir})...")
    certificates = enroll(broker, ids)
    console.print(certificates)
    figures: dict[str, Any] = {
        "agents": args.agents,
        "processes": args.processes,
        "client": args.client,
        "certificates": certificates,
    }
    try:
        with stack(run_dir, broker) as (influx, fleet):
            workers = Workers(ids, args.processes, broker, args.client)
            find = {
                "mosquitto": children_named("mosquitto"),
                "fleet": lambda: [psutil.Process(fleet.pid)],
                "influxd": children_named("influxd"),
                "simulator": workers.psutil,
            }
            run = Run(args, workers, influx, broker, find, ids, figures)
            try:
                run.ramp_up()
                run.steady()
                run.broker_restart()
                run.final_count()
            finally:
                figures["timeline"] = run.timeline
                figures["list_agents_errors"] = dict(LIST_AGENTS_ERRORS)
                workers.stop()  # before the broker: no reconnection storm on the way out
    finally:
        figures["run_s"] = round(time.monotonic() - started, 1)
        log = run_dir / "fleet.log"
        if log.exists():
            figures["fleet_log_warnings"] = [
                line
                for line in log.read_text().splitlines()
                if "WARNING" in line or "ERROR" in line
            ][:20]
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
    summary(figures)
    for line in figures.get("fleet_log_warnings", []):
        console.print(f"fleet log: {line}", markup=False)


if __name__ == "__main__":
    main()
