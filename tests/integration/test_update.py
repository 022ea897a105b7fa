"""Signed updates end to end: a real broker, a real HTTP artifact server, the launcher
and the agent as real processes with their install root in a temporary folder."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_agent.updates.slots import InstallRoot
from vigie_core.contract.releases import MANIFEST_NAME, SIGNATURE_SUFFIX
from vigie_core.signing import generate_key, sign

from .conftest import AgentFactory, Processes, Tap, run, wait_until
from .updates import (
    OLD,
    WEEKDAYS,
    build_release,
    committed,
    deploy,
    install_root,
    installs,
    known,
    publish,
    reports,
    start,
)

pytestmark = pytest.mark.integration

Rollout = Callable[..., Path]


@pytest.fixture
def rollout(
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    tmp_path: Path,
    keys: Path,
    store: tuple[Path, str],
) -> Rollout:
    """Publish 1.0.0, start an agent on 0.9.0 under the launcher, ask it to run 1.0.0;
    returns its install root. ``broken`` publishes a release that cannot start,
    ``tamper`` changes the published folder, other keywords go to the agent config."""

    def go(
        agent_id: str,
        *,
        broken: bool = False,
        tamper: Callable[[Path], None] | None = None,
        **overrides: Any,
    ) -> Path:
        processes.start_fleet(fleet_config)
        publish(tmp_path, keys, store[0], "1.0.0", broken=broken)
        if tamper is not None:
            tamper(store[0] / "1.0.0")
        root = install_root(tmp_path)
        start(processes, agent_config, agent_id, root, keys, **overrides)
        wait_until(lambda: known(fleet_config, agent_id), 60, "the agent known to the fleet")
        deploy(fleet_config, "1.0.0", store[1], agent_id)
        return root

    return go


def test_an_update_waits_for_the_consultation_then_installs_restarts_and_commits(
    rollout: Rollout, fleet_config: Path, tap: Tap, tmp_path: Path
) -> None:
    consultation = tmp_path / "consultation"
    consultation.write_text("c-0123456789abcdef")
    root = rollout("upd-ok", consultation_file=str(consultation))
    # Downloaded and installed, but a consultation is in progress: no restart.
    waiting = wait_until(
        lambda: [r for r in reports(tap, "upd-ok") if r["phase"] == "waiting"], 60, "waiting"
    )
    assert waiting[-1]["reason"] == "a consultation is in progress"
    assert InstallRoot(root).active_slot() == "a"
    assert InstallRoot(root).slot_version("b") == "1.0.0"
    phases = [r["phase"] for r in reports(tap, "upd-ok")]
    for step in ("downloading", "verifying", "installing"):
        assert step in phases, phases
    consultation.unlink()
    wait_until(
        lambda: committed(tap, "upd-ok", "1.0.0"),
        90,
        "the new release committed after its health check",
    )
    slots = InstallRoot(root)
    assert slots.active_slot() == "b"
    assert slots.state().phase == "committed"
    status = json.loads(
        run("fleet", "release", "status", "--json", "--config", str(fleet_config)).stdout
    )
    row = next(r for r in status if r["agent_id"] == "upd-ok")
    assert (row["desired"], row["running"], row["phase"]) == ("1.0.0", "1.0.0", "committed")


def test_a_release_that_fails_its_trial_is_rolled_back_and_not_retried(
    rollout: Rollout, tap: Tap
) -> None:
    root = rollout("upd-bad", broken=True)
    rolled = wait_until(
        lambda: [r for r in reports(tap, "upd-bad") if r["phase"] == "rolled_back"],
        120,
        "the rollback",
    )
    assert rolled[-1]["running"] == OLD
    assert rolled[-1]["target"] == "1.0.0"
    assert "failed to start 3 times" in rolled[-1]["reason"]
    slots = InstallRoot(root)
    assert slots.active_slot() == "a"
    assert "1.0.0" in slots.state().failed
    # The desired release still says 1.0.0 (retained): the agent does not try it again.
    assert slots.slot_version("b") == "1.0.0"
    assert installs(tap, "upd-bad") == 1


def test_unsigned_or_badly_signed_releases_are_refused_and_nothing_is_installed(
    rollout: Rollout, tap: Tap
) -> None:
    def sign_with_another_key(release: Path) -> None:
        manifest = (release / MANIFEST_NAME).read_bytes()
        signature = sign(manifest, generate_key())
        (release / (MANIFEST_NAME + SIGNATURE_SUFFIX)).write_bytes(signature)

    root = rollout("upd-sig", tamper=sign_with_another_key)
    refused = wait_until(
        lambda: [r for r in reports(tap, "upd-sig") if r["phase"] == "refused"], 60, "a refusal"
    )
    assert "bad signature" in refused[-1]["reason"]
    assert InstallRoot(root).slot_version("b") is None
    assert InstallRoot(root).active_slot() == "a"


def test_a_booth_open_for_consultations_is_not_restarted(rollout: Rollout, tap: Tap) -> None:
    always = {"timezone": "Europe/Paris", "week": {d: ["00:00-24:00"] for d in WEEKDAYS}}
    root = rollout("upd-open", opening_hours=always)
    waiting = wait_until(
        lambda: [r for r in reports(tap, "upd-open") if r["phase"] == "waiting"], 60, "waiting"
    )
    assert waiting[-1]["reason"] == "the booth is open"
    assert InstallRoot(root).active_slot() == "a"


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def gone(pid: int) -> bool:
    """Dead: no longer in /proc, or a zombie nobody reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_a_power_cut_in_the_middle_of_a_real_install_is_recovered(
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    tap: Tap,
    tmp_path: Path,
    keys: Path,
    store: tuple[Path, str],
) -> None:
    """SIGKILL to the launcher and the agent at once, as a power cut, while the new
    release is being unpacked: the next start discards the half slot, runs the old
    release, installs again from the verified download and commits."""
    processes.start_fleet(fleet_config)
    # 2,000 files of noise: unpacking (with a sync per file) takes over a second.
    publish(tmp_path, keys, store[0], "1.0.0", padding=2000)
    root = install_root(tmp_path)
    launcher = start(processes, agent_config, "upd-kill", root, keys)
    wait_until(lambda: known(fleet_config, "upd-kill"), 60, "the agent known to the fleet")
    (agent,) = children(launcher.pid)
    deploy(fleet_config, "1.0.0", store[1], "upd-kill")

    half_slot = root / "slots" / ".b.partial"
    deadline = time.monotonic() + 120
    while not half_slot.exists():
        assert time.monotonic() < deadline, "the install never began"
        time.sleep(0.002)
    launcher.kill()  # the launcher first, or it would start the agent again
    os.kill(agent, signal.SIGKILL)
    launcher.wait(10)
    wait_until(lambda: gone(agent), 10, "the agent to die")
    assert half_slot.exists()  # cut in the middle of the unpacking
    slots = InstallRoot(root)
    assert slots.active_slot() == "a"
    assert slots.slot_version("b") is None

    start(processes, agent_config, "upd-kill", root, keys)  # the power comes back
    wait_until(
        lambda: committed(tap, "upd-kill", "1.0.0"),
        120,
        "the release installed again and committed",
    )
    assert not half_slot.exists()
    assert slots.active_slot() == "b"
    assert slots.state().phase == "committed"
    assert len(list((slots.slot_path("b") / "padding").iterdir())) == 2000  # whole


def test_after_a_power_cut_mid_update_the_launcher_finds_a_consistent_state(
    processes: Processes,
    fleet_config: Path,
    agent_config: AgentFactory,
    tap: Tap,
    tmp_path: Path,
    keys: Path,
) -> None:
    """Two moments a SIGKILL or a power cut can hit: while a slot is being unpacked
    (the half slot is discarded, the old release runs), and right after the switch to
    the new slot (its trial goes on, and it commits once healthy)."""
    processes.start_fleet(fleet_config)
    root = install_root(tmp_path)
    slots = InstallRoot(root)
    partial = root / "slots" / ".b.partial" / "edge_agent"
    partial.mkdir(parents=True)
    (partial / "__init__.py").write_text("half a file")
    slots.install(build_release(tmp_path, "1.0.0"), "1.0.0", "b")
    (root / "slots" / ".a.partial").mkdir()
    slots.begin_trial("1.0.0", "b", 60, OLD)  # the record and the switch, then the cut
    start(processes, agent_config, "upd-cut", root, keys)
    wait_until(
        lambda: committed(tap, "upd-cut", "1.0.0"),
        90,
        "the interrupted trial to finish and commit",
    )
    assert not (root / "slots" / ".a.partial").exists()
    assert not (root / "slots" / ".b.partial").exists()
    assert slots.state().phase == "committed"
