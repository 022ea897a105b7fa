"""Staged rollouts end to end: a real broker, a real HTTP artifact server, fleet
services and agents (under the launcher) as real processes."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.updates.slots import InstallRoot
from fleet.devstack.services import Mosquitto
from fleet.rollouts.plan import plan_waves
from fleet.security.pki import Role

from .conftest import AgentFactory, Processes, Tap, run, wait_until
from .updates import (
    FRAGILE_HOST,
    OLD,
    WEEKDAYS,
    committed,
    install_root,
    installs,
    known,
    publish,
    reports,
    start,
)

pytestmark = pytest.mark.integration

NEW = "1.0.0"


def fleet(fleet_config: Path, *args: str) -> Any:
    """Run a fleet command; its parsed JSON output, or the finished process."""
    done = run("fleet", *args, "--config", str(fleet_config))
    if "--json" in args:
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
    return done


def status(fleet_config: Path, rollout_id: str) -> dict[str, Any]:
    found: dict[str, Any] = fleet(fleet_config, "rollout", "status", rollout_id, "--json")
    return found


def second_instance(fleet_config: Path, mosquitto: Mosquitto) -> Path:
    """A second instance of the service: the same fleet, with an identity of its own."""
    config = yaml.safe_load(fleet_config.read_text())
    name = f"fleet-{config['mqtt']['topic_prefix']}-2"
    config["mqtt"]["tls"] = mosquitto.credentials(name, Role.SERVICE).as_config()
    path = fleet_config.with_name("fleet-2.yaml")
    path.write_text(yaml.safe_dump(config))
    return path


def desired_versions(fleet_config: Path) -> dict[str, str | None]:
    rows = fleet(fleet_config, "release", "status", "--json")
    return {row["agent_id"]: row["desired"] for row in rows}


def test_a_rollout_goes_wave_by_wave_halts_past_its_threshold_and_outlives_its_fleet(
    mosquitto: Mosquitto,
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    tap: Tap,
    tmp_path: Path,
    keys: Path,
    store: tuple[Path, str],
) -> None:
    """Four booths in waves of 25/50/100 % with at most 30 % failures; the release dies
    at start on the second wave's booth. Two fleet services run side by side, and are
    replaced by a new one while the rollout is halted."""
    agents = ["roll-a", "roll-b", "roll-c", "roll-d"]
    first, second, last = plan_waves(agents, [25, 50, 100], seed="r-test")
    fragile = second[0]
    services = [
        processes.start_fleet(fleet_config),
        processes.start_fleet(second_instance(fleet_config, mosquitto)),
    ]
    publish(tmp_path, keys, store[0], NEW, fragile=True)
    for agent in agents:
        env = {FRAGILE_HOST: "1"} if agent == fragile else None
        start(processes, agent_config, agent, install_root(tmp_path, agent), keys, env=env)
    for agent in agents:
        wait_until(lambda a=agent: known(fleet_config, a), 60, f"{agent} known to the fleet")

    done = fleet(
        fleet_config, "rollout", "start", NEW, "--url", store[1], "--id", "r-test",
        "--waves", "25,50,100%", "--max-failure", "30%",
        *(arg for agent in agents for arg in ("--target", agent)),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "released wave 1" in done.stdout

    # Wave 1 updates; wave 2's booth fails (three failed starts, rolled back); 1 of 2
    # failed is past 30 %: the rollout halts and wave 3 is never asked.
    halted = wait_until(
        lambda: (s := status(fleet_config, "r-test"))["state"] == "halted" and s, 180, "a halt"
    )
    assert committed(tap, first[0], NEW)
    expected = {first[0]: "updated", fragile: "failed"} | dict.fromkeys(last, "not asked")
    assert halted["outcomes"] == expected
    assert "1 of 2 agents asked failed (50 % > 30 %)" in halted["reason"]
    assert [w["updated"] for w in halted["waves"]] == [1, 0, 0]
    assert [w["failed"] for w in halted["waves"]] == [0, 1, 0]
    rolled = [r for r in reports(tap, fragile) if r["phase"] == "rolled_back"]
    assert "failed to start 3 times" in rolled[-1]["reason"]
    desired = desired_versions(fleet_config)
    assert all(desired.get(agent) is None for agent in last), desired
    for agent in last:
        assert InstallRoot(tmp_path / agent).slot_version("b") is None

    # Both services stop; a new one takes the rollout up from the broker's state.
    for service in services:
        service.send_signal(signal.SIGTERM)
        service.wait(30)
    processes.start_fleet(fleet_config)
    assert status(fleet_config, "r-test")["state"] == "halted"  # still: not re-decided
    resumed = fleet(fleet_config, "rollout", "resume", "r-test")
    assert resumed.returncode == 0, resumed.stderr
    assert "1 failure(s) accepted" in resumed.stdout
    processes.start_fleet(second_instance(fleet_config, mosquitto))  # and a second one again

    final = wait_until(
        lambda: (s := status(fleet_config, "r-test"))["state"] == "completed" and s,
        180,
        "the last wave to update",
    )
    expected = {first[0]: "updated", fragile: "excused"} | dict.fromkeys(last, "updated")
    assert final["outcomes"] == expected
    assert final["updated"] == 3
    for agent in [*first, *last]:
        assert InstallRoot(tmp_path / agent).active_slot() == "b"
    assert InstallRoot(tmp_path / fragile).active_slot() == "a"
    # Two instances, a restart: still each booth installed the release once.
    assert {agent: installs(tap, agent) for agent in agents} == dict.fromkeys(agents, 1)

    table = fleet(fleet_config, "rollout", "status", "r-test")
    assert "3/4 updated" in table.stdout
    listing = fleet(fleet_config, "rollout", "status")
    assert "r-test" in listing.stdout
    assert "completed" in listing.stdout


def test_a_booth_open_for_consultations_waits_and_an_abort_leaves_it_on_its_release(
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    tap: Tap,
    tmp_path: Path,
    keys: Path,
    store: tuple[Path, str],
) -> None:
    always = {"timezone": "Europe/Paris", "week": {d: ["00:00-24:00"] for d in WEEKDAYS}}
    processes.start_fleet(fleet_config)
    publish(tmp_path, keys, store[0], NEW)
    start(processes, agent_config, "shut", install_root(tmp_path, "shut"), keys)
    start(
        processes, agent_config, "open", install_root(tmp_path, "open"), keys, opening_hours=always
    )
    for agent in ("shut", "open"):
        wait_until(lambda a=agent: known(fleet_config, a), 60, f"{agent} known to the fleet")
    done = fleet(
        fleet_config, "rollout", "start", NEW, "--url", store[1], "--id", "r-hours",
        "--waves", "100%", "--target", "shut", "--target", "open",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    wait_until(lambda: committed(tap, "shut", NEW), 120, "the closed booth to update")
    waiting = wait_until(
        lambda: [r for r in reports(tap, "open") if r["phase"] == "waiting"], 60, "waiting"
    )
    assert waiting[-1]["reason"] == "the booth is open"
    current = status(fleet_config, "r-hours")
    assert current["state"] == "running"
    assert current["outcomes"] == {"shut": "updated", "open": "pending"}
    (detail,) = current["details"]
    assert (detail["agent_id"], detail["phase"], detail["reason"]) == (
        "open",
        "waiting",
        "the booth is open",
    )
    assert InstallRoot(tmp_path / "open").active_slot() == "a"

    aborted = fleet(fleet_config, "rollout", "abort")  # the only active rollout
    assert aborted.returncode == 0, aborted.stderr
    stays = wait_until(
        lambda: [r for r in reports(tap, "open") if r["phase"] == "idle" and r["reason"]],
        60,
        "the open booth to stand down",
    )
    assert stays[-1]["reason"] == f"staying on {OLD}, as asked"
    assert desired_versions(fleet_config)["open"] == OLD
    final = status(fleet_config, "r-hours")
    assert final["state"] == "aborted"
    assert final["outcomes"] == {"shut": "updated", "open": "cancelled"}
    assert InstallRoot(tmp_path / "open").active_slot() == "a"
    assert InstallRoot(tmp_path / "shut").active_slot() == "b"
    again = fleet(fleet_config, "rollout", "pause", "r-hours")
    assert again.returncode == 1
    assert "r-hours is aborted" in again.stderr


def test_bad_rollout_requests_are_refused_before_anything_is_sent(
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    tmp_path: Path,
    keys: Path,
    store: tuple[Path, str],
) -> None:
    processes.start_fleet(fleet_config)
    processes.start("agent", "-m", "edge_agent", "run", "--config", str(agent_config("lone")))
    wait_until(lambda: known(fleet_config, "lone"), 60, "the agent known to the fleet")
    publish(tmp_path, keys, store[0], NEW)

    def start_rollout(*args: str) -> Any:
        return fleet(fleet_config, "rollout", "start", *args)

    nobody = start_rollout(NEW, "--url", store[1], "--target", "site:nowhere")
    assert nobody.returncode == 1
    assert "matches no known agent" in nobody.stderr
    waves = start_rollout(NEW, "--url", store[1], "--target", "lone", "--waves", "10,5,100")
    assert waves.returncode == 2
    assert "further than the one before" in waves.stderr
    failure = start_rollout(NEW, "--url", store[1], "--target", "lone", "--max-failure", "lots")
    assert failure.returncode == 2
    missing = start_rollout("7.7.7", "--url", store[1], "--target", "lone")
    assert missing.returncode == 1
    assert "7.7.7 is not published" in missing.stderr
    publish(tmp_path, keys, store[0], "1.1.0", "--kind", "bus")
    buses = start_rollout("1.1.0", "--url", store[1], "--target", "lone")
    assert buses.returncode == 1
    assert "Left out, the release is for bus only: lone" in buses.stdout
    dry = start_rollout(NEW, "--url", store[1], "--target", "lone", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "1 wave(s)" in dry.stdout
    assert fleet(fleet_config, "rollout", "status", "--json") == []  # nothing sent so far

    first = start_rollout(NEW, "--url", store[1], "--target", "lone", "--id", "r-one")
    assert first.returncode == 0, first.stderr
    overlap = start_rollout(NEW, "--url", store[1], "--target", "all", "--id", "r-two")
    assert overlap.returncode == 1
    assert "already in an active rollout: lone (r-one)" in overlap.stderr
    by_hand = fleet(fleet_config, "release", "deploy", NEW, "--url", store[1], "--target", "lone")
    assert by_hand.returncode == 1
    assert "in an active rollout: lone (r-one)" in by_hand.stderr
    unknown = fleet(fleet_config, "rollout", "pause", "r-nine")
    assert unknown.returncode == 1
    assert "no rollout named r-nine" in unknown.stderr
    assert [r["rollout_id"] for r in fleet(fleet_config, "rollout", "status", "--json")] == [
        "r-one"
    ]
