"""``fleet ca``, ``fleet agent enroll|revoke``, ``fleet broker config``, ``fleet db init``.

The security set-up, run on the central machine that holds the CA. Private keys are
written 0600 and only where they will be used; the agent's key is made on the agent
when ``--csr`` is used (``edge-agent identity request``), which is the recommended path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from fleet.cli.common import TopicPrefixOption
from fleet.errors import BrokerUnavailable, FleetError, PkiError
from fleet.security.broker import (
    SERVICE_IDENTITY,
    TECHNICIAN_IDENTITY,
    BrokerFiles,
    refresh_broker_files,
    write_broker_files,
)
from fleet.security.dynsec import ADMIN_IDENTITY, BrokerControl, sync_commands
from fleet.security.pki import CertificateAuthority, Role
from fleet.storage.influx import InfluxClient, InfluxCredentials, provision
from vigie_core.contract.identifiers import DEFAULT_PREFIX, AgentKind
from vigie_core.errors import TlsError
from vigie_core.files import write_private, write_public
from vigie_core.tls import BrokerCredentials, read_secret

console = Console()
err_console = Console(stderr=True)

PKI_ENV = "VIGIE_PKI"
BROKER_DIR_ENV = "VIGIE_BROKER_DIR"
ADMIN_PASSWORD_ENV = "VIGIE_INFLUX_ADMIN_PASSWORD"  # noqa: S105 - a variable name
#: First arguments of ``fleet agent`` that are commands, not agent ids.
RESERVED = ("show", "enroll", "revoke", "list-identities")

PkiOption = Annotated[
    Path,
    typer.Option("--pki", envvar=PKI_ENV, help="The CA folder.", file_okay=False),
]
BrokerDirOption = Annotated[
    Path | None,
    typer.Option(
        "--broker-dir",
        envvar=BROKER_DIR_ENV,
        help="The broker's files ('fleet broker config --out'): refreshed in place.",
        file_okay=False,
    ),
]


class AgentGroup(TyperGroup):
    """``fleet agent ID`` shows an agent; ``fleet agent enroll|revoke ID`` manage it."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().resolve_command(ctx, args)


ca_app = typer.Typer(help="The fleet's certificate authority.", no_args_is_help=True)
broker_app = typer.Typer(help="The broker's security files.", no_args_is_help=True)
db_app = typer.Typer(help="The InfluxDB database, its users and retention.", no_args_is_help=True)
agent_app = typer.Typer(
    cls=AgentGroup,
    help="One agent: show it (fleet agent ID), enrol it, revoke it.",
    no_args_is_help=True,
)


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def _authority(pki: Path) -> CertificateAuthority:
    try:
        return CertificateAuthority(pki)
    except PkiError as exc:
        raise fail(str(exc)) from None


def _refresh_broker(
    authority: CertificateAuthority, broker_dir: Path | None, names: list[str], *, crl: bool
) -> None:
    """Bring the broker's files up to date, and the running broker's security for
    ``names`` (through the dynamic security plugin, as the broker-admin identity)."""
    if broker_dir is None:
        console.print(
            "The broker is not updated: run 'fleet broker config' (or give --broker-dir)."
        )
        return
    settings = json.loads((broker_dir / "broker-settings.json").read_text())
    prefix = settings["topic_prefix"]
    refresh_broker_files(authority, BrokerFiles(broker_dir), topic_prefix=prefix)
    host, port = settings["hostnames"][0], settings["port"]
    admin = authority.folder / "identities" / ADMIN_IDENTITY
    credentials = BrokerCredentials(
        ca_file=authority.ca_path, cert_file=admin / "client.crt", key_file=admin / "client.key"
    )
    try:
        BrokerControl(host, port, credentials).apply(sync_commands(authority, prefix, names))
    except BrokerUnavailable as exc:
        console.print(
            f"Updated the broker's files in {broker_dir}; the broker itself was not ({exc}): "
            "it takes them when it starts from them."
        )
        return
    except PkiError as exc:
        raise fail(str(exc)) from None
    console.print(f"Updated the broker at {host}:{port} and its files in {broker_dir}.")
    if crl:
        console.print("Reload the broker so that it rereads its CRL (systemctl reload mosquitto).")


def _write_identity(folder: Path, certificate: bytes, key: bytes | None, ca: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    write_public(folder / "client.crt", certificate)
    write_public(folder / "ca.crt", ca.read_bytes())
    if key is not None:
        write_private(folder / "client.key", key)


@ca_app.command("init")
def ca_init(
    pki: PkiOption,
    days: Annotated[int, typer.Option(min=1, help="How long the CA is valid.")] = 3650,
) -> None:
    """Create the CA, and the fleet service's, the CLI's and the broker admin's own
    identities."""
    try:
        authority = CertificateAuthority.create(pki, days=days)
        for name, role in (
            (SERVICE_IDENTITY, Role.SERVICE),
            (TECHNICIAN_IDENTITY, Role.TECHNICIAN),
            (ADMIN_IDENTITY, Role.ADMIN),
        ):
            certificate, key = authority.issue(name, role)
            _write_identity(pki / "identities" / name, certificate, key, authority.ca_path)
    except PkiError as exc:
        raise fail(str(exc)) from None
    console.print(f"CA created in {pki} (keep ca.key there, readable by you only).")
    console.print(
        f"Identities: {pki}/identities/{SERVICE_IDENTITY} (fleet service), "
        f"{pki}/identities/{TECHNICIAN_IDENTITY} (CLI), {pki}/identities/{ADMIN_IDENTITY} "
        "(changes the broker's security; stays with the CA)."
    )


@ca_app.command("identity")
def ca_identity(
    name: Annotated[str, typer.Argument(help="The new identity (its certificate's name).")],
    pki: PkiOption,
    role: Annotated[
        Role, typer.Option(help="service: another fleet instance; technician: another CLI user.")
    ] = Role.SERVICE,
    broker_dir: BrokerDirOption = None,
) -> None:
    """Another central identity: each fleet instance, and each technician's CLI, needs
    its own (the broker names every client after its certificate)."""
    if role not in (Role.SERVICE, Role.TECHNICIAN):
        raise fail("--role is service or technician (agents: fleet agent enroll)", 2)
    authority = _authority(pki)
    try:
        certificate, key = authority.issue(name, role)
    except PkiError as exc:
        raise fail(str(exc)) from None
    _write_identity(pki / "identities" / name, certificate, key, authority.ca_path)
    console.print(f"Identity {name} ({role.value}) in {pki}/identities/{name}.")
    _refresh_broker(authority, broker_dir, [name], crl=False)


@ca_app.command("crl")
def ca_crl(pki: PkiOption, broker_dir: BrokerDirOption = None) -> None:
    """Re-sign the revocation list.

    Do it at least once a year: a broker refuses every client once its CRL expired.
    """
    authority = _authority(pki)
    authority.renew_crl()
    _refresh_broker(authority, broker_dir, [], crl=True)


@ca_app.command("list")
def ca_list(pki: PkiOption, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every certificate issued: name, role, expiry, revocation."""
    entries = _authority(pki).entries()
    if as_json:
        rows = [
            {
                "name": e.name,
                "role": e.role.value,
                "serial": f"{e.serial:x}",
                "not_after": e.not_after,
                "revoked_at": e.revoked_at,
            }
            for e in entries
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "role", "serial", "valid until", "revoked", header_style="bold")
    for e in entries:
        table.add_row(
            e.name, e.role.value, f"{e.serial:x}"[:16], e.not_after[:10], e.revoked_at or ""
        )
    console.print(table)


@agent_app.command("enroll")
def agent_enroll(
    agent_id: Annotated[str, typer.Argument(help="The new agent's id.")],
    pki: PkiOption,
    out: Annotated[Path, typer.Option(help="Where to write the bundle (<out>/<id>/).")] = Path(
        "enrolled"
    ),
    csr: Annotated[
        Path | None,
        typer.Option(help="A signing request made on the agent ('edge-agent identity request')."),
    ] = None,
    broker_host: Annotated[str, typer.Option(help="The broker as agents reach it.")] = "localhost",
    broker_port: Annotated[int, typer.Option(min=1, max=65535)] = 8883,
    topic_prefix: TopicPrefixOption = DEFAULT_PREFIX,
    kind: Annotated[AgentKind, typer.Option(help="booth or bus.")] = AgentKind.BOOTH,
    install_dir: Annotated[
        Path, typer.Option(help="Where the bundle's files will be on the agent.")
    ] = Path("/etc/vigie/tls"),
    days: Annotated[int, typer.Option(min=1, help="Certificate validity.")] = 825,
    broker_dir: BrokerDirOption = None,
) -> None:
    """Issue an agent's certificate and a ready-to-copy bundle.

    The bundle holds the certificate, the CA, an agent.yaml to complete (site,
    instruments) and, without --csr, the private key (0600).
    """
    if agent_id in RESERVED:
        raise fail(f"{agent_id!r} is a command name, not usable as an agent id", 2)
    authority = _authority(pki)
    try:
        if csr is not None:
            certificate = authority.issue_from_request(agent_id, csr.read_bytes(), Role.AGENT, days)
            key = None
        else:
            certificate, key = authority.issue(agent_id, Role.AGENT, days=days)
    except PkiError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot read {csr}: {exc.strerror}") from None
    bundle = out / agent_id
    _write_identity(bundle, certificate, key, authority.ca_path)
    config: dict[str, Any] = {
        "schema_version": 1,
        "agent_id": agent_id,
        "site": {"id": "site-to-set", "name": "Site name to set"},
        "kind": kind.value,
        "broker": {
            "host": broker_host,
            "port": broker_port,
            "topic_prefix": topic_prefix,
            "tls": {
                "ca_file": str(install_dir / "ca.crt"),
                "cert_file": str(install_dir / "client.crt"),
                "key_file": str(install_dir / "client.key"),
            },
        },
        "state_dir": "/var/lib/vigie-agent",
        "devices": [],
    }
    write_public(bundle / "agent.yaml", yaml.safe_dump(config, sort_keys=False).encode())
    console.print(f"Enrolled {agent_id}: bundle in {bundle}")
    if key is not None:
        console.print(
            f"[yellow]The bundle holds the agent's private key ({bundle}/client.key): copy it "
            "to the agent over a secure channel, then delete it here.[/]"
        )
    _refresh_broker(authority, broker_dir, [agent_id], crl=False)


@agent_app.command("revoke")
def agent_revoke(
    agent_id: Annotated[str, typer.Argument(help="The agent to shut out.")],
    pki: PkiOption,
    broker_dir: BrokerDirOption = None,
) -> None:
    """Revoke every certificate of an agent.

    The running broker disconnects it at once and it may do nothing there any more;
    after a reload the broker refuses its certificate (the CRL).
    """
    authority = _authority(pki)
    try:
        revoked = authority.revoke(agent_id)
    except PkiError as exc:
        raise fail(str(exc)) from None
    if not revoked:
        console.print(f"{agent_id} had no valid certificate left; nothing to revoke.")
    else:
        console.print(f"Revoked {len(revoked)} certificate(s) of {agent_id}.")
    _refresh_broker(authority, broker_dir, [agent_id], crl=True)


@broker_app.command("config")
def broker_config(
    pki: PkiOption,
    out: Annotated[Path, typer.Option(help="Folder for the broker's files.", file_okay=False)],
    topic_prefix: TopicPrefixOption = DEFAULT_PREFIX,
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8883,
    bind: Annotated[str, typer.Option(help="Address the listener binds.")] = "0.0.0.0",  # noqa: S104
    hostname: Annotated[
        list[str] | None,
        typer.Option(help="Names agents use to reach the broker (repeat).", show_default=False),
    ] = None,
    install_dir: Annotated[
        Path | None,
        typer.Option(help="Where the broker will read these files (default: --out)."),
    ] = None,
    plugin: Annotated[
        Path | None,
        typer.Option(help="mosquitto_dynamic_security.so on the broker (default: found here)."),
    ] = None,
) -> None:
    """Write the broker's TLS listener, security file, CRL, CA and server certificate.

    Include ``<out>/vigie-security.conf`` from mosquitto.conf (Ansible does it).
    """
    authority = _authority(pki)
    names = tuple(hostname or ("localhost", "127.0.0.1"))
    try:
        write_broker_files(
            authority,
            BrokerFiles(out),
            topic_prefix=topic_prefix,
            port=port,
            bind=bind,
            hostnames=names,
            installed=install_dir,
            plugin=plugin,
        )
    except (PkiError, ValueError) as exc:
        raise fail(str(exc)) from None
    settings = {"topic_prefix": topic_prefix, "port": port, "bind": bind, "hostnames": names}
    write_public(out / "broker-settings.json", json.dumps(settings, indent=1).encode())
    console.print(f"Broker files in {out}: include {out}/vigie-security.conf from mosquitto.conf.")


@db_app.command("init")
def db_init(
    url: Annotated[str, typer.Option(help="InfluxDB's address.")] = "http://127.0.0.1:8086",
    database: Annotated[str, typer.Option()] = "vigie",
    admin_user: Annotated[str, typer.Option(help="An InfluxDB admin.")] = "admin",
    admin_password_file: Annotated[
        Path | None, typer.Option(help=f"The admin's password (or ${ADMIN_PASSWORD_ENV}).")
    ] = None,
    user: Annotated[str, typer.Option(help="The fleet service's user (read, write).")] = "fleet",
    password_file: Annotated[Path, typer.Option(help="That user's password.")] = Path(
        "/etc/vigie/influx.password"
    ),
    reader: Annotated[str | None, typer.Option(help="A read-only user, for Grafana.")] = None,
    reader_password_file: Annotated[Path | None, typer.Option()] = None,
    retention: Annotated[str, typer.Option(help="How long data is kept: 180d, 52w, INF.")] = "180d",
) -> None:
    """Create the database, its retention and the fleet's users (InfluxDB 1.x).

    Passwords come from files or the environment, never the command line.
    """
    if admin_password_file is None and not os.environ.get(ADMIN_PASSWORD_ENV):
        raise fail(f"give an admin's password: --admin-password-file or ${ADMIN_PASSWORD_ENV}", 2)
    try:
        # With no file, the variable is set (checked above) and read_secret takes it.
        admin_password = read_secret(admin_password_file or Path(), ADMIN_PASSWORD_ENV)
        writer = (user, read_secret(password_file))
        readonly = None
        if reader is not None:
            if reader_password_file is None:
                raise fail("--reader needs --reader-password-file", 2)
            readonly = (reader, read_secret(reader_password_file))
    except TlsError as exc:
        raise fail(str(exc), 2) from None
    credentials = InfluxCredentials(admin_user, admin_password)
    try:
        with InfluxClient(url, database, credentials=credentials) as admin:
            provision(admin, retention=retention, writer=writer, reader=readonly)
    except FleetError as exc:
        raise fail(str(exc)) from None
    console.print(
        f"Database {database}: data kept {retention}; {user} may read and write it"
        + (f", {reader} may read it." if reader else ".")
    )
