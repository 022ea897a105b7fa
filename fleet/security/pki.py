"""The fleet's certificate authority: who may talk to the broker, and as whom.

Every party has its own certificate, signed by the fleet's CA: each agent (its common
name is its agent id, which the broker takes as its user name), the fleet service, the
technicians' CLI and the broker itself. Revoking a certificate puts it on the CRL the
broker reads. Folder layout (0700)::

    ca.key            the CA's private key (0600); it never leaves this folder
    ca.crt            the CA certificate that every party trusts
    crl.pem           the revocation list the broker checks every client against
    inventory.json    every certificate issued: name, role, serial, expiry, revocation
                      (a JSON list, as of its last rewrite: a revocation, or the
                      journal folded in)
    inventory.journal the certificates issued since, one JSON object a line
    issued/<name>-<serial>.crt

Issuing a certificate appends one line to the journal (synced before the certificate is
handed out), so it costs the same at 10 or 10,000 agents; the journal is folded into
``inventory.json`` once it is as long as it and at least ``JOURNAL_FOLD_AT`` lines (and
on every revocation), each rewrite atomic, the journal emptied only after. A power cut
can only cut short the line being appended, whose certificate was never handed out:
reading ignores that line, and the next issue cuts it off. Reading takes the journal
first, then ``inventory.json``, and leaves out what the second already holds (by
serial), so a reader needs no lock.

This module is longer than the usual 400 lines: issuing, revoking, the journal and the CRL change
the same files under the same lock, and are read together.

The ``cryptography`` package does all the cryptography; this module only decides what
goes into each certificate and keeps the inventory.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleet.errors import PkiError
from vigie_core.files import sync_dir, write_private, write_public
from vigie_core.tls import key_pem, new_key

#: Agent ids and the other identities share the contract's identifier rules, so a
#: certificate's name is always a valid topic level.
_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: An OpenSSL-based broker refuses every client once the CRL's next update has passed,
#: so the CRL is re-signed on every change and lives long; `fleet ca crl` renews it.
CRL_VALIDITY: Final = timedelta(days=365)
#: The journal is folded into the inventory once it holds this many entries and as
#: many as the inventory: each rewrite at least doubles what the next one waits for.
JOURNAL_FOLD_AT: Final = 1000
#: Attempts at drawing a serial not already in the inventory (159 random bits).
_SERIAL_ATTEMPTS: Final = 3


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
        self._index: _Index | None = None
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
        """Every certificate issued, in the order issued (no lock needed)."""
        return self._load()[0]

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
        for _ in range(_SERIAL_ATTEMPTS):
            certificate = builder.serial_number(x509.random_serial_number()).sign(
                ca_key, hashes.SHA256()
            )
            pem = certificate_pem(certificate)
            entry = Issued(
                name, role, certificate.serial_number, certificate.not_valid_after_utc.isoformat()
            )
            with self._locked():
                if self._record(entry, pem):
                    return pem, (key_pem(key) if key is not None else None)
        raise PkiError("could not draw a serial number not already issued")

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

    def _record(self, entry: Issued, pem: bytes) -> bool:
        """Under the lock: file the certificate and add it to the inventory; False if
        its serial is already there (the caller draws another)."""
        index = self._current()
        if entry.serial in index.serials:
            return False
        _check_role(entry, index.roles.get(entry.name, set()))
        self._file(entry, pem)
        self._append(index, entry)
        if index.journal_entries >= max(JOURNAL_FOLD_AT, index.snapshot_entries):
            self._save(self._load()[0])
        return True

    def _file(self, entry: Issued, pem: bytes) -> None:
        write_public(self.folder / "issued" / f"{entry.name}-{entry.serial:x}.crt", pem)

    @property
    def _inventory_path(self) -> Path:
        return self.folder / "inventory.json"

    @property
    def _journal_path(self) -> Path:
        return self.folder / "inventory.journal"

    def _load(self) -> tuple[list[Issued], _Index]:
        """The whole inventory, and what :meth:`_current` keeps of it. The journal is
        read before the snapshot: a rewrite in between (which writes the snapshot
        before it empties the journal) then loses nothing."""
        journal_path = self._journal_path
        try:
            with journal_path.open("rb") as handle:
                journal_inode: int | None = os.fstat(handle.fileno()).st_ino
                journal, journal_end = _parse_journal(handle.read(), journal_path)
        except FileNotFoundError:
            journal_inode, journal, journal_end = None, [], 0
        path = self._inventory_path
        try:
            with path.open("rb") as handle:
                snapshot_key: tuple[int, int, int] | None = _file_key(os.fstat(handle.fileno()))
                raw = json.loads(handle.read())
            snapshot = [_entry(item) for item in raw]
        except FileNotFoundError:
            snapshot_key, snapshot = None, []
        except (ValueError, TypeError, KeyError) as exc:
            raise PkiError(f"{path}: damaged inventory ({exc})") from exc
        index = _Index(snapshot_key, len(snapshot), journal_inode, journal_end)
        entries: list[Issued] = []
        for entry in snapshot:
            index.add(entry)
            entries.append(entry)
        for entry in journal:
            if entry.serial not in index.serials:  # else a rewrite cut short: kept there
                index.add(entry)
                index.journal_entries += 1
                entries.append(entry)
        return entries, index

    def _current(self) -> _Index:
        """Under the lock: the inventory's index, brought up to date with what other
        processes added (only the journal lines since the last call, if that is all)."""
        index = self._index
        try:
            snapshot_key: tuple[int, int, int] | None = _file_key(self._inventory_path.stat())
        except FileNotFoundError:
            snapshot_key = None
        if index is not None and index.snapshot_key == snapshot_key:
            try:
                with self._journal_path.open("rb") as handle:
                    status = os.fstat(handle.fileno())
                    if status.st_ino == index.journal_inode and status.st_size >= index.journal_end:
                        if status.st_size > index.journal_end:
                            handle.seek(index.journal_end)
                            added, end = _parse_journal(
                                handle.read(), self._journal_path, index.journal_end
                            )
                            for entry in added:
                                if entry.serial not in index.serials:
                                    index.add(entry)
                                    index.journal_entries += 1
                            index.journal_end += end
                        return index
            except FileNotFoundError:
                if index.journal_inode is None:
                    return index
        self._index = index = self._load()[1]
        return index

    def _append(self, index: _Index, entry: Issued) -> None:
        """Under the lock: one line at the journal's end, synced."""
        line = json.dumps(_item(entry), separators=(",", ":")).encode() + b"\n"
        descriptor = os.open(self._journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            status = os.fstat(descriptor)
            if status.st_size > index.journal_end:  # a line cut short by a crash
                os.ftruncate(descriptor, index.journal_end)
            if index.journal_inode is None:
                os.fchmod(descriptor, 0o644)  # the umask may have narrowed it
            written = 0
            while written < len(line):
                written += os.write(descriptor, line[written:])
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if index.journal_inode is None:  # created: make its name durable too
            sync_dir(self.folder)
            index.journal_inode = status.st_ino
        index.add(entry)
        index.journal_entries += 1
        index.journal_end += len(line)

    def _save(self, entries: list[Issued]) -> None:
        """Under the lock: rewrite the inventory as ``entries`` (all of them, the
        journal's included), then empty the journal."""
        data = [_item(entry) for entry in entries]
        write_public(self._inventory_path, json.dumps(data, indent=1).encode())
        try:
            descriptor = os.open(self._journal_path, os.O_WRONLY)
        except FileNotFoundError:
            pass
        else:
            try:
                os.ftruncate(descriptor, 0)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        self._index = None  # read again (once) by the next issue

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


@dataclass(slots=True)
class _Index:
    """What issuing needs to know of the inventory, kept between calls."""

    #: The snapshot file it was read from ((inode, size, mtime), None: none), its size.
    snapshot_key: tuple[int, int, int] | None
    snapshot_entries: int
    #: The journal file (its inode, None: none), where its last whole line ends.
    journal_inode: int | None
    journal_end: int
    journal_entries: int = 0
    roles: dict[str, set[Role]] = field(default_factory=dict)
    serials: set[int] = field(default_factory=set)

    def add(self, entry: Issued) -> None:
        self.roles.setdefault(entry.name, set()).add(entry.role)
        self.serials.add(entry.serial)


def _file_key(status: os.stat_result) -> tuple[int, int, int]:
    return status.st_ino, status.st_size, status.st_mtime_ns


def _entry(item: dict[str, Any]) -> Issued:
    return Issued(**{**item, "role": Role(item["role"])})


def _item(entry: Issued) -> dict[str, Any]:
    return {
        "name": entry.name,
        "role": entry.role.value,
        "serial": entry.serial,
        "not_after": entry.not_after,
        "revoked_at": entry.revoked_at,
    }


def _parse_journal(data: bytes, path: Path, start: int = 0) -> tuple[list[Issued], int]:
    """The entries of journal lines (read from byte ``start``), and how many bytes
    their whole lines take. The
    last line may be cut short (or garbled, as a power cut can leave it): it is left
    out, its certificate was never handed out. Any other damaged line is an error."""
    lines = data.split(b"\n")
    whole, cut = lines[:-1], lines[-1]  # ``cut``: after the last newline
    entries: list[Issued] = []
    end = 0
    for number, line in enumerate(whole):
        try:
            entries.append(_entry(json.loads(line)))
        except (ValueError, TypeError, KeyError) as exc:
            if number == len(whole) - 1 and not cut:
                break
            raise PkiError(f"{path}: damaged entry at byte {start + end} ({exc})") from exc
        end += len(line) + 1
    return entries, end


def _check_role(entry: Issued, taken: set[Role]) -> None:
    others = taken - {entry.role}
    if others:
        raise PkiError(f"{entry.name!r} is already a {others.pop().value} identity")


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
