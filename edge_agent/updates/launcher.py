"""The launcher: runs the agent from the active slot and rolls a failed release back.

It runs from the base installation, never from a slot, because a broken release
cannot be trusted to roll itself back. systemd starts the launcher; the launcher
starts the agent, restarts it into a new slot when asked (exit code 75), and while a
release is on trial gives it a limited number of starts and a deadline to commit.
After a crash or a power cut anywhere in an update it finds a consistent state: a
half-unpacked slot is discarded, a trial goes on or is rolled back.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from edge_agent.updates.slots import InstallRoot

#: The agent's exit status for "start me again" (into the slot just switched to).
RESTART_EXIT_CODE = 75
#: A release on trial that fails to start this many times is rolled back.
MAX_TRIAL_STARTS = 3

log = logging.getLogger(__name__)


def prepare(slots: InstallRoot) -> None:
    """Before each start: finish or undo whatever an interrupted update left."""
    slots.discard_partial()
    state = slots.state()
    if state.phase != "trial":
        return
    if time.time() > state.deadline:
        slots.roll_back(f"{state.version} did not pass its health check in time")
    elif state.attempts >= MAX_TRIAL_STARTS:
        slots.roll_back(f"{state.version} failed to start {state.attempts} times")
    else:
        slots.save(replace(state, attempts=state.attempts + 1))
        if state.slot is not None and slots.active_slot() != state.slot:
            slots.switch(state.slot)  # the record was written, the switch was not


def launch(root: Path, agent_args: list[str], poll_s: float = 0.5) -> int:
    """Run the agent until it stops cleanly or the launcher is told to stop."""
    slots = InstallRoot(root)
    stopping = threading.Event()
    child: list[subprocess.Popen[bytes]] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()
        if child and child[0].poll() is None:
            child[0].send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pause = 1.0
    while not stopping.is_set():
        prepare(slots)
        environment = {**os.environ, "PYTHONPATH": str(slots.current)}
        # cwd outside any source tree: "python -m" puts the working directory first on
        # sys.path, where a checkout would shadow the slot.
        command = [sys.executable, "-m", "edge_agent", *agent_args]
        process = subprocess.Popen(command, env=environment, cwd=root)
        child[:] = [process]
        while process.poll() is None:
            state = slots.state()
            if state.phase == "trial" and time.time() > state.deadline:
                log.error("release %s missed its health deadline; stopping it", state.version)
                process.kill()
            time.sleep(poll_s)
        code = process.returncode
        if stopping.is_set() or code == 0:
            return 0
        if code == RESTART_EXIT_CODE:
            pause = 1.0
            continue
        # A crash: start again after a pause, as systemd's Restart=on-failure would.
        log.error("agent exited with status %d; starting it again in %.0f s", code, pause)
        stopping.wait(pause)
        pause = min(pause * 2, 30.0)
    return 0
