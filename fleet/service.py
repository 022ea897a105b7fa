"""``fleet serve``: what one fleet instance runs, until it is asked to stop.

The ingest (``fleet.ingest``), the rollout driver (``fleet.rollouts``), the status
recorder (``fleet.status``) and, when configured, the release server
(``fleet.releases``) run side by side.

InfluxDB is checked first, with capped, jittered backoff until it answers: the
database is created, or on a secured server our access to it is checked (refused
credentials or a missing database stop the service, exit status 1). Without a spill
(``ingest.spill_dir``) nothing subscribes before that check has passed, because
nothing received could be acknowledged. With a spill the instance subscribes at once
and the check runs in the background (``InfluxCheck``): until it passes, every batch
goes to the spill, is acknowledged and confirmed to its agents, and the spill drains
once InfluxDB answers; a refusal stops the service as it would have at start.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path

from fleet.config import FleetConfig
from fleet.errors import InfluxRejected, InfluxUnauthorized, InfluxUnavailable
from fleet.ingest.service import IngestService
from fleet.link import BrokerLink
from fleet.releases.artifacts import ArtifactServer
from fleet.rollouts.driver import RolloutDriver
from fleet.status.recorder import StatusRecorder
from fleet.storage.influx import InfluxClient
from vigie_core.backoff import backoff_delay
from vigie_core.watchdog import Notifier

log = logging.getLogger("fleet")

#: How often the service logs what it has done.
STATS_INTERVAL_S = 60.0


class ServiceRefused(Exception):  # noqa: N818 - a reason to stop, not a bug
    """The service cannot start with this configuration: the exit status and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def wait_for_influx(
    client: InfluxClient, stop: threading.Event, spill_dir: Path | None = None
) -> bool:
    """Check InfluxDB until it answers (True) or ``stop`` (False); raises
    ServiceRefused when it refuses us. ``spill_dir``: where the instance receives
    meanwhile, said once in the log."""
    attempt = 0
    while not stop.is_set():
        try:
            if client.credentials.apply():
                # A secured server: 'fleet db init' made the database; we only check
                # that our user may use it, and stop at once if not.
                client.check_access()
            else:
                client.create_database()
        except InfluxUnauthorized as exc:
            raise ServiceRefused(1, str(exc)) from None
        except InfluxRejected as exc:
            raise ServiceRefused(1, f"{exc} (has 'fleet db init' been run?)") from None
        except InfluxUnavailable as exc:
            if attempt == 0 and spill_dir is not None:
                log.warning(
                    "InfluxDB unreachable; receiving into the spill at %s until it answers",
                    spill_dir,
                )
            delay = backoff_delay(attempt, 1.0, 30.0, random.Random())
            log.warning("%s; retrying in %.0f s", exc, delay)
            attempt += 1
            stop.wait(delay)
        else:
            if attempt and spill_dir is not None:
                log.info("InfluxDB answers; draining the spill at %s", spill_dir)
            return True
    return False


class InfluxCheck:
    """``wait_for_influx`` in the background, for an instance that receives into its
    spill meanwhile: sets ``ready`` once it passes; a refusal (or any failure) is kept
    for :meth:`raise_failure` and sets ``stop``, which ends the service."""

    def __init__(
        self,
        client: InfluxClient,
        stop: threading.Event,
        ready: threading.Event,
        spill_dir: Path,
    ) -> None:
        self._client = client
        self._stop = stop
        self._ready = ready
        self._spill_dir = spill_dir
        self._failure: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="influx-check", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            if wait_for_influx(self._client, self._stop, self._spill_dir):
                self._ready.set()
        except Exception as exc:  # any failure, not only a refusal: the caller re-raises
            self._failure = exc
            self._stop.set()

    def raise_failure(self) -> None:
        """Once stopped: re-raise, in the caller's thread, what ended the check."""
        self._thread.join()
        if self._failure is not None:
            raise self._failure


def serve_artifacts(settings: FleetConfig) -> ArtifactServer | None:
    config = settings.artifacts
    if config.dir is None:
        return None
    config.dir.mkdir(parents=True, exist_ok=True)
    server = ArtifactServer(config.dir, config.host, config.port)
    server.start()
    log.info("serving releases from %s at %s", config.dir, server.url)
    return server


def run_service(
    settings: FleetConfig, influx: InfluxClient, stop: threading.Event, ready_file: Path | None
) -> None:
    """Run one fleet instance until ``stop``; raises ServiceRefused when it cannot
    (with a spill, possibly after it has started: it then stops first)."""
    spill_dir = settings.ingest.spill_dir
    influx_ready = threading.Event()
    check: InfluxCheck | None = None
    if spill_dir is None:
        if not wait_for_influx(influx, stop):
            return
        influx_ready.set()
    else:
        check = InfluxCheck(influx, stop, influx_ready, spill_dir)
        check.start()
    link = BrokerLink(settings.mqtt)  # one connection: the broker binds it to our identity
    ingest = IngestService(settings, influx, link, influx_ready=influx_ready)
    rollouts = RolloutDriver(settings, link)
    status = StatusRecorder(settings, influx, link, rollouts, influx_ready)
    ingest.start()
    rollouts.start()
    status.start()
    link.start()
    artifacts = serve_artifacts(settings)
    log.info(
        "fleet service %s started (database %s at %s)",
        settings.mqtt.instance_id,
        settings.influxdb.database,
        settings.influxdb.url,
    )
    if ready_file is not None:
        while not (ingest.subscribed.wait(0.5) or stop.is_set()):
            pass
        if ingest.subscribed.is_set():
            ready_file.write_text(f"{settings.mqtt.instance_id}\n")
    notifier = Notifier.from_environment()
    notifier.ready()
    # Under a systemd watchdog the loop wakes more often than it logs: each wake-up is
    # a ping, which only a loop that still runs sends.
    step = min(STATS_INTERVAL_S, notifier.ping_interval_s or STATS_INTERVAL_S)
    next_stats = time.monotonic() + STATS_INTERVAL_S
    while not stop.wait(step):
        notifier.alive()
        if time.monotonic() < next_stats:
            continue
        next_stats += STATS_INTERVAL_S
        stats = ingest.stats
        log.info(
            "received %d, stored %d points, rejected %s",
            stats.received,
            stats.stored_points,
            dict(stats.rejected) or "none",
        )
    status.stop()
    rollouts.stop()
    ingest.stop()
    link.stop()
    if artifacts is not None:
        artifacts.stop()
    log.info("fleet service stopped")
    if check is not None:
        check.raise_failure()
