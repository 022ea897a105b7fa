"""The consultation in progress, as the booth's own software announces it.

The teleconsultation software writes the consultation's opaque id into a file when a
consultation starts and removes the file when it ends (``consultation_file`` in the
agent config). The agent only reads it: readings taken meanwhile carry the id, and
the updater never restarts the agent while the file exists.

A file whose content is not an acceptable opaque id still means "a consultation is
in progress"; its content is then never sent, nor logged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from edge_agent.aio import wait_or_stop
from vigie_core.contract.identifiers import check_consultation_id

#: More than any opaque id; a bigger file is not read.
_MAX_BYTES = 256


@dataclass(frozen=True, slots=True)
class Consultation:
    """What the file said: whether one is in progress, its id if acceptable, and
    why not otherwise."""

    in_progress: bool
    consultation_id: str | None = None
    refused: str | None = None


NONE = Consultation(in_progress=False)


def current_consultation(path: Path | None) -> Consultation:
    """Read ``path`` now; no path or no file means no consultation."""
    if path is None:
        return NONE
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        return NONE
    except OSError as exc:
        return Consultation(True, refused=f"cannot read {path}: {exc.strerror}")
    return _parse(path, raw)


def _parse(path: Path, raw: bytes) -> Consultation:
    if len(raw) > _MAX_BYTES:
        return Consultation(True, refused=f"{path} is longer than {_MAX_BYTES} bytes")
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return Consultation(True)  # in progress, no id given
    try:
        return Consultation(True, check_consultation_id(text))
    except ValueError as exc:
        return Consultation(True, refused=str(exc))


class ConsultationWatch:
    """The consultation file, read once a second on a worker thread: readings take the
    state from here, so that no reading waits for the disk on the event loop. A second
    is far shorter than any measurement a consultation starts (a cuff takes 30 s)."""

    INTERVAL_S = 1.0

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.current = current_consultation(path)

    def refresh(self) -> Consultation:
        """Read the file now (blocking)."""
        self.current = current_consultation(self.path)
        return self.current

    async def watch(self, stop: asyncio.Event) -> None:
        if self.path is None:
            return  # nothing to watch: never in a consultation
        while not await wait_or_stop(stop, self.INTERVAL_S):
            await asyncio.to_thread(self.refresh)
