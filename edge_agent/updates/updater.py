"""The agent's updater: from a desired release to a committed one, every step reported.

downloading (resumable) → verifying (signature, size, hash, kind, downgrade) →
installing (into the inactive slot) → waiting (outside opening hours, no consultation
in progress, a bus parked) → restart into the new slot → health checking (connected,
instruments answering) → committed. Anything refused leaves the running release
untouched; a release that fails its trial is rolled back by the launcher, and this
updater, running again in the old release, reports why.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from edge_agent import __version__
from edge_agent.config import AgentConfig, UpdateSettings
from edge_agent.consultation import current_consultation
from edge_agent.errors import DownloadError
from edge_agent.updates.checks import check_applicable, check_artifact
from edge_agent.updates.download import download
from edge_agent.updates.slots import InstallRoot
from vigie_core.contract.identifiers import AgentKind
from vigie_core.contract.releases import (
    MANIFEST_NAME,
    SIGNATURE_SUFFIX,
    DesiredRelease,
    ReportedRelease,
    UpdatePhase,
)
from vigie_core.errors import ReleaseError
from vigie_core.signing import load_public_key, verify

log = logging.getLogger(__name__)


def restart_blocker(
    config: AgentConfig, now: datetime, moving_at: datetime | None, started_at: datetime
) -> str | None:
    """Why the agent may not restart into a new release now (None: it may)."""
    if current_consultation(config.consultation_file).in_progress:
        return "a consultation is in progress"
    if config.kind is AgentKind.BUS:
        assert config.updates is not None  # noqa: S101 - only called with updates on
        last_move = moving_at or started_at
        if (now - last_move).total_seconds() < config.updates.parked_after_s:
            return "the bus is not parked"
        return None
    if config.opening_hours.is_open(now):
        return "the booth is open"
    return None


@dataclass
class Updater:
    config: AgentConfig
    settings: UpdateSettings
    clock: Callable[[], datetime]
    #: Asks the agent to exit so that the launcher starts the new slot.
    request_restart: Callable[[], None]
    request_failure_exit: Callable[[], None]
    is_healthy: Callable[[], bool]
    moving_at: Callable[[], datetime | None]
    report: ReportedRelease = field(init=False)
    #: Every step, in order, until the agent has published it (then the retained
    #: message holds the latest); ``changed`` wakes the publisher.
    steps: deque[ReportedRelease] = field(default_factory=lambda: deque(maxlen=100))
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _wanted: asyncio.Queue[DesiredRelease] = field(default_factory=asyncio.Queue)

    def __post_init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self.slots = InstallRoot(self.settings.root)
        self.started_at = self.clock()
        state = self.slots.state()
        if state.phase == "trial" and state.version == __version__:
            self._set(UpdatePhase.HEALTH_CHECKING, state.version)
        elif state.phase == "rolled_back" and state.previous_version == __version__:
            self._set(UpdatePhase.ROLLED_BACK, state.version, reason=state.reason)
        elif state.phase == "committed" and state.version == __version__:
            self._set(UpdatePhase.COMMITTED, state.version)
        else:
            self._set(UpdatePhase.IDLE, None)

    def _set(
        self,
        phase: UpdatePhase,
        target: str | None,
        *,
        reason: str = "",
        percent: int | None = None,
    ) -> None:
        self.report = ReportedRelease(
            agent_id=self.config.agent_id,
            running=__version__,
            phase=phase,
            target=target,
            progress_percent=percent,
            reason=reason[:1000],
            at=self.clock(),
        )
        log.info("%s: release %s: %s %s", self.config.agent_id, target, phase.value, reason)
        self.steps.append(self.report)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # from a download thread: hand the wake-up to the loop
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.changed.set)
            return
        self.changed.set()

    def want(self, desired: DesiredRelease) -> None:
        self._wanted.put_nowait(desired)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        if self.report.phase is UpdatePhase.HEALTH_CHECKING:
            await self._health_check(stop)
        while not stop.is_set():
            getter = asyncio.ensure_future(self._wanted.get())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not getter.done():
                getter.cancel()
                return
            desired = getter.result()
            while not self._wanted.empty():  # only the newest matters
                desired = self._wanted.get_nowait()
            await self._update(desired, stop)

    async def _health_check(self, stop: asyncio.Event) -> None:
        state = await asyncio.to_thread(self.slots.state)
        timeout = max(0.0, state.deadline - self.clock().timestamp())
        deadline = asyncio.get_running_loop().time() + timeout
        while not stop.is_set():
            if self.is_healthy():
                await asyncio.to_thread(self.slots.commit)
                self._set(UpdatePhase.COMMITTED, __version__)
                return
            if asyncio.get_running_loop().time() > deadline:
                self._set(UpdatePhase.HEALTH_CHECKING, __version__, reason="health check timed out")
                self.request_failure_exit()  # the launcher rolls back
                return
            await asyncio.sleep(0.5)

    async def _update(self, desired: DesiredRelease, stop: asyncio.Event) -> None:
        version = desired.version
        if version == __version__:
            if self.report.phase is UpdatePhase.WAITING:  # the fleet changed its mind
                self._set(UpdatePhase.IDLE, None, reason=f"staying on {version}, as asked")
            return
        if version in (await asyncio.to_thread(self.slots.state)).failed:
            self._set(UpdatePhase.REFUSED, version, reason="this release failed here before")
            return
        try:
            artifact = await asyncio.to_thread(self._fetch_and_verify, desired)
        except (ReleaseError, DownloadError, OSError) as exc:
            self._set(UpdatePhase.REFUSED, version, reason=str(exc))
            return
        slot = await asyncio.to_thread(self.slots.inactive_slot)
        self._set(UpdatePhase.INSTALLING, version)
        try:
            await asyncio.to_thread(self.slots.install, artifact, version, slot)
        except (OSError, ValueError) as exc:
            self._set(UpdatePhase.REFUSED, version, reason=f"install failed: {exc}")
            return
        # The download may go ahead at any time; the restart waits for its moment.
        while not stop.is_set():
            # On a worker thread: it reads the consultation file.
            blocker = await asyncio.to_thread(
                restart_blocker, self.config, self.clock(), self.moving_at(), self.started_at
            )
            if blocker is None:
                break
            if self.report.phase is not UpdatePhase.WAITING or self.report.reason != blocker:
                self._set(UpdatePhase.WAITING, version, reason=blocker)
            if self._changed_mind(version):
                return  # take the newer request
            await asyncio.sleep(self.settings.check_interval_s)
        if stop.is_set():
            return
        await asyncio.to_thread(
            self.slots.begin_trial, version, slot, self.settings.health_timeout_s, __version__
        )
        self._set(UpdatePhase.HEALTH_CHECKING, version, reason="restarting into it")
        self.request_restart()

    def _changed_mind(self, version: str) -> bool:
        """Whether a request for another version came; the same one again (a
        reconnection, a second fleet instance) changes nothing."""
        newest: DesiredRelease | None = None
        while not self._wanted.empty():
            newest = self._wanted.get_nowait()
        if newest is None or newest.version == version:
            return False
        self._wanted.put_nowait(newest)
        return True

    def _fetch_and_verify(self, desired: DesiredRelease) -> Path:
        """Blocking: manifest and signature, checks, then the artifact (resumable);
        returns the verified artifact."""
        version = desired.version
        base = f"{desired.url.rstrip('/')}/{version}"
        folder = self.slots.downloads / version
        folder.mkdir(parents=True, exist_ok=True)
        self._set(UpdatePhase.DOWNLOADING, version, percent=0)
        # Imported here, when a release is fetched: see download.download.
        import httpx  # noqa: PLC0415

        try:
            with httpx.Client(timeout=30) as http:
                manifest_raw = http.get(f"{base}/{MANIFEST_NAME}")
                manifest_raw.raise_for_status()
                signature = http.get(f"{base}/{MANIFEST_NAME}{SIGNATURE_SUFFIX}")
                if signature.status_code == 404:
                    raise ReleaseError("unsigned release: no signature beside the manifest")
                signature.raise_for_status()
        except httpx.HTTPError as exc:
            raise DownloadError(f"{base}: {exc}") from None
        self._set(UpdatePhase.VERIFYING, version)
        key = load_public_key(self.settings.public_key_file.read_bytes())
        manifest = verify(manifest_raw.content, signature.content, key)
        if manifest.version != version:
            raise ReleaseError(f"the manifest is for {manifest.version}, not {version}")
        check_applicable(manifest, running=__version__, kind=self.config.kind)
        reported = [-1]

        def progress(done: int, total: int) -> None:
            percent = done * 100 // total
            if percent // 10 != reported[0] // 10:
                reported[0] = percent
                self._set(UpdatePhase.DOWNLOADING, version, percent=percent)

        artifact = download(
            f"{base}/{manifest.artifact}",
            folder / manifest.artifact,
            expected_size=manifest.size,
            progress=progress,
        )
        self._set(UpdatePhase.VERIFYING, version)
        check_artifact(artifact, manifest)
        return artifact
