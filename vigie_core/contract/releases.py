"""Releases: the release the fleet wants an agent to run, every step the agent
reports on its way there, and the signed manifest that describes a release.

A release is an artifact (the agent's wheel) and a manifest (version, size, SHA-256,
minimum agent version, target kinds) signed with the fleet's release key
(``vigie_core.signing``). The signature covers the manifest file's exact bytes; the
manifest pins the artifact by size and hash. Agents hold only the public key.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Final

from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

from vigie_core.contract.identifiers import (
    AgentKind,
    Identifier,
    ReleaseUrl,
    ReleaseVersion,
    Sha256,
)
from vigie_core.contract.model import (
    SCHEMA_VERSION,
    ContractModel,
    Count,
    SchemaVersion,
    UtcDatetime,
)

_ARTIFACT_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
#: The signature travels beside the manifest, base64-free: 64 raw bytes.
SIGNATURE_SUFFIX: Final = ".sig"
MANIFEST_NAME: Final = "manifest.json"


class DesiredRelease(ContractModel):
    """The release the fleet wants an agent to run (retained, per agent)."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    agent_id: Identifier
    version: ReleaseVersion
    #: Where releases are served: ``<url>/<version>/manifest.json`` and its signature.
    url: ReleaseUrl
    issued_at: UtcDatetime


class UpdatePhase(enum.StrEnum):
    IDLE = "idle"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    INSTALLING = "installing"
    WAITING = "waiting"  # installed; the restart waits for closing time, a parked bus...
    HEALTH_CHECKING = "health_checking"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    REFUSED = "refused"  # signature, hash, kind, downgrade: nothing installed


class ReportedRelease(ContractModel):
    """Where an agent is with its release (retained): every step, with a reason."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    agent_id: Identifier
    #: The version running now.
    running: Annotated[str, StringConstraints(max_length=64)]
    phase: UpdatePhase
    #: The version being installed, or refused / rolled back.
    target: Annotated[str, StringConstraints(max_length=64)] | None = None
    progress_percent: int | None = Field(default=None, ge=0, le=100)
    reason: Annotated[str, StringConstraints(max_length=1000)] = ""
    at: UtcDatetime


def _pep440(value: str) -> str:
    try:
        Version(value)
    except InvalidVersion:
        raise ValueError(f"{value!r} is not a version (PEP 440)") from None
    return value


VersionText = Annotated[str, StringConstraints(max_length=64), AfterValidator(_pep440)]
ArtifactName = Annotated[str, StringConstraints(pattern=_ARTIFACT_RE.pattern)]


class ReleaseManifest(ContractModel):
    schema_version: SchemaVersion = SCHEMA_VERSION
    version: VersionText
    #: The artifact's file name, beside the manifest (no folders).
    artifact: ArtifactName
    size: Count = Field(ge=1)
    sha256: Sha256
    #: Agents older than this cannot update to it directly.
    min_agent_version: VersionText | None = None
    kinds: list[AgentKind] = Field(min_length=1)
    #: An older version than the running one is refused unless this says so.
    downgrade: bool = False
    published_at: AwareDatetime


def manifest_bytes(manifest: ReleaseManifest) -> bytes:
    """The manifest file's exact bytes: what the signature covers."""
    return manifest.model_dump_json(indent=1).encode() + b"\n"
