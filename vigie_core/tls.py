"""How a client (agent, fleet service, CLI) proves who it is to the broker.

One model and one ``ssl.SSLContext`` builder shared by the agent (aiomqtt) and the
fleet (paho), so both verify the broker the same way: against the fleet's CA only,
with the host name checked, TLS 1.2 or later.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict, SecretStr, StringConstraints, model_validator

from vigie_core.errors import TlsError
from vigie_core.paths import (
    CertificateFile,
    PrivateKeyFile,
    SecretFile,
    read_certificates,
    read_private_key,
)


class BrokerCredentials(BaseModel):
    """TLS towards the broker, and the identity presented to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The fleet CA's certificate: the only authority trusted for the broker's.
    ca_file: CertificateFile
    #: This client's certificate and key, issued by ``fleet agent enroll`` (or
    #: ``fleet ca init`` for the fleet's own identities).
    cert_file: CertificateFile | None = None
    key_file: PrivateKeyFile | None = None
    #: The documented alternative to a client certificate: a user name, and a file
    #: holding the password (never the password itself in the config).
    username: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    password_file: SecretFile | None = None

    @model_validator(mode="after")
    def _one_identity(self) -> BrokerCredentials:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        if self.cert_file is None and self.username is None:
            raise ValueError("give a client certificate (cert_file, key_file) or username")
        if self.cert_file is not None and self.key_file is not None:
            _check_pair(self.cert_file, self.key_file)
        return self

    def as_config(self) -> dict[str, str]:
        """The ``tls`` section of a YAML config naming these files."""
        return {key: str(value) for key, value in self.model_dump(exclude_none=True).items()}

    def password(self) -> SecretStr | None:
        return None if self.password_file is None else read_secret(self.password_file)


def read_secret(path: Path, environment: str | None = None) -> SecretStr:
    """A secret from ``$environment`` if set, else from ``path`` (first line, stripped).

    SecretStr keeps it out of reprs and logs; callers unwrap it at the last moment.
    """
    if environment and os.environ.get(environment):
        return SecretStr(os.environ[environment])
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise TlsError(f"cannot read the secret file {path}: {exc.strerror}") from None
    if not value:
        raise TlsError(f"the secret file {path} is empty")
    return SecretStr(value)


def _check_pair(cert_file: Path, key_file: Path) -> None:
    """The key must be the certificate's: TLS would otherwise fail at each connection."""
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    certified = read_certificates(cert_file)[0].public_key().public_bytes(*spki)
    if read_private_key(key_file).public_key().public_bytes(*spki) != certified:
        raise ValueError(f"key_file does not match cert_file ({key_file} is another key)")


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)


def client_context(credentials: BrokerCredentials) -> ssl.SSLContext:
    """A TLS client context trusting only the fleet CA, presenting our certificate.

    The files were checked when the configuration was loaded; this fails only if one
    changed since, and then names it.
    """
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=credentials.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"ca_file: {credentials.ca_file}: cannot load: {_reason(exc)}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if credentials.cert_file is not None and credentials.key_file is not None:
        try:
            context.load_cert_chain(credentials.cert_file, credentials.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(
                f"cert_file, key_file: {credentials.cert_file}, {credentials.key_file}: "
                f"cannot load: {_reason(exc)}"
            ) from None
    return context


def certificate_name(path: Path) -> str:
    """The common name in a PEM certificate: the identity the broker will see."""
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise TlsError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise TlsError(f"{path} is not a PEM certificate: {exc}") from None
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise TlsError(f"{path} has no common name")
    return str(names[0].value)


def check_identity(credentials: BrokerCredentials, expected: str) -> None:
    """Refuse to start with a certificate issued to someone else: the broker would
    silently drop everything published under ``expected``'s branch."""
    name = certificate_name(credentials.cert_file) if credentials.cert_file else None
    name = name or credentials.username
    if name != expected:
        raise TlsError(
            f"the broker identity is {name!r} but this is {expected!r}: every message "
            "would be refused by the broker's ACL (enrol this agent: fleet agent enroll)"
        )


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key: small, fast on a booth PC, accepted by every TLS stack."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def signing_request(name: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A CSR for ``name``: the machine that will hold the key makes it, so the key
    never travels (``edge-agent identity request``)."""
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)
