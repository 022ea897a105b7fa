"""The health report says the disk is low before anything is dropped, once."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.runtime.health import DeliveryCounts, HealthReporter
from edge_agent.runtime.recorder import Recorder
from edge_agent.storage.outbox import Outbox
from edge_agent.storage.space import MIB
from vigie_core.contract.topics import Topics

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_a_low_disk_is_in_every_report_and_in_one_event_each_way(tmp_path: Path) -> None:
    free = {"bytes": 900 * MIB}
    outbox = Outbox(tmp_path / "outbox.sqlite3", disk_free=lambda _: free["bytes"])
    recorder = Recorder(outbox, Topics(), "booth-01", lambda: AT)
    health = HealthReporter(
        recorder,
        tmp_path,
        instruments=list,
        delivery=lambda: DeliveryCounts(0, 0),
        clock=lambda: AT,
        warn_free_bytes=500 * MIB,
    )
    reports = []
    for left in (900, 400, 300, 520, 600):  # low at 400, fine again only past 550
        free["bytes"] = left * MIB
        reports.append(asyncio.run(health.report()))
    assert [report.disk_low for report in reports] == [False, True, True, True, False]
    assert reports[1].disk_free_bytes == 400 * MIB
    assert reports[0].outbox_bytes > 0
    recorder.flush()
    events = [
        json.loads(entry.payload)["name"]
        for entry in outbox.due(100)
        if json.loads(entry.payload)["type"] == "event"
    ]
    assert events == ["disk_low", "disk_ok"]
    recorder.close()
