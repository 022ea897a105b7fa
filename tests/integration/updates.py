"""What the update and rollout tests share: releases built from the working tree,
install roots, agents under the launcher, and what they report."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from edge_agent.updates.slots import InstallRoot

from .conftest import REPO, AgentFactory, Processes, Tap, run

OLD = "0.9.0"
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


#: A fragile release dies at start where this is set, as a release with a bug that
#: shows only on some machines would.
FRAGILE_HOST = "VIGIE_TEST_FRAGILE_HOST"


def build_release(
    folder: Path, version: str, *, broken: bool = False, fragile: bool = False, padding: int = 0
) -> Path:
    """The agent's code as a wheel-shaped zip with its version set; a broken one dies
    at start, as a release with a fatal bug would; a fragile one only on some hosts.
    ``padding`` adds that many 4 KiB files of noise (a release that takes a while to
    unpack)."""
    wheel = folder / f"vigie-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for number in range(padding):
            archive.writestr(f"padding/{number:05d}.bin", os.urandom(4096))
        # What the real wheel holds for the agent: its code, the shared core, and the
        # device profiles (the slot must not lean on the base installation's).
        shipped = [
            *(REPO / "edge_agent").rglob("*.py"),
            *(REPO / "vigie_core").rglob("*.py"),
            *(REPO / "device_profiles").glob("*"),
        ]
        for path in sorted(shipped):
            name = str(path.relative_to(REPO))
            text = path.read_text()
            if name == "edge_agent/__init__.py":
                text = text.replace('__version__ = "0.1.0"', f'__version__ = "{version}"')
                assert version in text
            if broken and name == "edge_agent/__main__.py":
                text = "raise SystemExit(3)\n"
            if fragile and name == "edge_agent/__main__.py":
                check = f"if __import__('os').environ.get({FRAGILE_HOST!r}):"
                text = f"{check}\n    raise SystemExit(3)\n{text}"
            archive.writestr(name, text)
    return wheel


def publish(
    tmp_path: Path, keys: Path, store: Path, version: str, *options: str, **kwargs: Any
) -> None:
    """Build and publish a release with the CLI (``options`` go to the command)."""
    wheel = build_release(tmp_path, version, **kwargs)
    done = run(
        "fleet", "release", "publish", str(wheel), "--version", version,
        "--key", str(keys / "release.key"), "--store", str(store), *options,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def closed_now() -> dict[str, Any]:
    """Opening hours that exclude today: the booth is closed, it may restart."""
    today = WEEKDAYS[datetime.now(ZoneInfo("Europe/Paris")).weekday()]
    other = WEEKDAYS[(WEEKDAYS.index(today) + 3) % 7]
    return {"timezone": "Europe/Paris", "week": {other: ["08:00-09:00"]}}


def install_root(tmp_path: Path, name: str = "install") -> Path:
    """An install root with the old release active in slot a."""
    root = tmp_path / name
    slots = InstallRoot(root)
    slots.install(build_release(tmp_path, OLD), OLD, "a")
    slots.switch("a")
    return root


def start(
    processes: Processes,
    agent_config: AgentFactory,
    agent_id: str,
    root: Path,
    keys: Path,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> subprocess.Popen[bytes]:
    """Start the launcher (which starts the agent) with an updater set up."""
    config = agent_config(
        agent_id,
        updates={
            "root": str(root),
            "public_key_file": str(keys / "release.pub"),
            "health_timeout_s": 60,
            "check_interval_s": 0.3,
        },
        **{"opening_hours": closed_now(), **overrides},
    )
    return processes.start(
        f"launcher-{agent_id}", "-m", "edge_agent", "launch", "--root", str(root), "--",
        "run", "--config", str(config), env=env,
    )  # fmt: skip


def reports(tap: Tap, agent_id: str) -> list[dict[str, Any]]:
    """Every release report the agent published, in order."""
    return [body for topic, body in tap.messages if topic.endswith(f"/{agent_id}/reported/release")]


def installs(tap: Tap, agent_id: str) -> int:
    """Install steps the agent took (a step said twice, cut off by a restart, is one)."""
    return len({r["at"] for r in reports(tap, agent_id) if r["phase"] == "installing"})


def committed(tap: Tap, agent_id: str, version: str) -> bool:
    """Whether the agent reported ``version`` committed (past its health check)."""
    steps = reports(tap, agent_id)
    return any(r["phase"] == "committed" and r["running"] == version for r in steps)


def deploy(fleet_config: Path, version: str, url: str, agent_id: str) -> None:
    done = run(
        "fleet", "release", "deploy", version, "--url", url, "--target", agent_id,
        "--config", str(fleet_config),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def known(fleet_config: Path, agent_id: str) -> bool:
    done = run("fleet", "agents", "--json", "--config", str(fleet_config))
    return any(row["agent_id"] == agent_id for row in json.loads(done.stdout or "[]"))
