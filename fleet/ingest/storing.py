"""The write path: points reach InfluxDB, or the durable spill while it is down; a
point InfluxDB refuses is set aside (dead-lettered) without sinking its batch.

Nothing is written to InfluxDB before the service has checked it (``influx_ready``,
set by ``fleet.service``): until then the database may not even exist, and a write
would be refused and its points dead-lettered. A service with a spill subscribes
before that check and receives into the spill meanwhile; the drainer moves it into
InfluxDB once the check has passed.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from fleet.errors import InfluxRejected, InfluxUnavailable
from fleet.ingest.accounting import IngestStats, RateLimitedLog
from fleet.ingest.spill import Spill
from fleet.storage.influx import PointWriter
from fleet.storage.lineprotocol import Point, encode_point, measurement_of
from fleet.storage.points import dead_letter_point
from vigie_core.backoff import backoff_delay

log = logging.getLogger("fleet.ingest")

#: A rejected point, named for what refused it.
STORAGE_REFUSED = "storage_refused"


class PointStore:
    """Writes points until InfluxDB or the spill has them. Used by one writer thread;
    the spill has a drainer thread of its own.

    ``influx_ready``: set once InfluxDB has been checked (the database exists and we
    may use it); before, points go to the spill only (or wait, without one).
    """

    def __init__(
        self,
        writer: PointWriter,
        spill_dir: Path | None,
        spill_max_bytes: int,
        stats: IngestStats,
        clock: Callable[[], int],
        stopping: threading.Event,
        rng: random.Random,
        influx_ready: threading.Event,
    ) -> None:
        self._writer = writer
        self._ready = influx_ready
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

    def store(self, lines: Sequence[bytes]) -> bool:
        """Write until InfluxDB (or the spill) has the lines (True); only shutdown gives
        up (False)."""
        attempt = 0
        while True:
            # Before InfluxDB is checked, the spill is the only place for points. While
            # the spill drains, InfluxDB was away a moment ago: add to the spill rather
            # than probe it with every batch.
            if (
                self._spill is not None
                and (not self._ready.is_set() or len(self._spill))
                and self._spill_put(lines)
            ):
                return True
            if not self._ready.is_set():
                # No spill, or a full one: hold the acknowledgements until the check.
                if self._stopping.is_set():
                    log.warning(
                        "stopping with %d points unwritten; the broker keeps them", len(lines)
                    )
                    return False
                self._ready.wait(0.5)
                continue
            try:
                self._write_isolating_rejects(lines)
            except InfluxUnavailable as exc:
                if self._spill is not None and self._spill_put(lines):
                    log.warning("%s; spilling to %s until it is back", exc, self._spill_dir)
                    return True
                if self._stopping.is_set():
                    log.warning(
                        "stopping with %d points unwritten; the broker keeps them", len(lines)
                    )
                    return False
                delay = backoff_delay(attempt, 0.5, 10.0, self._rng)
                if attempt == 0:
                    log.warning("%s; holding %d points, retrying", exc, len(lines))
                attempt += 1
                self._stopping.wait(delay)
                continue
            if attempt:
                log.info("InfluxDB is back; wrote %d held points", len(lines))
            self.stats.stored_points += len(lines)
            return True

    def store_best_effort(self, points: Sequence[Point]) -> None:
        """Accounting (not agents' data): into InfluxDB if it takes it, into the spill
        while InfluxDB is not checked yet; dropped otherwise."""
        if not points:
            return
        if not self._ready.is_set():
            if self._spill is not None:
                self._spill_put([f"{encode_point(point)}\n".encode() for point in points])
            return
        with contextlib.suppress(InfluxUnavailable, InfluxRejected):
            self._writer.write(points)

    def _spill_put(self, lines: Sequence[bytes]) -> bool:
        assert self._spill is not None  # noqa: S101
        if not self._spill.put(b"".join(lines)):
            self._rejections.warning("spill_full", "the spill is full; holding acknowledgements")
            return False
        self.stats.spilled_points += len(lines)
        self._spill_waiting.set()
        return True

    def _write_isolating_rejects(self, lines: Sequence[bytes]) -> None:
        """Write ``lines``; a line InfluxDB refuses is set aside, the others written.

        Raises InfluxUnavailable only: the caller holds or spills the lines then.
        """
        try:
            self._writer.write_body(b"".join(lines))
        except InfluxUnavailable:
            raise
        except InfluxRejected as exc:
            reason = str(exc)
        except Exception as exc:  # a bug must not stop the ingest: treated as a refusal
            log.exception("writing %d points failed unexpectedly", len(lines))
            reason = f"{type(exc).__name__}: {exc}"
        else:
            return
        if len(lines) == 1:
            self._set_aside(lines[0], reason)
            return
        # One bad point (a field type conflict, say) must not sink its batch: bisect to
        # find it. Points are idempotent, so rewriting the good ones does no harm.
        middle = len(lines) // 2
        self._write_isolating_rejects(lines[:middle])
        self._write_isolating_rejects(lines[middle:])

    def _set_aside(self, line: bytes, why: str) -> None:
        self.stats.rejected[STORAGE_REFUSED] += 1
        self._rejections.warning(STORAGE_REFUSED, f"InfluxDB refused a point: {why}")
        letter = dead_letter_point(STORAGE_REFUSED, why, measurement_of(line), line, self._clock())
        try:
            self._writer.write([letter])
        except InfluxRejected:
            log.exception("InfluxDB refused even the dead letter; dropping it")

    def _drain_spill(self) -> None:
        """Move spilled batches into InfluxDB, oldest first, whenever it answers (and
        not before it has been checked)."""
        assert self._spill is not None  # noqa: S101
        attempt = 0
        while not self._stopping.is_set():
            if not self._ready.wait(0.5):
                continue
            try:
                with self._spill.oldest() as body:
                    if body is None:
                        self._spill_waiting.clear()
                        self._spill_waiting.wait(1.0)
                        continue
                    lines = body.splitlines(keepends=True)
                    self._write_isolating_rejects(lines)
                    self.stats.stored_points += len(lines)
            except InfluxUnavailable:
                self._stopping.wait(backoff_delay(attempt, 0.5, 10.0, self._rng))
                attempt += 1
                continue
            if attempt:
                log.info("InfluxDB is back; draining the spill (%d batches)", len(self._spill))
            attempt = 0
