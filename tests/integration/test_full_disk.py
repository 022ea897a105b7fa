"""A full disk, for real: a 2 MiB tmpfs under the outbox, filled by the agent and by
"another program", with the broker away; nothing but the overflow policy's drops may
be lost, and every drop is counted and reported.

Mounting needs root: skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge_agent.storage.outbox import Outbox
from fleet.devstack.services import Mosquitto
from fleet.storage.influx import InfluxClient
from tests.chaos.proxy import TcpProxy

from .conftest import AgentFactory, Processes, wait_until
from .test_end_to_end import stored_seqs

pytestmark = pytest.mark.integration

KIB = 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB file system of its own."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 2 MiB tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_up(path: Path) -> int:
    """Take every byte left on ``path``'s file system, as a video cache would."""
    written = 0
    with path.open("wb") as file:
        while True:
            try:
                written += os.write(file.fileno(), bytes(4096))
            except OSError:
                return written


def put(outbox: Outbox, count: int, start: int) -> int:
    for seq in range(start, start + count):
        kind = "health" if seq % 20 == 0 else "reading"
        outbox.add(seq, f"vigie/v1/a/{kind}", b"x" * 300, kind)
    return start + count


def test_the_outbox_fills_the_disk_to_its_limit_survives_it_full_and_a_restart_on_it(
    small_disk: Path,
) -> None:
    path = small_disk / "state" / "outbox.sqlite3"
    outbox = Outbox(path, synchronous="normal", min_free_bytes=64 * KIB)
    after = put(outbox, 6000, 1)  # ~2 MB: more than the disk holds
    assert outbox.dropped > 0
    assert os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize >= 64 * KIB
    assert len(outbox) + outbox.dropped == after - 1, "a message vanished uncounted"

    cache = small_disk / "video-cache"
    fill_up(cache)  # another program takes the rest, to the last byte
    after = put(outbox, 2000, after)  # no exception: old messages make way
    assert len(outbox) + outbox.dropped == after - 1
    assert after - 1 in {entry.seq for entry in outbox.due(100_000)}, "the newest went"
    outbox.close()

    # A restart on the full disk, the reserve spent and the WAL's room (given back
    # when it closed) taken too: it opens, numbers on, and keeps what it measures in
    # memory, where the drain sends it from.
    fill_up(small_disk / "video-cache-2")
    again = Outbox(path, synchronous="normal", min_free_bytes=64 * KIB)
    assert again.last_seq() == after - 1
    after = put(again, 1000, after)
    assert again.disk_use().held_messages > 0
    assert len(again) + again.dropped == after - 1
    assert after - 1 in {entry.seq for entry in again.due(100_000)}

    # Room returns (the caches are cleaned): what was held moves to disk.
    cache.unlink()
    (small_disk / "video-cache-2").unlink()
    again.retry(now=True)
    assert again.disk_use().held_messages == 0
    assert len(again) + again.dropped == after - 1
    waiting, dropped = len(again), again.dropped
    again.close()
    reopened = Outbox(path, synchronous="normal", min_free_bytes=64 * KIB)
    assert (len(reopened), reopened.dropped) == (waiting, dropped)
    reopened.close()


def outbox_state(state_dir: Path) -> tuple[int, set[int], int]:
    """(last sequence number, the numbers still waiting, the drops counted)."""
    with contextlib.closing(sqlite3.connect(state_dir / "outbox.sqlite3")) as db:
        (last,) = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        waiting = {seq for (seq,) in db.execute("SELECT seq FROM outbox")}
        row = db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
    return int(last), waiting, 0 if row is None else int(row[0])


def test_an_agent_on_a_full_disk_stays_up_reports_its_drops_and_delivers_what_it_kept(
    small_disk: Path,
    mosquitto: Mosquitto,
    fleet_config: Path,
    processes: Processes,
    influx: InfluxClient,
    agent_config: AgentFactory,
) -> None:
    broker = TcpProxy(mosquitto.port or 0)
    broker.start()
    broker.cut()  # the broker is away the whole time the disk fills
    path = agent_config(
        "booth-full",
        state_dir=str(small_disk / "state"),
        outbox={"min_free_bytes": 64 * KIB, "warn_free_bytes": 512 * KIB},
        devices=[
            {"id": "bp1", "kind": "blood_pressure", "interval_s": 0.01},
            {"id": "ox1", "kind": "pulse_oximetry", "interval_s": 0.01},
        ],
    )
    config = yaml.safe_load(path.read_text())
    config["broker"]["port"] = broker.port
    path.write_text(yaml.safe_dump(config))
    (small_disk / "logs").write_bytes(bytes(1200 * KIB))  # the disk is half full already
    processes.start_fleet(fleet_config)
    try:
        agent = processes.start("agent", "-m", "edge_agent", "run", "--config", str(path))
        wait_until(lambda: "had no room" in processes.log("agent"), 60, "the first drops")
        fill_up(small_disk / "video-cache")
        wait_until(lambda: processes.log("agent").count("is full") >= 1, 30, "the disk full")
        assert agent.poll() is None, processes.log("agent")[-3000:]

        # Restarted on the full disk, it starts (agent_started cannot stop it) and runs.
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0, processes.log("agent")[-3000:]
        fill_up(small_disk / "video-cache-2")
        agent = processes.start("agent", "-m", "edge_agent", "run", "--config", str(path))
        wait_until(lambda: processes.log("agent").count("starting as") == 2, 30, "a restart")
        time.sleep(3)  # taking readings into the full disk
        assert agent.poll() is None, processes.log("agent")[-3000:]

        # The cache is cleaned, then the broker is back: the drops are reported and
        # what was kept arrives. (Room first: a message sent, then dropped before its
        # confirmation would be counted twice below.)
        (small_disk / "video-cache").unlink()
        broker.restore()
        events = {
            name: wait_until(
                lambda name=name: influx.query(
                    "SELECT detail FROM agent_event WHERE agent_id = 'booth-full' "
                    f"AND \"name\" = '{name}'"
                ),
                60,
                f"the {name} event",
            )
            for name in ("outbox_overflow", "disk_low")
        }
        assert "dropped" in events["outbox_overflow"][0].rows()[0]["detail"]
        reported = wait_until(
            lambda: influx.query(
                "SELECT max(dropped_messages) FROM agent_health WHERE agent_id = 'booth-full'"
            ),
            30,
            "a health report counting the drops",
        )
        assert reported[0].rows()[0]["max"] > 0
        wait_until(
            lambda: len(stored_seqs(influx, "booth-full")) > 1000, 60, "the backlog arriving"
        )
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
    finally:
        broker.stop()

    log = processes.log("agent")
    assert "Traceback" not in log
    assert "they are lost" not in log
    last, waiting, dropped = outbox_state(small_disk / "state")
    stored = stored_seqs(influx, "booth-full")
    assert max(stored.values()) == 1, "a message stored twice"
    # Every number ever given: stored, still waiting for the broker, or counted as
    # dropped by the overflow policy; nothing else.
    assert dropped > 0
    assert len(set(stored) | waiting) + dropped == last
