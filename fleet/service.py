"""``fleet serve``: what one fleet instance runs, until it is asked to stop.

InfluxDB is waited for (with capped, jittered backoff) before anything subscribes;
then the ingest (``fleet.ingest``), the rollout driver (``fleet.rollouts``) and, when
configured, the release server (``fleet.releases``) run side by side.
"""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path

from fleet.config import FleetConfig
from fleet.errors import InfluxRejected, InfluxUnauthorized, InfluxUnavailable
from fleet.ingest.service import IngestService
from fleet.link import BrokerLink
from fleet.releases.artifacts import ArtifactServer
from fleet.rollouts.driver import RolloutDriver
from fleet.storage.influx import InfluxClient
from vigie_core.backoff import backoff_delay

log = logging.getLogger("fleet")

#: How often the service logs what it has done.
STATS_INTERVAL_S = 60.0


class ServiceRefused(Exception):  # noqa: N818 - a reason to stop, not a bug
    """The service cannot start with this configuration: the exit status and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def wait_for_influx(client: InfluxClient, stop: threading.Event) -> bool:
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
            delay = backoff_delay(attempt, 1.0, 30.0, random.Random())
            log.warning("%s; retrying in %.0f s", exc, delay)
            attempt += 1
            stop.wait(delay)
        else:
            return True
    return False


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
    """Run one fleet instance until ``stop``; raises ServiceRefused when it cannot."""
    if not wait_for_influx(influx, stop):
        return
    link = BrokerLink(settings.mqtt)  # one connection: the broker binds it to our identity
    ingest = IngestService(settings, influx, link)
    rollouts = RolloutDriver(settings, link)
    ingest.start()
    rollouts.start()
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
        ready_file.write_text(f"{settings.mqtt.instance_id}\n")
    while not stop.wait(STATS_INTERVAL_S):
        stats = ingest.stats
        log.info(
            "received %d, stored %d points, rejected %s",
            stats.received,
            stats.stored_points,
            dict(stats.rejected) or "none",
        )
    rollouts.stop()
    ingest.stop()
    link.stop()
    if artifacts is not None:
        artifacts.stop()
    log.info("fleet service stopped")
