"""Signed releases (pure): the manifest, its Ed25519 signature, and the checks an agent
runs before anything is installed.

A release is an artifact (the agent's wheel) and a manifest (version, size, SHA-256,
minimum agent version, target kinds) signed with the fleet's release key. The
signature covers the manifest file's exact bytes; the manifest pins the artifact by
size and hash. Agents hold only the public key.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from packaging.version import InvalidVersion, Version
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from edge_agent.contract import AgentKind, Sha256

_ARTIFACT_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
#: The signature travels beside the manifest, base64-free: 64 raw bytes.
SIGNATURE_SUFFIX: Final = ".sig"
MANIFEST_NAME: Final = "manifest.json"


class ReleaseError(ValueError):
    """A release this agent must not install, and why (one line, for its report)."""


def _pep440(value: str) -> str:
    try:
        Version(value)
    except InvalidVersion:
        raise ValueError(f"{value!r} is not a version (PEP 440)") from None
    return value


VersionText = Annotated[str, StringConstraints(max_length=64), AfterValidator(_pep440)]
ArtifactName = Annotated[str, StringConstraints(pattern=_ARTIFACT_RE.pattern)]


class ReleaseManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    version: VersionText
    #: The artifact's file name, beside the manifest (no folders).
    artifact: ArtifactName
    size: int = Field(ge=1)
    sha256: Sha256
    #: Agents older than this cannot update to it directly.
    min_agent_version: VersionText | None = None
    kinds: list[AgentKind] = Field(min_length=1)
    #: An older version than the running one is refused unless this says so.
    downgrade: bool = False
    published_at: AwareDatetime


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError("the signing key is not an Ed25519 key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ReleaseError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReleaseError("the release public key is not an Ed25519 key")
    return key


def manifest_bytes(manifest: ReleaseManifest) -> bytes:
    return manifest.model_dump_json(indent=1).encode() + b"\n"


def sign(document: bytes, key: Ed25519PrivateKey) -> bytes:
    return key.sign(document)


def verify(document: bytes, signature: bytes, key: Ed25519PublicKey) -> ReleaseManifest:
    """The manifest, if ``signature`` is the release key's over exactly ``document``."""
    try:
        key.verify(signature, document)
    except InvalidSignature:
        raise ReleaseError("bad signature: not signed with the fleet's release key") from None
    try:
        return ReleaseManifest.model_validate_json(document)
    except ValidationError as exc:
        raise ReleaseError(f"signed but malformed manifest: {exc.errors()[0]['msg']}") from None


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
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != manifest.sha256:
        raise ReleaseError("artifact's SHA-256 differs from the manifest's")


def new_manifest(
    artifact: Path,
    *,
    version: str,
    kinds: list[AgentKind],
    published_at: datetime,
    min_agent_version: str | None = None,
    downgrade: bool = False,
) -> ReleaseManifest:
    digest = hashlib.sha256()
    with artifact.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return ReleaseManifest(
        version=version,
        artifact=artifact.name,
        size=artifact.stat().st_size,
        sha256=digest.hexdigest(),
        min_agent_version=min_agent_version,
        kinds=kinds,
        downgrade=downgrade,
        published_at=published_at,
    )
