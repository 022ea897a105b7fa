"""The deployment playbooks parse, and the broker settings they ship are the tested ones."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from fleet.devstack.services import Mosquitto
from fleet.security.broker import delivery_settings

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
        line for line in delivery_settings().splitlines() if line and not line.startswith("#")
    ]
    assert shipped
    assert all(line in config.splitlines() for line in shipped)
    assert "max_inflight_messages 1000" in shipped
    # The playbook installs the copy 'fleet broker config' wrote beside the security files.
    assert (tmp_path / "tls" / "vigie-delivery.conf").read_text() == delivery_settings()
    assert '"{{ vigie_broker_files }}/vigie-delivery.conf"' in (ANSIBLE / "central.yml").read_text()


@pytest.mark.parametrize("updates", [False, True], ids=["base", "with-updates"])
def test_the_agent_unit_renders_one_directive_a_line(updates: bool) -> None:
    # As Ansible's template module renders (trim_blocks: a block tag eats its newline):
    # a tag at the end of a line once glued ProtectHome to the ReadWritePaths path.
    environment = jinja2.Environment(  # noqa: S701 - a systemd unit, not HTML
        trim_blocks=True, undefined=jinja2.StrictUndefined
    )
    template = environment.from_string(
        (ANSIBLE / "templates" / "vigie-agent.service.j2").read_text()
    )
    variables = {"vigie_home": "/opt/vigie", "vigie_state_dir": "/var/lib/vigie-agent"}
    if updates:
        variables["vigie_updates_root"] = "/opt/vigie-agent"
    lines = template.render(**variables).splitlines()
    expected = "/var/lib/vigie-agent /opt/vigie-agent" if updates else "/var/lib/vigie-agent"
    assert f"ReadWritePaths={expected}" in lines
    assert "ProtectHome=true" in lines
    # Every line a section, a comment, blank, or one Key=value.
    assert all(
        not line or line.startswith(("#", "[")) or re.fullmatch(r"[A-Za-z]+=\S.*", line)
        for line in lines
    ), lines
