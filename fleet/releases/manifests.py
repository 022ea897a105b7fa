"""A new release's manifest, from the artifact it describes (``fleet release publish``
signs it with ``vigie_core.signing``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from vigie_core.contract.identifiers import AgentKind
from vigie_core.contract.releases import ReleaseManifest
from vigie_core.signing import file_sha256


def new_manifest(
    artifact: Path,
    *,
    version: str,
    kinds: list[AgentKind],
    published_at: datetime,
    min_agent_version: str | None = None,
    downgrade: bool = False,
) -> ReleaseManifest:
    return ReleaseManifest(
        version=version,
        artifact=artifact.name,
        size=artifact.stat().st_size,
        sha256=file_sha256(artifact),
        min_agent_version=min_agent_version,
        kinds=kinds,
        downgrade=downgrade,
        published_at=published_at,
    )
