"""The fleet service's rollout driver: reads rollouts and agents' release reports from
the broker, releases waves, halts, aborts (the decisions are in ``fleet/rollouts/plan.py``).

Every fleet instance runs one. Nothing is kept but what the broker retains, so a
restarted instance goes on where the rollout stands, and two instances publish the
same retained messages (the same bytes: times come from the rollout's documents, not
the clock): an agent acts on a desired *version*, so a second copy changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as mqtt

from fleet.config import FleetConfig
from fleet.link import BrokerLink
from fleet.rollouts.plan import RolloutStatus, State
from fleet.rollouts.view import RolloutView
from vigie_core.contract.codec import encode
from vigie_core.contract.releases import DesiredRelease, ReportedRelease
from vigie_core.contract.rollouts import RolloutProgress
from vigie_core.contract.topics import Topics

log = logging.getLogger(__name__)

QOS = 1
#: Retained messages arrive right after a subscription; once none has come for this
#: long the view is complete and decisions may be taken.
SETTLE_S = 0.5
COALESCE_S = 0.5


class RolloutDriver:
    """Drives every rollout the broker holds; ``start``/``stop`` from ``fleet serve``."""

    def __init__(self, config: FleetConfig, link: BrokerLink, interval_s: float = 5.0) -> None:
        self.config = config
        self.interval_s = interval_s
        prefix = config.mqtt.topic_prefix
        self.topics = Topics(prefix)
        self._view = RolloutView(prefix)
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stopping = threading.Event()
        self._subscribed_at: float | None = None
        self._last_message = time.monotonic()
        self._said: dict[str, tuple[State, int]] = {}
        self.link = link
        link.add(self, *((topic, self._on_message) for topic in self._view.filters()))
        self._thread = threading.Thread(target=self._run, name="rollouts", daemon=True)

    # --- paho's thread (the instance's connection, ``fleet.link``) -------------------

    def subscriptions(self) -> list[str]:
        return self._view.filters()

    def on_connection(self, connected: bool) -> None:
        with self._lock:
            if not connected:
                self._subscribed_at = None
                return
            # The broker sends every retained message again after the subscription.
            self._view = RolloutView(self._view.prefix)
            self._subscribed_at = self._last_message = time.monotonic()
        self._changed.set()

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        self.link.ack(message)
        with self._lock:
            self._view.absorb(message.topic, bytes(message.payload))
            self._last_message = time.monotonic()
        self._changed.set()

    # --- the driver's thread -----------------------------------------------------------

    def _settled(self) -> bool:
        with self._lock:
            if self._subscribed_at is None:
                return False
            return time.monotonic() - self._last_message >= SETTLE_S

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._changed.wait(self.interval_s)
            if self._stopping.is_set():
                return
            if not self._settled():
                time.sleep(SETTLE_S / 2)  # let the retained messages finish arriving
                continue
            self._changed.clear()
            try:
                self.step()
            except Exception:  # a bug here must not stop ingestion in the same process
                log.exception("rollouts: a step failed; trying again later")
            # Agents report every tenth of a download: take such bursts in one step.
            self._stopping.wait(COALESCE_S)

    def snapshot(self) -> tuple[list[RolloutStatus], dict[str, ReportedRelease]] | None:
        """Every rollout's status and every agent's release report, once the retained
        messages are in (None before: a half-read view would show wrong counts)."""
        if not self._settled():
            return None
        with self._lock:
            return self._view.statuses(), dict(self._view.reported)

    def step(self) -> None:
        """Evaluate every rollout and publish what it calls for."""
        with self._lock:
            statuses = self._view.statuses()
        for status in statuses:
            self._act(status)

    def _act(self, status: RolloutStatus) -> None:
        spec = status.spec
        for agent_id in status.to_ask:
            desired = DesiredRelease(
                agent_id=agent_id, version=spec.version, url=spec.url, issued_at=spec.created_at
            )
            if not self._publish(self.topics.desired_release(agent_id), encode(desired)):
                return
            with self._lock:
                self._view.desired[agent_id] = desired
        with self._lock:
            control = self._view.controls.get(spec.rollout_id)
            stored = self._view.progress.get(spec.rollout_id)
        for agent_id, version in status.to_restore.items():
            topic = self.topics.desired_release(agent_id)
            if version is None:
                payload = b""  # never ran a reported release: clear the request
            else:
                at = control.at if control is not None else spec.created_at
                payload = encode(
                    DesiredRelease(agent_id=agent_id, version=version, url=spec.url, issued_at=at)
                )
            if not self._publish(topic, payload):
                return
            with self._lock:
                self._view.absorb(topic, payload)
        if status.released_waves > (stored.released_waves if stored else 0):
            progress = RolloutProgress(
                rollout_id=spec.rollout_id,
                released_waves=status.released_waves,
                at=control.at if control is not None else spec.created_at,
            )
            topic = self.topics.rollout(spec.rollout_id, "progress")
            if not self._publish(topic, progress.model_dump_json().encode()):
                return
            with self._lock:
                self._view.progress[spec.rollout_id] = progress
        self._say(status)

    def _say(self, status: RolloutStatus) -> None:
        spec = status.spec
        now = (status.state, status.released_waves)
        if self._said.get(spec.rollout_id) == now:
            return
        before = self._said.get(spec.rollout_id)
        self._said[spec.rollout_id] = now
        if before is None or before[1] != status.released_waves:
            wave = spec.waves[status.released_waves - 1] if status.released_waves else []
            log.info(
                "rollout %s (%s): wave %d of %d released, %d agent(s)",
                spec.rollout_id,
                spec.version,
                status.released_waves,
                len(spec.waves),
                len(wave),
            )
        if before is None or before[0] is not status.state:
            level = logging.WARNING if status.state is State.HALTED else logging.INFO
            log.log(level, "rollout %s: %s %s", spec.rollout_id, status.state, status.reason)

    def _publish(self, topic: str, payload: bytes) -> bool:
        return self.link.publish_confirmed(topic, payload)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._changed.set()
        self._thread.join(15)
