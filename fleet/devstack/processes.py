"""Our own programs as child processes: the fleet service, started and waited for until
it is subscribed, and any child stopped in order (the demo, the benchmarks, the tests)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from fleet.errors import DevstackError


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a child's log, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def fleet_serve_args(config: Path, ready_file: Path) -> list[str]:
    """``python`` arguments that run ``fleet serve``, which creates ``ready_file`` once
    its subscription exists at the broker."""
    ready_file.unlink(missing_ok=True)
    return ["-m", "fleet", "serve", "--config", str(config), "--ready-file", str(ready_file)]


def wait_until_subscribed(
    process: subprocess.Popen[bytes], ready_file: Path, log: Path, timeout_s: float = 60.0
) -> None:
    """Return once ``fleet serve`` is subscribed. Agents must not start before: the
    broker keeps messages only for a subscription that exists (docs/protocol.md).

    Raises:
        DevstackError: the service exited, or was not subscribed within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while not ready_file.exists():
        if process.poll() is not None:
            raise DevstackError(
                f"the fleet service exited with status {process.returncode}:\n{log_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise DevstackError(
                f"the fleet service was not subscribed within {timeout_s:.0f} s:\n{log_tail(log)}"
            )
        time.sleep(0.05)


def spawn(args: list[str], log: Path, *, own_session: bool = False) -> subprocess.Popen[bytes]:
    """``python <args>`` with its output appended to ``log``. ``own_session``: a process
    group of its own, so that a Ctrl-C meant for the caller does not reach it first."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )


def start_fleet_service(
    config: Path, ready_file: Path, log: Path, *, own_session: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``fleet serve`` and return once it is subscribed (or raise DevstackError,
    the process stopped)."""
    process = spawn(fleet_serve_args(config, ready_file), log, own_session=own_session)
    try:
        wait_until_subscribed(process, ready_file, log)
    except DevstackError:
        terminate(process)
        raise
    return process


def terminate(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it does not stop in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Stop ``process`` on the way out."""
    try:
        yield process
    finally:
        terminate(process)
