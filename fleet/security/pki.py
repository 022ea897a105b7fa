"""The fleet's certificate authority: who may talk to the broker, and as whom.

Every party has its own certificate, signed by the fleet's CA: each agent (its common
name is its agent id, which the broker takes as its user name), the fleet service, the
technicians' CLI and the broker itself. Revoking a certificate puts it on the CRL the
broker reads. Folder layout (0700)::

    ca.key            the CA's private key (0600); it never leaves this folder
    ca.crt            the CA certificate that every party trusts
    crl.pem           the revocation list the broker checks every client against
    inventory.json    every certificate issued: name, role, serial, expiry, revocation
    issued/<name>-<serial>.crt

The ``cryptography`` package does all the cryptography; this module only decides what
goes into each certificate and keeps the inventory.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleet.errors import PkiError
from vigie_core.files import write_private, write_public
from vigie_core.tls import key_pem, new_key

#: Agent ids and the other identities share the contract's identifier rules, so a
#: certificate's name is always a valid topic level.
_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: An OpenSSL-based broker refuses every client once the CRL's next update has passed,
#: so the CRL is re-signed on every change and lives long; `fleet ca crl` renews it.
CRL_VALIDITY: Final = timedelta(days=365)


class Role(enum.StrEnum):
    AGENT = "agent"  # publishes under its own branch only
    SERVICE = "service"  # the fleet service: reads what agents send, confirms it
    TECHNICIAN = "technician"  # the CLI: reads everything, publishes desired state
    BROKER = "broker"  # the server certificate
    ADMIN = "admin"  # changes the broker's security while it runs (fleet.security.dynsec)


@dataclass(frozen=True, slots=True)
class Issued:
    """One certificate in the inventory."""

    name: str
    role: Role
    serial: int
    not_after: str  # ISO 8601, UTC
    revoked_at: str | None = None

    @property
    def expired(self) -> bool:
        return datetime.fromisoformat(self.not_after) <= datetime.now(UTC)


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise PkiError(
            f"{name!r} is not a valid identity: lower-case letters, digits, '-' and '_' "
            "(at most 63, starting with a letter or digit)"
        )
    return name


class CertificateAuthority:
    """The CA in one folder. Every change to the inventory holds a file lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        if not (folder / "ca.key").exists() or not (folder / "ca.crt").exists():
            raise PkiError(f"{folder}: no certificate authority here (run 'fleet ca init')")

    # --- set-up -----------------------------------------------------------------------

    @classmethod
    def create(
        cls, folder: Path, common_name: str = "Vigie fleet CA", days: int = 3650
    ) -> CertificateAuthority:
        """Create a CA in an empty (or missing) folder; refuse to overwrite one."""
        if (folder / "ca.key").exists():
            raise PkiError(f"{folder}: a certificate authority already exists; keeping it")
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        key = new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        write_private(folder / "ca.key", key_pem(key))
        write_public(folder / "ca.crt", certificate_pem(certificate))
        (folder / "issued").mkdir(exist_ok=True)
        authority = cls(folder)
        with authority._locked():
            authority._save([])
            authority._write_crl([])
        return authority

    # --- what is there ----------------------------------------------------------------

    @property
    def ca_path(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def crl_path(self) -> Path:
        return self.folder / "crl.pem"

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_path.read_bytes())

    def entries(self) -> list[Issued]:
        path = self.folder / "inventory.json"
        try:
            raw = json.loads(path.read_text())
            return [Issued(**{**item, "role": Role(item["role"])}) for item in raw]
        except FileNotFoundError:
            return []
        except (ValueError, TypeError, KeyError) as exc:
            raise PkiError(f"{path}: damaged inventory ({exc})") from exc

    def identities(self, role: Role) -> list[str]:
        """Names with at least one valid (unrevoked, unexpired) certificate of ``role``."""
        return sorted(
            {
                entry.name
                for entry in self.entries()
                if entry.role is role and entry.revoked_at is None and not entry.expired
            }
        )

    # --- issuing and revoking ---------------------------------------------------------

    def issue(
        self,
        name: str,
        role: Role,
        *,
        public_key: ec.EllipticCurvePublicKey | None = None,
        days: int = 825,
        hostnames: Iterable[str] = (),
        valid_from: datetime | None = None,
    ) -> tuple[bytes, bytes | None]:
        """Issue a certificate; returns (certificate PEM, private key PEM or None).

        Without ``public_key`` a key pair is made here and returned (the convenience
        path: the caller must move it to its machine and delete it). With one (from a
        CSR), the private key never comes near the CA.
        """
        check_name(name)
        if days < 1:
            raise PkiError("a certificate must be valid for at least one day")
        key = new_key() if public_key is None else None
        subject_key = public_key if key is None else key.public_key()
        if subject_key is None:  # unreachable; tells the type checker so
            raise PkiError("no public key to certify")
        ca_key = self._ca_key()
        ca = self.certificate()
        start = valid_from or datetime.now(UTC) - timedelta(minutes=5)
        usage = (
            ExtendedKeyUsageOID.SERVER_AUTH
            if role is Role.BROKER
            else ExtendedKeyUsageOID.CLIENT_AUTH
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject)
            .public_key(subject_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        names = list(hostnames)
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(host) for host in names]),
                critical=False,
            )
        certificate = builder.sign(ca_key, hashes.SHA256())
        pem = certificate_pem(certificate)
        with self._locked():
            entries = self.entries()
            taken = {entry.role for entry in entries if entry.name == name}
            if taken - {role}:
                raise PkiError(f"{name!r} is already a {taken.pop().value} identity")
            write_public(self.folder / "issued" / f"{name}-{certificate.serial_number:x}.crt", pem)
            entries.append(
                Issued(
                    name,
                    role,
                    certificate.serial_number,
                    certificate.not_valid_after_utc.isoformat(),
                )
            )
            self._save(entries)
        return pem, (key_pem(key) if key is not None else None)

    def issue_from_request(
        self, name: str, request_pem: bytes, role: Role, days: int = 825
    ) -> bytes:
        """Sign a CSR made on the machine that holds the key; the CSR must be for ``name``."""
        try:
            request = x509.load_pem_x509_csr(request_pem)
        except ValueError as exc:
            raise PkiError(f"not a PEM certificate signing request: {exc}") from None
        if not request.is_signature_valid:
            raise PkiError("the signing request's signature does not match its key")
        names = request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        asked = str(names[0].value) if names else None
        if asked != name:
            raise PkiError(f"the signing request is for {asked!r}, not {name!r}")
        public_key = request.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise PkiError("the signing request must carry an elliptic-curve (P-256) key")
        certificate, _ = self.issue(name, role, public_key=public_key, days=days)
        return certificate

    def revoke(self, name: str) -> list[Issued]:
        """Revoke every live certificate of ``name``; returns them (empty if none)."""
        now = datetime.now(UTC).isoformat()
        with self._locked():
            entries = self.entries()
            revoked = [e for e in entries if e.name == name and e.revoked_at is None]
            if not revoked:
                if not any(entry.name == name for entry in entries):
                    raise PkiError(f"no certificate was ever issued to {name!r}")
                return []
            entries = [
                Issued(e.name, e.role, e.serial, e.not_after, now) if e in revoked else e
                for e in entries
            ]
            self._save(entries)
            self._write_crl(entries)
        return revoked

    def renew_crl(self) -> None:
        """Re-sign the CRL (its validity restarts); run it at least yearly."""
        with self._locked():
            self._write_crl(self.entries())

    def verify(self, certificate_pem_bytes: bytes) -> x509.Certificate:
        """Check that a certificate was signed by this CA (used by enrolment checks)."""
        certificate = x509.load_pem_x509_certificate(certificate_pem_bytes)
        try:
            certificate.verify_directly_issued_by(self.certificate())
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise PkiError(f"not issued by this CA: {exc}") from None
        return certificate

    # --- internals --------------------------------------------------------------------

    def _ca_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key((self.folder / "ca.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError("the CA key is not an elliptic-curve key")
        return key

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.folder / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _save(self, entries: list[Issued]) -> None:
        data = [{**asdict(entry), "role": entry.role.value} for entry in entries]
        write_public(self.folder / "inventory.json", json.dumps(data, indent=1).encode())

    def _write_crl(self, entries: list[Issued]) -> None:
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate().subject)
            .last_update(now - timedelta(minutes=5))
            .next_update(now + CRL_VALIDITY)
        )
        for entry in entries:
            if entry.revoked_at is not None:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(entry.serial)
                    .revocation_date(datetime.fromisoformat(entry.revoked_at))
                    .build()
                )
        crl = builder.sign(self._ca_key(), hashes.SHA256())
        write_public(self.crl_path, crl.public_bytes(serialization.Encoding.PEM))


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
