"""The CA's inventory: a snapshot and an append-only journal of what was issued since."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509

from fleet.errors import PkiError
from fleet.security import pki
from fleet.security.pki import CertificateAuthority, Issued, Role


@pytest.fixture
def authority(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "pki")


def journal(authority: CertificateAuthority) -> Path:
    return authority.folder / "inventory.journal"


def snapshot(authority: CertificateAuthority) -> list[dict[str, object]]:
    """inventory.json as the code before the journal read it: a JSON list."""
    raw = json.loads((authority.folder / "inventory.json").read_text())
    assert isinstance(raw, list)
    return raw


def issue(authority: CertificateAuthority, *names: str, role: Role = Role.AGENT) -> None:
    for name in names:
        authority.issue(name, role)


def test_entries_survive_a_reload_in_the_order_issued(authority: CertificateAuthority) -> None:
    issue(authority, "booth-01", "booth-02")
    authority.issue("fleet-east", Role.SERVICE)
    issue(authority, "booth-01")  # a second certificate for the same agent
    again = CertificateAuthority(authority.folder)
    entries = again.entries()
    assert [(e.name, e.role) for e in entries] == [
        ("booth-01", Role.AGENT),
        ("booth-02", Role.AGENT),
        ("fleet-east", Role.SERVICE),
        ("booth-01", Role.AGENT),
    ]
    assert entries == authority.entries()
    assert again.identities(Role.AGENT) == ["booth-01", "booth-02"]
    for entry in entries:
        path = authority.folder / "issued" / f"{entry.name}-{entry.serial:x}.crt"
        assert x509.load_pem_x509_certificate(path.read_bytes()).serial_number == entry.serial
    assert snapshot(authority) == []  # all in the journal until it is folded in
    assert len(journal(authority).read_bytes().splitlines()) == 4


def test_a_torn_last_journal_line_is_ignored_then_cut_off(
    authority: CertificateAuthority,
) -> None:
    issue(authority, "booth-01", "booth-02", "booth-03")
    whole = journal(authority).read_bytes()
    with journal(authority).open("ab") as handle:  # a power cut mid-append
        handle.write(b'{"name":"booth-04","role":"ag')
    assert [e.name for e in authority.entries()] == ["booth-01", "booth-02", "booth-03"]
    again = CertificateAuthority(authority.folder)
    issue(again, "booth-05")
    assert [e.name for e in again.entries()] == ["booth-01", "booth-02", "booth-03", "booth-05"]
    assert journal(authority).read_bytes().startswith(whole + b'{"name":"booth-05"')
    # The instance that read the journal before the tear carries on as well.
    issue(authority, "booth-06")
    assert [e.name for e in CertificateAuthority(authority.folder).entries()][-2:] == [
        "booth-05",
        "booth-06",
    ]


def test_a_garbled_last_journal_line_is_ignored(authority: CertificateAuthority) -> None:
    issue(authority, "booth-01", "booth-02")
    with journal(authority).open("ab") as handle:  # what some file systems leave
        handle.write(b"\0" * 40 + b"\n")
    assert [e.name for e in authority.entries()] == ["booth-01", "booth-02"]
    issue(CertificateAuthority(authority.folder), "booth-03")
    assert [e.name for e in authority.entries()] == ["booth-01", "booth-02", "booth-03"]


def test_a_damaged_line_before_the_last_is_an_error(authority: CertificateAuthority) -> None:
    issue(authority, "booth-01", "booth-02")
    lines = journal(authority).read_bytes().splitlines(keepends=True)
    journal(authority).write_bytes(lines[0] + b"{nonsense\n" + lines[1])
    damaged = f"damaged entry at byte {len(lines[0])} "
    with pytest.raises(PkiError, match=damaged):
        authority.entries()
    with pytest.raises(PkiError, match=damaged):
        CertificateAuthority(authority.folder).issue("booth-03", Role.AGENT)
    with journal(authority).open("wb") as handle:  # one read up to here already
        handle.write(lines[0] + lines[1])
    issue(authority, "booth-03")
    with journal(authority).open("ab") as handle:
        handle.write(b"{nonsense\n" + lines[0])
    end = len(lines[0] + lines[1]) + len(journal(authority).read_bytes().splitlines()[2]) + 1
    with pytest.raises(PkiError, match=f"damaged entry at byte {end} "):
        issue(authority, "booth-04")


def test_revocation_rewrites_the_inventory_and_the_crl_lists_it(
    authority: CertificateAuthority,
) -> None:
    issue(authority, "booth-01", "booth-02", "booth-03")
    issue(authority, "booth-02")
    revoked = authority.revoke("booth-02")
    assert len(revoked) == 2
    assert authority.revoke("booth-02") == []
    entries = CertificateAuthority(authority.folder).entries()
    assert [e.name for e in entries] == ["booth-01", "booth-02", "booth-03", "booth-02"]
    assert {e.name for e in entries if e.revoked_at is not None} == {"booth-02"}
    assert journal(authority).read_bytes() == b""  # folded into the snapshot
    assert [item["name"] for item in snapshot(authority)] == [e.name for e in entries]
    crl = x509.load_pem_x509_crl(authority.crl_path.read_bytes())
    assert {r.serial_number for r in crl} == {e.serial for e in revoked}
    assert authority.identities(Role.AGENT) == ["booth-01", "booth-03"]
    issue(authority, "booth-04")  # the journal starts again
    assert [e.name for e in authority.entries()][-1] == "booth-04"
    authority.revoke("booth-04")
    crl = x509.load_pem_x509_crl(authority.crl_path.read_bytes())
    assert len(list(crl)) == 3
    with pytest.raises(PkiError, match="no certificate was ever issued"):
        authority.revoke("booth-99")


def test_serials_stay_unique_a_taken_one_drawn_again(
    authority: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    issue(authority, *(f"booth-{n:02d}" for n in range(30)))
    serials = [e.serial for e in authority.entries()]
    assert len(set(serials)) == 30
    drawn = iter([serials[7], serials[7], 12345])
    monkeypatch.setattr(x509, "random_serial_number", lambda: next(drawn))
    issue(CertificateAuthority(authority.folder), "booth-99")
    assert authority.entries()[-1] == Issued(
        "booth-99", Role.AGENT, 12345, authority.entries()[-1].not_after
    )
    drawn = iter([12345] * 3)
    with pytest.raises(PkiError, match="serial"):
        issue(authority, "booth-98")
    assert len(authority.entries()) == 31


def test_a_name_keeps_its_role_across_instances(authority: CertificateAuthority) -> None:
    other = CertificateAuthority(authority.folder)
    issue(authority, "booth-01")
    issue(other, "booth-02")  # each sees what the other appended
    with pytest.raises(PkiError, match="already a agent identity"):
        other.issue("booth-01", Role.SERVICE)
    with pytest.raises(PkiError, match="already a agent identity"):
        authority.issue("booth-02", Role.TECHNICIAN)
    other.revoke("booth-01")  # a rewrite: the first instance reads it again
    issue(authority, "booth-03")
    issue(other, "booth-04")
    entries = CertificateAuthority(authority.folder).entries()
    assert [e.name for e in entries] == ["booth-01", "booth-02", "booth-03", "booth-04"]
    assert entries[0].revoked_at is not None


def test_the_journal_is_folded_in_once_as_long_as_the_snapshot(
    authority: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pki, "JOURNAL_FOLD_AT", 3)
    issue(authority, "a-1", "a-2")
    assert snapshot(authority) == []
    issue(authority, "a-3")  # 3 in the journal: folded
    assert [item["name"] for item in snapshot(authority)] == ["a-1", "a-2", "a-3"]
    assert journal(authority).read_bytes() == b""
    issue(authority, "a-4", "a-5")  # 2 < 3 in the snapshot
    assert len(snapshot(authority)) == 3
    issue(authority, "a-6")  # 3 >= 3: folded
    assert len(snapshot(authority)) == 6
    issue(authority, "a-7", "a-8", "a-9", "a-10", "a-11")  # 5 < 6
    assert len(snapshot(authority)) == 6
    assert [e.name for e in authority.entries()] == [f"a-{n}" for n in range(1, 12)]


def test_a_rewrite_cut_short_before_the_journal_is_emptied_loses_nothing(
    authority: CertificateAuthority,
) -> None:
    issue(authority, "booth-01", "booth-02")
    entries = authority.entries()
    lines = journal(authority).read_bytes()
    authority.revoke("booth-01")
    journal(authority).write_bytes(lines)  # as if the power went before emptying it
    again = CertificateAuthority(authority.folder).entries()
    assert [e.name for e in again] == ["booth-01", "booth-02"]
    assert again[0].revoked_at is not None  # the snapshot's copy wins
    assert again[1] == entries[1]


def test_issuing_reads_the_inventory_once_not_for_every_certificate(
    authority: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    load = CertificateAuthority._load

    def counted(self: CertificateAuthority) -> tuple[list[Issued], object]:
        loads.append(1)
        return load(self)

    monkeypatch.setattr(CertificateAuthority, "_load", counted)
    issue(authority, *(f"booth-{n:02d}" for n in range(20)))
    assert len(loads) == 1
