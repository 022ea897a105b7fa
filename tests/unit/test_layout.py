"""The layout is the architecture: one shared core, two programs that never lean on
each other, pure modules apart from I/O, and no module too long to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("vigie_core", "edge_agent", "fleet")
#: What each package may import of the three.
ALLOWED = {
    "vigie_core": {"vigie_core"},
    "edge_agent": {"vigie_core", "edge_agent"},
    "fleet": {"vigie_core", "fleet"},
}
#: Pure code: no network, no disk, no clock of its own (bytes or values in and out).
PURE = (
    "vigie_core/contract",
    "edge_agent/instruments/decoders",
    "edge_agent/instruments/readings.py",
    "edge_agent/remote_config/merge.py",
    "edge_agent/runtime/batching.py",
    "edge_agent/storage/pacing.py",
    "fleet/storage/lineprotocol.py",
    "fleet/storage/points.py",
    "fleet/storage/schema.py",
    "fleet/status/derive.py",
    "fleet/storage/presence.py",
    "fleet/rollouts/plan.py",
    "fleet/desired/targets.py",
)
#: What pure code may not import.
IO_MODULES = {
    "aiomqtt",
    "paho",
    "httpx",
    "sqlite3",
    "socket",
    "bleak",
    "serial",
    "subprocess",
    "psutil",
    "threading",
    "asyncio",
}
MAX_LINES = 400


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at any level (lazy imports in functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_it_may(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in modules(package)
        for name in imported(path)
        if name.split(".")[0] in PACKAGES and name.split(".")[0] not in ALLOWED[package]
    }
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}"


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    # The rule above would pass on a tree it cannot read: show that it reads this one.
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from fleet.storage import points\n    import edge_agent.cli\n")
    assert imported(probe) == {"fleet.storage", "edge_agent.cli"}
    assert "vigie_core.contract.codec" in imported(ROOT / "fleet/ingest/service.py")


def test_pure_modules_do_no_io() -> None:
    paths = [
        path
        for entry in PURE
        for path in (
            [ROOT / entry] if entry.endswith(".py") else sorted((ROOT / entry).rglob("*.py"))
        )
    ]
    assert len(paths) > len(PURE)
    wrong = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in paths
        for name in imported(path)
        if name.split(".")[0] in IO_MODULES
    }
    assert not wrong


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_too_long_without_a_reason(package: str) -> None:
    too_long = [
        f"{path.relative_to(ROOT)} ({count} lines)"
        for path in modules(package)
        if (count := len(path.read_text().splitlines())) > MAX_LINES
        and "longer than" not in (ast.get_docstring(ast.parse(path.read_text())) or "")
    ]
    assert not too_long, f"split these, or say at their top why they are longer than {MAX_LINES}"
