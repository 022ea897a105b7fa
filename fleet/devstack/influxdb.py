"""A local InfluxDB 1.x (Debian's ``influxdb``) as a child process, with authentication
on, and the fleet configuration that uses it with a local Mosquitto."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from fleet.devstack.processes import running, start_fleet_service
from fleet.devstack.services import Mosquitto, Service, find_binary, free_port
from fleet.security.broker import SERVICE_IDENTITY
from fleet.security.pki import Role
from fleet.storage.influx import InfluxClient, InfluxCredentials, influxql_string, provision
from vigie_core.files import write_private
from vigie_core.tls import read_secret


@dataclass
class InfluxDB(Service):
    """InfluxDB 1.x (Debian's ``influxdb``), every path and port its own, with
    authentication on: an admin user is created at first start (its password in
    ``<workdir>/admin.password``), and :meth:`grant` makes the fleet's own user."""

    rpc_port: int = field(default_factory=free_port)
    auth: bool = True
    name = "influxd"
    start_timeout_s = 40.0
    ADMIN = "admin"

    @property
    def admin_password_file(self) -> Path:
        return self.workdir / "admin.password"

    @property
    def admin_credentials(self) -> InfluxCredentials:
        if not self.auth:
            return InfluxCredentials()
        return InfluxCredentials(self.ADMIN, read_secret(self.admin_password_file))

    def client(self, database: str, timeout_s: float = 10.0) -> InfluxClient:
        """A client with the admin's rights (set-up, and reading back in tests)."""
        return InfluxClient(self.url, database, timeout_s, self.admin_credentials)

    def start(self) -> None:
        super().start()
        if self.auth and not self.admin_password_file.exists():
            # With no user yet, InfluxDB 1.x accepts exactly this statement anonymously.
            password = secrets.token_urlsafe(18)
            with InfluxClient(self.url, "_internal") as anonymous:
                anonymous.execute(
                    f"CREATE USER {self.ADMIN} WITH PASSWORD {influxql_string(password)} "
                    "WITH ALL PRIVILEGES"
                )
            write_private(self.admin_password_file, password.encode())

    def grant(self, database: str, user: str = "fleet", retention: str = "INF") -> Path:
        """Provision ``database`` with ``user`` as its writer; returns the user's
        password file (created once). What ``fleet db init`` does in a deployment."""
        password_file = self.workdir / f"{user}.password"
        if not password_file.exists():
            write_private(password_file, secrets.token_urlsafe(18).encode())
        with self.client(database) as admin:
            provision(
                admin,
                retention=retention,
                writer=(user, read_secret(password_file)) if self.auth else None,
            )
        return password_file

    @property
    def url(self) -> str:
        """The HTTP API's base address, e.g. ``http://127.0.0.1:8086``."""
        return f"http://{self.host}:{self.port}"

    def config_text(self) -> str:
        """The ``influxdb.conf`` (1.6 format) this instance runs with.

        influxd 1.6 silently ignores keys it does not know, so check a change here with
        ``influxd config -config <file>``, which prints the settings it actually uses.
        """
        root = self.workdir
        return f"""\
reporting-disabled = true
bind-address = "{self.host}:{self.rpc_port}"

[meta]
  dir = "{root}/meta"

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false

[coordinator]
  # Tests and benchmarks read back every point: no silent truncation of results.
  max-select-point = 0
  max-select-series = 0

[retention]
  enabled = true

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{self.host}:{self.port}"
  auth-enabled = {"true" if self.auth else "false"}
  log-enabled = false
  max-row-limit = 0

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false

# graphite, collectd, opentsdb, udp and ifql are disabled by default in 1.6.
"""

    def _command(self) -> list[str]:
        binary = find_binary("influxd", "influxdb")
        config = self.workdir / "influxdb.conf"
        config.write_text(self.config_text())
        return [binary, "-config", str(config)]

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ping", timeout=0.5).status_code == 204
        except httpx.HTTPError:
            return False

    def create_database(self, name: str) -> None:
        """Create database ``name`` (a no-op if it exists), as the admin.

        Raises:
            FleetError: InfluxDB refused the statement.
        """
        with self.client(name) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` and all its data (a no-op if it does not exist).

        Raises:
            FleetError: InfluxDB refused the statement.
        """
        with self.client(name) as admin:
            admin.execute(f'DROP DATABASE "{name}"')


def fleet_settings(
    broker: Mosquitto,
    influxdb: InfluxDB,
    database: str,
    instance: str = SERVICE_IDENTITY,
    **mqtt: object,
) -> dict[str, object]:
    """A fleet config (as a dict) for these local services, secured as deployed: the
    instance's own certificate (the broker names the client after it) and the fleet's
    InfluxDB user (the database is provisioned)."""
    return {
        "schema_version": 1,
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "tls": broker.credentials(instance, Role.SERVICE).as_config(),
            **mqtt,
        },
        "influxdb": {
            "url": influxdb.url,
            "database": database,
            "username": "fleet",
            "password_file": str(influxdb.grant(database)),
        },
    }


@contextlib.contextmanager
def fleet_stack(root: Path, database: str, instance: str) -> Iterator[tuple[Mosquitto, InfluxDB]]:
    """Mosquitto, InfluxDB and a subscribed ``fleet serve`` (``root/fleet.log``), all in
    ``root`` and all stopped on the way out: what a benchmark runs against."""
    with (
        Mosquitto(workdir=root / "mosquitto") as broker,
        InfluxDB(workdir=root / "influxdb") as influxdb,
    ):
        config = root / "fleet.yaml"
        config.write_text(yaml.safe_dump(fleet_settings(broker, influxdb, database, instance)))
        with running(start_fleet_service(config, root / "fleet.ready", root / "fleet.log")):
            yield broker, influxdb
