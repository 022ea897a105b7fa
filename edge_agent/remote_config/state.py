"""The agent's side of desired configuration: which pushed version runs, the saved copy
of the last one accepted, and the last refusal. It decides; the agent switches.

Settings are laid over the agent's own file by ``edge_agent.remote_config.merge`` (pure); here is
what must survive a reboot and what is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edge_agent.config import AgentConfig
from edge_agent.errors import ConfigRejected
from edge_agent.remote_config.merge import apply_settings, effective_settings
from vigie_core.contract.codec import encode
from vigie_core.contract.data import Severity
from vigie_core.contract.settings import ConfigRejection, DesiredConfig, ReportedConfig
from vigie_core.files import write_atomically

log = logging.getLogger(__name__)


@dataclass
class RemoteConfig:
    #: The agent's own file: every push is laid over it, never over the previous push.
    base: AgentConfig
    record_event: Callable[[str, Severity, str], object]
    version: int = 0
    sha256: str | None = None
    rejection: ConfigRejection | None = None

    @property
    def saved_path(self) -> Path:
        return self.base.state_dir / "desired-config.json"

    def load_saved(self) -> AgentConfig:
        """What to start with: the last push accepted (even before the broker answers),
        or the file alone."""
        try:
            saved = DesiredConfig.model_validate_json(self.saved_path.read_bytes())
            merged = apply_settings(self.base, saved.settings)
        except FileNotFoundError:
            return self.base
        except (OSError, ValueError) as exc:  # damaged, or no longer fits the file
            log.warning("%s: saved desired configuration not used: %s", self.base.agent_id, exc)
            self.record_event("config_saved_ignored", Severity.WARNING, str(exc)[:500])
            return self.base
        self.version, self.sha256 = saved.version, saved.sha256
        return merged

    def accept(self, desired: DesiredConfig) -> AgentConfig | None:
        """The configuration to switch to, saved before it is returned; None when it
        runs already or is refused (the reason is then in the report)."""
        if desired.version < self.version:
            reason = f"older than the running version {self.version}"
            self.reject(desired.version, desired.sha256, "version", reason)
            return None
        if desired.version == self.version and desired.sha256 == self.sha256:
            return None  # a retained message seen again
        try:
            merged = apply_settings(self.base, desired.settings)
        except ConfigRejected as exc:
            self.reject(desired.version, desired.sha256, exc.field, exc.reason)
            return None
        # On disk first: the last known good one survives a crash from here on.
        write_atomically(self.saved_path, encode(desired))
        self.version, self.sha256, self.rejection = desired.version, desired.sha256, None
        log.info("%s: running desired configuration %d", self.base.agent_id, desired.version)
        self.record_event("config_applied", Severity.INFO, f"version {desired.version}")
        return merged

    def reject(self, version: int, sha256: str | None, field: str, reason: str) -> None:
        self.rejection = ConfigRejection(
            version=version, sha256=sha256, field=field[:200], reason=reason[:1000]
        )
        log.warning(
            "%s: desired configuration %d refused: %s: %s",
            self.base.agent_id,
            version,
            field,
            reason,
        )
        self.record_event(
            "config_rejected", Severity.WARNING, f"version {version}: {field}: {reason}"
        )

    def report(self, running: AgentConfig, at: datetime) -> ReportedConfig:
        settings = effective_settings(running)
        return ReportedConfig(
            agent_id=running.agent_id,
            version=self.version,
            sha256=settings.digest(),
            settings=settings,
            rejected=self.rejection,
            at=at,
        )
