"""The deployment playbooks parse, and the broker settings they ship are the tested ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fleet.devstack import DELIVERY_SETTINGS, Mosquitto

ANSIBLE = Path(__file__).resolve().parents[2] / "ansible"


@pytest.mark.parametrize("playbook", ["agent.yml", "central.yml"])
def test_playbooks_pass_ansibles_syntax_check(playbook: str) -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "inventory.example.yml",
            "--syntax-check",
            playbook,
        ],
        cwd=ANSIBLE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_test_broker_runs_with_the_shipped_delivery_settings(tmp_path: Path) -> None:
    config = Mosquitto(workdir=tmp_path, port=1).config_text()
    shipped = [
        line
        for line in DELIVERY_SETTINGS.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert shipped
    assert all(line in config.splitlines() for line in shipped)
    assert "max_inflight_messages 1000" in shipped
