"""What an agent checks before it installs a release whose signature it verified
(``vigie_core.signing.verify``): that it is meant for this agent, and that the
downloaded artifact is the one the manifest pins."""

from __future__ import annotations

from pathlib import Path

from packaging.version import Version

from vigie_core.contract.identifiers import AgentKind
from vigie_core.contract.releases import ReleaseManifest
from vigie_core.errors import ReleaseError
from vigie_core.signing import file_sha256


def check_applicable(manifest: ReleaseManifest, *, running: str, kind: AgentKind) -> None:
    """Refuse a release meant for another kind of agent, a downgrade that does not say
    so, the version already running, or one that needs a newer agent first."""
    if kind not in manifest.kinds:
        kinds = ", ".join(k.value for k in manifest.kinds)
        raise ReleaseError(f"release {manifest.version} is for {kinds}, not {kind.value}")
    target, current = Version(manifest.version), Version(running)
    if target == current:
        raise ReleaseError(f"version {running} is already running")
    if target < current and not manifest.downgrade:
        raise ReleaseError(f"{manifest.version} is older than {running} (not marked a downgrade)")
    if manifest.min_agent_version is not None and current < Version(manifest.min_agent_version):
        raise ReleaseError(
            f"release {manifest.version} needs agent {manifest.min_agent_version} or later"
        )


def check_artifact(path: Path, manifest: ReleaseManifest) -> None:
    """Size, then SHA-256, of a downloaded artifact against its manifest."""
    size = path.stat().st_size
    if size != manifest.size:
        raise ReleaseError(f"artifact is {size} bytes, the manifest says {manifest.size}")
    if file_sha256(path) != manifest.sha256:
        raise ReleaseError("artifact's SHA-256 differs from the manifest's")
