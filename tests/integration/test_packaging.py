"""The wheel carries everything the programs read at run time, and they run from it:
nothing is found by walking up from a source file to the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from .conftest import REPO

#: Python code that runs from the unpacked wheel and checks what it finds there.
PROBE = """
import sys
from pathlib import Path
site = Path(sys.argv[1])
import device_profiles, edge_agent, fleet, vigie_core
for module in (device_profiles, edge_agent, fleet, vigie_core):
    assert Path(module.__file__).is_relative_to(site), module.__file__
from edge_agent.instruments.profiles import DEFAULT_PROFILES_DIR, load_profiles
from fleet.security.broker import delivery_settings
assert DEFAULT_PROFILES_DIR.is_relative_to(site), DEFAULT_PROFILES_DIR
print(len(load_profiles(DEFAULT_PROFILES_DIR)), "profiles")
assert "max_inflight_messages" in delivery_settings()
"""


def test_the_wheel_ships_the_profiles_and_broker_settings_and_runs_from_anywhere(
    tmp_path: Path,
) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(REPO)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("vigie-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    profiles = sorted(path.name for path in (REPO / "device_profiles").glob("*.yaml"))
    assert profiles
    assert {f"device_profiles/{name}" for name in profiles} <= names
    assert "fleet/security/mosquitto-delivery.conf" in names
    assert "vigie_core/contract/codec.py" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # -P and a working directory outside the checkout: only the unpacked wheel (and the
    # dependencies of this environment) can be imported.
    env = {**os.environ, "PYTHONPATH": str(site)}
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-P", *args], capture_output=True, text=True, cwd=outside,
            env=env, timeout=120, check=False,
        )  # fmt: skip

    probe = run("-c", PROBE, str(site))
    assert probe.returncode == 0, probe.stderr
    assert f"{len(profiles)} profiles" in probe.stdout
    listed = run("-m", "edge_agent", "profiles", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "sig_blood_pressure" in listed.stdout
    broker = run("-m", "fleet", "broker", "config", "--help")
    assert broker.returncode == 0, broker.stderr
