"""The path fields of configuration files, checked when the file is loaded.

Each type says what its path must be (a readable file, a certificate, a private key, a
secret, a folder the program may create...), so that a mistake is refused at once with
the field named, rather than found later as an OS error that names nothing. Every
reason starts with the path and never quotes what a file holds (keys, passwords).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated, Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pydantic import AfterValidator

from vigie_core.errors import ReleaseError
from vigie_core.signing import load_public_key

#: More than any certificate chain, key or secret: a bigger file is not one.
MAX_BYTES: Final = 1 << 20


def _nearest_existing(path: Path) -> Path:
    """The closest ancestor of ``path`` that exists (``/`` at worst)."""
    for ancestor in path.absolute().parents:
        if os.path.exists(ancestor):  # noqa: PTH110 - never raises, unlike Path.exists
            return ancestor
    return Path(path.absolute().anchor)


def _missing(path: Path) -> bool:
    """Whether nothing is at ``path``, with nothing in the way: a regular file where a
    folder should be makes stat say "not a directory" instead."""
    try:
        path.stat()
    except FileNotFoundError:
        return True
    except OSError:
        return False  # something is wrong there: the caller's checks say what
    return False


def _stat(path: Path, missing: str) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        raise ValueError(f"{path}: {missing}") from None
    except NotADirectoryError:
        raise ValueError(f"{path}: {_nearest_existing(path)} is a file, not a directory") from None
    except PermissionError:
        raise ValueError(f"{path}: not reachable (permission denied)") from None
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None


def check_readable_file(path: Path) -> Path:
    """An existing regular file this process can open."""
    info = _stat(path, "no such file")
    if stat.S_ISDIR(info.st_mode):
        raise ValueError(f"{path}: is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path}: not a regular file")
    try:
        path.open("rb").close()
    except PermissionError:
        raise ValueError(f"{path}: not readable (permission denied)") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    return path


def _contents(path: Path) -> bytes:
    """A small, non-empty, readable file's bytes."""
    check_readable_file(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_BYTES:
        raise ValueError(f"{path}: larger than 1 MiB, too big for a key, certificate or secret")
    if not data.strip():
        raise ValueError(f"{path}: is empty")
    return data


def read_certificates(path: Path) -> list[x509.Certificate]:
    """The PEM certificates in ``path``, the first being the client's own; ValueError
    saying why not."""
    data = _contents(path)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        if b"PRIVATE KEY-----" in data:
            raise ValueError(f"{path}: holds a private key, not a certificate") from None
        raise ValueError(f"{path}: not a PEM certificate") from None


def read_private_key(path: Path) -> PrivateKeyTypes:
    """The unencrypted PEM private key in ``path``; ValueError saying why not."""
    data = _contents(path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's way of saying "it needs a passphrase"
        raise ValueError(
            f"{path}: encrypted with a passphrase (nobody is there to type it)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        if b"CERTIFICATE-----" in data and b"PRIVATE KEY-----" not in data:
            raise ValueError(f"{path}: holds a certificate, not a private key") from None
        raise ValueError(f"{path}: not a PEM private key") from None


def check_certificate_file(path: Path) -> Path:
    read_certificates(path)
    return path


def check_private_key_file(path: Path) -> Path:
    read_private_key(path)
    return path


def check_secret_file(path: Path) -> Path:
    """What ``vigie_core.tls.read_secret`` reads: non-blank UTF-8 text."""
    try:
        _contents(path).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    return path


def check_release_public_key_file(path: Path) -> Path:
    """The Ed25519 public key releases are verified with (``release.pub``)."""
    data = _contents(path)
    if b"PRIVATE KEY-----" in data:
        # The signing key on every agent would let anyone with one sign releases.
        raise ValueError(f"{path}: holds a private key; agents get release.pub only")
    try:
        load_public_key(data)
    except ReleaseError:
        raise ValueError(
            f"{path}: not an Ed25519 public key in PEM (release.pub from 'fleet keys generate')"
        ) from None
    return path


def check_writable_dir(path: Path) -> Path:
    """A directory that exists and is writable, or that can be created: its nearest
    existing ancestor is a writable directory. Nothing is created here."""
    if _missing(path):
        ancestor = _nearest_existing(path)
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise ValueError(f"{path}: cannot be created, {ancestor} is not writable")
        return path
    info = _stat(path, "no such directory")
    if not stat.S_ISDIR(info.st_mode):
        raise ValueError(f"{path}: is a file, not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: not writable (permission denied)")
    return path


def check_existing_dir(path: Path) -> Path:
    """A directory that exists and can be listed."""
    info = _stat(path, "no such directory")
    if not stat.S_ISDIR(info.st_mode):
        raise ValueError(f"{path}: is a file, not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ValueError(f"{path}: not readable (permission denied)")
    return path


def check_watched_file(path: Path) -> Path:
    """A file another program creates and removes: it need not exist, but if it does
    it is a readable file, and where it will be is not under a regular file."""
    return path if _missing(path) else check_readable_file(path)


#: One or more PEM certificates (a CA, or a client's certificate first in its chain).
CertificateFile = Annotated[Path, AfterValidator(check_certificate_file)]
#: An unencrypted PEM private key.
PrivateKeyFile = Annotated[Path, AfterValidator(check_private_key_file)]
#: A readable, non-blank file holding a password or token.
SecretFile = Annotated[Path, AfterValidator(check_secret_file)]
#: The release signatures' Ed25519 public key, in PEM.
ReleasePublicKeyFile = Annotated[Path, AfterValidator(check_release_public_key_file)]
#: A directory the program writes to, created if need be.
WritableDir = Annotated[Path, AfterValidator(check_writable_dir)]
#: A directory that must already exist.
ExistingDir = Annotated[Path, AfterValidator(check_existing_dir)]
#: A file that comes and goes (written by another program).
WatchedFile = Annotated[Path, AfterValidator(check_watched_file)]
