"""What `edge-agent run` loads: an agent runs all day on the booth's PC, and every
library imported stays in its memory (docs/benchmarks.md, "The agent's footprint")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: Loaded only by the commands that need them: httpx (with its own command line:
#: click, rich, pygments) when a release is downloaded, rich for the tables of
#: `edge-agent profiles list` and `edge-agent formats`.
NOT_FOR_RUNNING = ("httpx", "rich", "pygments")


def test_the_agent_command_line_and_its_runtime_load_no_download_or_table_library() -> None:
    script = (
        "import json, sys\n"
        "import edge_agent.cli, edge_agent.runtime.supervisor\n"
        f"print(json.dumps([m for m in {list(NOT_FOR_RUNNING)!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(result.stdout) == []


def test_the_libraries_left_out_are_loaded_by_the_commands_that_use_them(tmp_path: Path) -> None:
    script = (
        "import json, sys, pathlib\n"
        "from edge_agent.errors import DownloadError\n"
        "from edge_agent.updates.download import download\n"
        "from edge_agent.cli import _print_formats\n"
        "try:\n"
        f"    download('http://127.0.0.1:9/x', pathlib.Path({str(tmp_path / 'x')!r}),"
        " expected_size=1, attempts=1)\n"
        "except DownloadError:\n"
        "    pass\n"
        "_print_formats(False)\n"
        "print(json.dumps([m for m in ('httpx', 'rich') if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(result.stdout.splitlines()[-1]) == ["httpx", "rich"]
