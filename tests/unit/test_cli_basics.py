"""What both programs answer before any configuration: their version, shell
completion, and usage errors (exit 2) for a duration that is not one."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import edge_agent
import fleet
from edge_agent.cli import app as agent_app
from fleet.cli.app import app as fleet_app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_both_programs_say_their_version_which_is_the_packages() -> None:
    packaged = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert edge_agent.__version__ == fleet.__version__ == packaged
    for app, name in ((agent_app, "edge-agent"), (fleet_app, "fleet")):
        result = runner.invoke(app, ["--version"])
        assert result.exit_code == 0
        assert result.stdout.strip() == f"{name} {packaged}"


@pytest.mark.parametrize(("app", "name"), [(agent_app, "edge-agent"), (fleet_app, "fleet")])
def test_shell_completion_is_offered(app: object, name: str) -> None:
    result = runner.invoke(app, ["--show-completion", "bash"], prog_name=name)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    assert "complete" in result.stdout
    assert name.upper().replace("-", "_") in result.stdout  # its completion variable


@pytest.mark.parametrize(
    "args",
    [
        ["readings", "booth-01", "--since", "1y"],
        ["readings", "booth-01", "--since", "forever"],
        ["agent", "show", "booth-01", "--window", "0h"],
    ],
)
def test_a_duration_that_is_not_one_is_a_usage_error(args: list[str], tmp_path: Path) -> None:
    # No configuration is read: the option is refused first.
    result = runner.invoke(fleet_app, [*args, "--config", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2
    assert "is not a duration" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
