"""Release signatures: the fleet's Ed25519 key pair, signing a manifest's exact bytes,
and checking them. The fleet signs (``fleet release publish``); agents verify with the
public key alone (``edge_agent.updates``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from vigie_core.contract.releases import ReleaseManifest
from vigie_core.errors import ReleaseError


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


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read a MiB at a time (artifacts are tens of MiB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
