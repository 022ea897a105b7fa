"""Signed releases: what an agent refuses before installing anything."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edge_agent.updates.checks import check_applicable, check_artifact
from fleet.releases.manifests import new_manifest
from vigie_core.clock import utc_now
from vigie_core.contract.identifiers import AgentKind
from vigie_core.contract.releases import manifest_bytes
from vigie_core.errors import ReleaseError
from vigie_core.signing import generate_key, load_public_key, public_key_pem, sign, verify


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "vigie-0.3.0-py3-none-any.whl"
    path.write_bytes(bytes(range(256)) * 1000)
    return path


def test_a_signed_manifest_verifies_and_pins_the_artifact(artifact: Path) -> None:
    key = generate_key()
    manifest = new_manifest(
        artifact, version="0.3.0", kinds=[AgentKind.BOOTH], published_at=utc_now()
    )
    assert manifest.sha256 == hashlib.sha256(artifact.read_bytes()).hexdigest()
    document = manifest_bytes(manifest)
    signature = sign(document, key)
    public = load_public_key(public_key_pem(key))
    assert verify(document, signature, public) == manifest
    check_artifact(artifact, manifest)


def test_bad_signatures_and_altered_manifests_are_refused(artifact: Path) -> None:
    key, other = generate_key(), generate_key()
    manifest = new_manifest(
        artifact, version="0.3.0", kinds=list(AgentKind), published_at=utc_now()
    )
    document = manifest_bytes(manifest)
    public = load_public_key(public_key_pem(key))
    with pytest.raises(ReleaseError, match="bad signature"):
        verify(document, sign(document, other), public)  # another key
    altered = document.replace(b'"downgrade": false', b'"downgrade": true')
    assert altered != document
    with pytest.raises(ReleaseError, match="bad signature"):
        verify(altered, sign(document, key), public)  # a byte changed after signing
    with pytest.raises(ReleaseError, match="bad signature"):
        verify(document, b"", public)  # unsigned


def test_truncated_or_corrupted_artifacts_are_refused(artifact: Path) -> None:
    manifest = new_manifest(
        artifact, version="0.3.0", kinds=list(AgentKind), published_at=utc_now()
    )
    data = artifact.read_bytes()
    artifact.write_bytes(data[:-10])
    with pytest.raises(ReleaseError, match="bytes, the manifest says"):
        check_artifact(artifact, manifest)
    artifact.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ReleaseError, match="SHA-256"):
        check_artifact(artifact, manifest)


@pytest.mark.parametrize(
    ("version", "running", "kinds", "downgrade", "minimum", "refusal"),
    [
        ("0.3.0", "0.2.0", [AgentKind.BUS], False, None, "is for bus, not booth"),
        ("0.2.0", "0.3.0", [AgentKind.BOOTH], False, None, "older than"),
        ("0.3.0", "0.3.0", [AgentKind.BOOTH], False, None, "already running"),
        ("0.5.0", "0.2.0", [AgentKind.BOOTH], False, "0.3.0", "needs agent 0.3.0"),
        ("0.2.0", "0.3.0", [AgentKind.BOOTH], True, None, None),  # an intended downgrade
        ("0.10.0", "0.9.1", [AgentKind.BOOTH], False, None, None),  # not compared as text
    ],
)
def test_releases_for_another_kind_downgrades_and_too_old_agents_are_refused(
    artifact: Path,
    version: str,
    running: str,
    kinds: list[AgentKind],
    downgrade: bool,
    minimum: str | None,
    refusal: str | None,
) -> None:
    manifest = new_manifest(
        artifact,
        version=version,
        kinds=kinds,
        published_at=utc_now(),
        min_agent_version=minimum,
        downgrade=downgrade,
    )
    if refusal is None:
        check_applicable(manifest, running=running, kind=AgentKind.BOOTH)
    else:
        with pytest.raises(ReleaseError, match=refusal):
            check_applicable(manifest, running=running, kind=AgentKind.BOOTH)


def test_a_version_that_is_not_pep_440_is_refused(artifact: Path) -> None:
    with pytest.raises(ValueError, match="PEP 440"):
        new_manifest(artifact, version="latest", kinds=list(AgentKind), published_at=utc_now())
