"""The write path: points reach InfluxDB, or the durable spill while it is down; a
point InfluxDB refuses is set aside (dead-lettered) without sinking its batch."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from fleet.errors import InfluxRejected, InfluxUnavailable, LineProtocolError
from fleet.ingest.accounting import IngestStats, RateLimitedLog
from fleet.ingest.decoding import line_of
from fleet.ingest.spill import Spill
from fleet.storage.influx import PointWriter
from fleet.storage.lineprotocol import Point, encode_batch
from fleet.storage.points import dead_letter_point
from vigie_core.backoff import backoff_delay

log = logging.getLogger("fleet.ingest")

#: A rejected point, named for what refused it.
STORAGE_REFUSED = "storage_refused"


class PointStore:
    """Writes points until InfluxDB or the spill has them. Used by one writer thread;
    the spill has a drainer thread of its own."""

    def __init__(
        self,
        writer: PointWriter,
        spill_dir: Path | None,
        spill_max_bytes: int,
        stats: IngestStats,
        clock: Callable[[], int],
        stopping: threading.Event,
        rng: random.Random,
    ) -> None:
        self._writer = writer
        self._spill_dir = spill_dir
        self._spill = (
            Spill(spill_dir / "spill.sqlite3", spill_max_bytes) if spill_dir is not None else None
        )
        self.stats = stats
        self._clock = clock
        self._stopping = stopping
        self._rng = rng
        self._rejections = RateLimitedLog()
        self._spill_waiting = threading.Event()
        self._spill_thread = threading.Thread(
            target=self._drain_spill, name="spill-drainer", daemon=True
        )

    def start(self) -> None:
        if self._spill is not None:
            self._spill_waiting.set()  # a spill left by an earlier run drains first
            self._spill_thread.start()

    def stop(self, timeout_s: float) -> None:
        if self._spill is not None:
            self._spill_thread.join(timeout_s)
            self._spill.close()

    def store(self, points: Sequence[Point]) -> bool:
        """Write until InfluxDB (or the spill) has the points (True); only shutdown gives
        up (False)."""
        attempt = 0
        while True:
            # While the spill drains, InfluxDB was away a moment ago: add to the spill
            # rather than probe it with every batch.
            if self._spill is not None and len(self._spill) and self._spill_put(points):
                return True
            try:
                self._write_isolating_rejects(points)
            except InfluxUnavailable as exc:
                if self._spill is not None and self._spill_put(points):
                    log.warning("%s; spilling to %s until it is back", exc, self._spill_dir)
                    return True
                if self._stopping.is_set():
                    log.warning(
                        "stopping with %d points unwritten; the broker keeps them", len(points)
                    )
                    return False
                delay = backoff_delay(attempt, 0.5, 10.0, self._rng)
                if attempt == 0:
                    log.warning("%s; holding %d points, retrying", exc, len(points))
                attempt += 1
                self._stopping.wait(delay)
                continue
            if attempt:
                log.info("InfluxDB is back; wrote %d held points", len(points))
            self.stats.stored_points += len(points)
            return True

    def _spill_put(self, points: Sequence[Point]) -> bool:
        assert self._spill is not None  # noqa: S101
        body = encode_batch(points)
        if not self._spill.put(body):
            self._rejections.warning("spill_full", "the spill is full; holding acknowledgements")
            return False
        self.stats.spilled_points += len(points)
        self._spill_waiting.set()
        return True

    def _write_isolating_rejects(self, points: Sequence[Point]) -> None:
        try:
            self._writer.write(points)
        except (InfluxRejected, LineProtocolError) as exc:
            if len(points) == 1:
                self._set_aside(line_of(points[0]), points[0].measurement, str(exc))
                return
        else:
            return
        # One bad point (a field type conflict, say) must not sink its batch: bisect to
        # find it. Points are idempotent, so rewriting the good ones does no harm.
        middle = len(points) // 2
        self._write_isolating_rejects(points[:middle])
        self._write_isolating_rejects(points[middle:])

    def _set_aside(self, line: str, measurement: str, why: str) -> None:
        self.stats.rejected[STORAGE_REFUSED] += 1
        self._rejections.warning(STORAGE_REFUSED, f"InfluxDB refused a point: {why}")
        letter = dead_letter_point(STORAGE_REFUSED, why, measurement, line.encode(), self._clock())
        try:
            self._writer.write([letter])
        except InfluxRejected:
            log.exception("InfluxDB refused even the dead letter; dropping it")

    def _drain_spill(self) -> None:
        """Move spilled batches into InfluxDB, oldest first, whenever it answers."""
        assert self._spill is not None  # noqa: S101
        attempt = 0
        while not self._stopping.is_set():
            try:
                with self._spill.oldest() as body:
                    if body is None:
                        self._spill_waiting.clear()
                        self._spill_waiting.wait(1.0)
                        continue
                    self._write_body_isolating_rejects(body)
                    self.stats.stored_points += body.count(b"\n")
            except InfluxUnavailable:
                self._stopping.wait(backoff_delay(attempt, 0.5, 10.0, self._rng))
                attempt += 1
                continue
            if attempt:
                log.info("InfluxDB is back; draining the spill (%d batches)", len(self._spill))
            attempt = 0

    def _write_body_isolating_rejects(self, body: bytes) -> None:
        try:
            self._writer.write_body(body)
        except InfluxRejected as exc:
            for line in body.splitlines():
                try:
                    self._writer.write_body(line + b"\n")
                except InfluxRejected:
                    self._set_aside(line.decode(errors="replace"), "(spill)", str(exc))
