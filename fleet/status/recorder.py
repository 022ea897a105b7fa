"""The fleet service's status recorder: every ``status.interval_s``, the points of
``fleet.status.derive`` written to InfluxDB for the dashboards and alerts.

What it reads: presence and sequence numbers from InfluxDB (the shared truth every
instance writes), rollouts and release reports from the rollout driver's view, and
each agent's desired and reported configuration, retained on the broker, from its own
subscription (the service may read everything agents publish). Derived points are
best effort: when InfluxDB or the broker is away the interval is skipped, said once a
minute in the log, and the data the agents sent is never affected.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509

from fleet.config import FleetConfig
from fleet.desired.targets import ConfigSync
from fleet.ingest.accounting import RateLimitedLog
from fleet.link import BrokerLink
from fleet.rollouts.driver import RolloutDriver
from fleet.rollouts.plan import ACTIVE_STATES
from fleet.status.derive import (
    agent_status_point,
    config_status_point,
    crl_point,
    new_reports,
    release_report_point,
    rollout_points,
    still_watched,
    tick,
)
from fleet.storage.influx import InfluxClient
from fleet.storage.lineprotocol import Point
from fleet.storage.queries import list_agents, seq_windows
from vigie_core.contract.codec import decode
from vigie_core.contract.settings import DesiredConfig, ReportedConfig
from vigie_core.contract.topics import Channel, Topics
from vigie_core.errors import ContractError

log = logging.getLogger(__name__)

#: Retained configuration arrives right after the subscription; after this long the
#: view is complete.
SETTLE_S = 1.0
#: After the boundary, so that what was received just before it is stored.
AFTER_BOUNDARY_S = 2.0


@dataclass
class Marks:
    reports: dict[str, datetime] = field(default_factory=dict)
    finished: set[tuple[str, str]] = field(default_factory=set)


class StatusRecorder:
    """``start``/``stop`` from ``fleet serve``; ``record`` does one interval (tests)."""

    def __init__(
        self,
        config: FleetConfig,
        influx: InfluxClient,
        link: BrokerLink,
        rollouts: RolloutDriver,
        influx_ready: threading.Event,
    ) -> None:
        self.interval_s = config.status.interval_s
        self._crl_file = config.status.crl_file
        self._forget_after = timedelta(days=config.status.forget_after_days)
        self.topics = Topics(config.mqtt.topic_prefix)
        self._influx = influx
        self._link = link
        self._rollouts = rollouts
        self._influx_ready = influx_ready
        self._lock = threading.Lock()
        self._desired: dict[str, DesiredConfig] = {}
        self._reported: dict[str, ReportedConfig] = {}
        self._subscribed_at: float | None = None
        self._last_message = 0.0
        self._reports_written: dict[str, datetime] = {}
        self._finished_written: set[tuple[str, str]] = set()
        self._problems = RateLimitedLog()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)
        link.add(self, *((topic, self._on_message) for topic in self.subscriptions()))

    # --- paho's thread -----------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        return [
            self.topics.every_agent(Channel.DESIRED, "config"),
            self.topics.every_agent(Channel.REPORTED, "config"),
        ]

    def on_connection(self, connected: bool) -> None:
        with self._lock:
            if connected:
                # Everything retained comes again after the subscription.
                self._desired.clear()
                self._reported.clear()
                self._subscribed_at = self._last_message = time.monotonic()
            else:
                self._subscribed_at = None

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        self._link.ack(message)
        payload = bytes(message.payload)
        try:
            parsed = self.topics.parse(message.topic)
            body = decode(self.topics, message.topic, payload)[1] if payload else None
        except ContractError:
            return  # 'fleet config status' shows an unreadable one; nothing to count here
        with self._lock:
            self._last_message = time.monotonic()
            table: dict[str, Any] = (
                self._desired if parsed.channel is Channel.DESIRED else self._reported
            )
            if body is None:
                table.pop(parsed.agent_id, None)
            elif isinstance(body, DesiredConfig | ReportedConfig):
                table[parsed.agent_id] = body

    def _config_syncs(self) -> list[ConfigSync] | None:
        with self._lock:
            if self._subscribed_at is None or time.monotonic() - self._last_message < SETTLE_S:
                return None
            agents = sorted({*self._desired, *self._reported})
            return [
                ConfigSync(agent, self._desired.get(agent), self._reported.get(agent))
                for agent in agents
            ]

    # --- one interval ------------------------------------------------------------------

    def points(self, now: datetime) -> tuple[list[Point], Marks]:
        """Everything derived for the interval ``now`` falls in, and what to remember
        once it is written (reports and finished rollouts are written once)."""
        at = tick(int(now.timestamp()) * 1_000_000_000, self.interval_s * 1_000_000_000)
        seqs = seq_windows(self._influx)
        points = [
            agent_status_point(view, now, at, seqs.get(view.agent_id))
            for view in list_agents(self._influx, now)
            if still_watched(view, now, self._forget_after)
        ]
        marks = Marks()
        snapshot = self._rollouts.snapshot()
        if snapshot is not None:
            statuses, reports = snapshot
            for status in statuses:
                key = (status.spec.rollout_id, status.state.value)
                if status.state in ACTIVE_STATES or key not in self._finished_written:
                    points.extend(rollout_points(status, at))
                    if status.state not in ACTIVE_STATES:
                        marks.finished.add(key)
            for report in new_reports(reports, self._reports_written):
                points.append(release_report_point(report))
                marks.reports[report.agent_id] = report.at
        if self._crl_file is not None:
            points.append(crl_point(self._crl_next_update(self._crl_file), now, at))
        for sync in self._config_syncs() or []:
            point = config_status_point(sync, at)
            if point is not None:
                points.append(point)
        return points, marks

    def _crl_next_update(self, path: Path) -> datetime | None:
        try:
            crl = x509.load_pem_x509_crl(path.read_bytes())
        except (OSError, ValueError) as exc:
            self._problems.warning("crl", f"cannot read the CRL {path}: {exc}")
            return None
        return crl.next_update_utc

    def record(self, now: datetime | None = None) -> int:
        """Write one interval's points; how many."""
        points, marks = self.points(now or datetime.now(UTC))
        self._influx.write(points)
        self._reports_written.update(marks.reports)
        self._finished_written |= marks.finished
        return len(points)

    # --- the recorder's thread ---------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            wait = self.interval_s - time.time() % self.interval_s + AFTER_BOUNDARY_S
            if self._stopping.wait(wait):
                return
            if not self._influx_ready.is_set():
                continue
            try:
                count = self.record()
            except Exception as exc:  # derived data: skip the interval, never stop the rest
                self._problems.warning("status", f"status not recorded this interval: {exc}")
            else:
                log.debug("status: %d points", count)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)
