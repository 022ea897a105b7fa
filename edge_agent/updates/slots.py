"""A/B release slots and the update state, on disk, crash-safe.

Layout of an install root (``updates.root`` in the agent config)::

    slots/a/, slots/b/      unpacked releases (a wheel is a zip of importable packages)
    current -> slots/a      the active slot: a symlink, switched by an atomic rename
    update-state.json       where an update is: written atomically, read after any crash
    downloads/              artifacts and manifests being fetched (resumable)

The agent runs from ``current`` (the launcher puts it first on ``PYTHONPATH``); its
dependencies come from the base environment, so a release that needs new ones must be
installed by the deployment (Ansible), not pushed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from vigie_core.files import sync_dir, write_atomically

Phase = Literal["idle", "trial", "committed", "rolled_back"]
SLOTS: tuple[str, str] = ("a", "b")


@dataclass(frozen=True, slots=True)
class UpdateState:
    """What survives a crash. ``trial``: the new slot is active and must prove itself
    (connected, instruments answering) before ``deadline``; the launcher rolls back
    after ``deadline`` or ``max_attempts`` starts."""

    phase: Phase = "idle"
    version: str | None = None  # the release in trial, committed, or rolled back
    slot: str | None = None
    previous_slot: str | None = None
    previous_version: str | None = None
    deadline: float = 0.0  # wall-clock seconds: survives a reboot
    attempts: int = 0
    reason: str = ""
    #: Versions that failed here: never tried again until the fleet asks for another.
    failed: list[str] = field(default_factory=list)


class InstallRoot:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_path = root / "update-state.json"
        self.current = root / "current"
        self.downloads = root / "downloads"

    # --- state ---------------------------------------------------------------------------

    def state(self) -> UpdateState:
        try:
            raw = json.loads(self.state_path.read_text())
            return UpdateState(**raw)
        except FileNotFoundError:
            return UpdateState()
        except (ValueError, TypeError):
            # A damaged state file: the safest reading is "nothing in progress".
            return UpdateState(reason="update state was damaged; reset")

    def save(self, state: UpdateState) -> None:
        write_atomically(self.state_path, json.dumps(asdict(state), indent=1).encode())

    # --- slots ---------------------------------------------------------------------------

    def slot_path(self, slot: str) -> Path:
        return self.root / "slots" / slot

    def active_slot(self) -> str | None:
        try:
            return self.current.readlink().name
        except OSError:
            return None

    def inactive_slot(self) -> str:
        return "b" if self.active_slot() == "a" else "a"

    def slot_version(self, slot: str) -> str | None:
        try:
            return (self.slot_path(slot) / "VERSION").read_text().strip()
        except OSError:
            return None

    def install(self, artifact: Path, version: str, slot: str) -> None:
        """Unpack ``artifact`` into ``slot`` (replacing what was there) all or nothing:
        into a partial folder first, renamed once complete and on disk."""
        partial = self.root / "slots" / f".{slot}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        with zipfile.ZipFile(artifact) as archive:
            for member in archive.infolist():
                target = (partial / member.filename).resolve()
                if not target.is_relative_to(partial.resolve()):
                    raise ValueError(f"artifact member {member.filename!r} escapes the slot")
            archive.extractall(partial)
        (partial / "VERSION").write_text(version + "\n")
        _sync_tree(partial)
        final = self.slot_path(slot)
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        sync_dir(final.parent)

    def discard_partial(self) -> None:
        for slot in SLOTS:
            shutil.rmtree(self.root / "slots" / f".{slot}.partial", ignore_errors=True)

    def switch(self, slot: str) -> None:
        """Make ``slot`` the active one: a new symlink renamed over the old (atomic)."""
        link = self.root / ".current.tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(Path("slots") / slot)
        link.replace(self.current)
        sync_dir(self.root)

    def begin_trial(
        self, version: str, slot: str, health_timeout_s: float, running_version: str
    ) -> None:
        """Record the trial, then switch: a crash in between leaves a trial whose slot
        the launcher switches to (idempotent), never a switch without a record."""
        state = self.state()
        self.save(
            replace(
                state,
                phase="trial",
                version=version,
                slot=slot,
                previous_slot=self.active_slot(),
                previous_version=running_version,
                deadline=time.time() + health_timeout_s,
                attempts=0,
                reason="",
            )
        )
        self.switch(slot)

    def commit(self) -> None:
        state = self.state()
        self.save(replace(state, phase="committed", reason="", attempts=0))

    def roll_back(self, reason: str) -> UpdateState:
        state = self.state()
        if state.previous_slot is not None:
            self.switch(state.previous_slot)
        failed = [*state.failed, state.version] if state.version else state.failed
        rolled = replace(state, phase="rolled_back", reason=reason, failed=failed[-10:])
        self.save(rolled)
        return rolled


def _sync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            with (Path(folder) / name).open("rb") as handle:
                os.fsync(handle.fileno())
        sync_dir(Path(folder))
