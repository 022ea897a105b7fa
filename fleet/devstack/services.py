"""Local services run as child processes with their data in a folder: what they share,
and Mosquitto (InfluxDB: ``fleet.devstack.influxdb``).

Used by the demo, the test suite and the benchmarks. Each instance writes its own
configuration into its folder and listens on 127.0.0.1 only, on a port of its own, so
several can run side by side; ``kill()`` (SIGKILL) followed by ``start()`` restarts one
on the same port with the same data, as the chaos tests need.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from fleet.devstack.processes import log_tail, terminate
from fleet.errors import DevstackError
from fleet.security.broker import (
    SERVICE_IDENTITY,
    TECHNICIAN_IDENTITY,
    BrokerFiles,
    refresh_broker_files,
    write_broker_files,
)
from fleet.security.dynsec import ADMIN_IDENTITY, BrokerControl, sync_commands
from fleet.security.pki import CertificateAuthority, Role
from vigie_core.contract.identifiers import DEFAULT_PREFIX
from vigie_core.contract.topics import Grant
from vigie_core.files import write_private, write_public
from vigie_core.tls import BrokerCredentials

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def find_binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise DevstackError(
            f"{name} is not installed: install Debian's '{package}' package "
            "(./scripts/bootstrap does it when run as root)"
        )
    return found


@dataclass
class Service:
    """What the two services share: a folder, a port, a child process and its log."""

    workdir: Path
    port: int | None = None
    host: str = HOST
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    name = "service"
    start_timeout_s = 20.0

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        if self.port is None:
            self.port = free_port()

    @property
    def log_path(self) -> Path:
        """Where the child's stdout and stderr go (appended across restarts)."""
        return self.workdir / f"{self.name}.out"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        """Start the service and wait until it answers, or raise DevstackError."""
        if self.running:
            return
        if self._port_open():
            # Whoever answers there is not us: waiting for "ready" would be fooled by it.
            raise DevstackError(f"{self.name}: port {self.port} is already in use")
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = self._command()
        with self.log_path.open("ab") as log:
            # A process group of its own: a Ctrl-C meant for the demo must not reach it
            # before the demo has stopped the agents that still need the broker.
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + self.start_timeout_s
        while not self._ready() or self._process.poll() is not None:
            if self._process.poll() is not None:
                raise DevstackError(
                    f"{self.name} exited with status {self._process.returncode}:\n"
                    f"{log_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise DevstackError(
                    f"{self.name} did not answer on port {self.port} within "
                    f"{self.start_timeout_s:.0f} s:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        """Whether the child process this object started is still alive."""
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if self._process is None:
            return
        terminate(self._process, timeout_s)
        self._process = None

    def kill(self) -> None:
        """SIGKILL: a crash or a power cut, as far as the service can tell."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self) -> None:
        """Stop gracefully (so Mosquitto saves its store), then start on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _port_open(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port or 0), timeout=0.5):
                return True
        except OSError:
            return False


@dataclass
class Mosquitto(Service):
    """Mosquitto set up like the production broker: TLS only, a certificate per client,
    client ids bound to identities, the dynamic security plugin with the generated
    grants (``fleet/security/``), and the shipped delivery settings.

    Its CA lives in ``<workdir>/pki``; :meth:`enroll` issues identities on demand and
    gives them their rights on the running broker, as ``fleet agent enroll`` does in a
    deployment. ``any_prefix`` lets tests that each use their own topic prefix share
    one broker.
    """

    any_prefix: bool = True
    topic_prefix: str = DEFAULT_PREFIX
    #: Grants of identities beyond the CA's roles (``fleet.security.dynsec``); tests only.
    extra_grants: dict[str, list[Grant]] = field(default_factory=dict)
    name = "mosquitto"

    def __post_init__(self) -> None:
        super().__post_init__()
        pki = self.workdir / "pki"
        self.authority = (
            CertificateAuthority(pki)
            if (pki / "ca.key").exists()
            else CertificateAuthority.create(pki, "Vigie test CA")
        )
        self.files = BrokerFiles(self.workdir / "tls")
        self._identities = self.workdir / "identities"
        # Issued before the first start, so that the broker starts knowing it.
        self._admin = self._issue(ADMIN_IDENTITY, Role.ADMIN)[0]

    @property
    def url(self) -> str:
        """The broker's address, e.g. ``mqtts://127.0.0.1:8883``."""
        return f"mqtts://{self.host}:{self.port}"

    def _issue(self, name: str, role: Role) -> tuple[BrokerCredentials, bool]:
        """``name``'s identity, issued once and kept in the workdir; True if new."""
        folder = self._identities / name
        fresh = not (folder / "client.crt").exists()
        if fresh:
            certificate, key = self.authority.issue(name, role)
            if key is not None:
                write_private(folder / "client.key", key)
            write_public(folder / "client.crt", certificate)
        credentials = BrokerCredentials(
            ca_file=self.authority.ca_path,
            cert_file=folder / "client.crt",
            key_file=folder / "client.key",
        )
        return credentials, fresh

    def enroll(self, *names: str, role: Role = Role.AGENT) -> dict[str, BrokerCredentials]:
        """Identities for ``names`` (issued once); new ones get their rights on the
        running broker at once."""
        issued = {name: self._issue(name, role) for name in names}
        fresh = [name for name, (_, new) in issued.items() if new]
        if fresh:
            self.refresh(fresh)
        return {name: credentials for name, (credentials, _) in issued.items()}

    def credentials(self, name: str, role: Role = Role.AGENT) -> BrokerCredentials:
        return self.enroll(name, role=role)[name]

    @property
    def service_credentials(self) -> BrokerCredentials:
        """The fleet service's identity."""
        return self.credentials(SERVICE_IDENTITY, Role.SERVICE)

    @property
    def technician_credentials(self) -> BrokerCredentials:
        """The CLI's identity: reads everything (tests' observers use it)."""
        return self.credentials(TECHNICIAN_IDENTITY, Role.TECHNICIAN)

    def revoke(self, name: str) -> None:
        """Revoke ``name`` as ``fleet agent revoke`` does: it is disconnected at once,
        and the broker reloads its CRL (SIGHUP), which refuses it from then on."""
        self.authority.revoke(name)
        self.refresh([name])
        if self.running and self._process is not None:
            self._process.send_signal(signal.SIGHUP)
            # Mosquitto reloads between two turns of its loop; give it that turn.
            time.sleep(0.3)

    def refresh(self, names: Sequence[str] = ()) -> None:
        """Regenerate the broker's files (what it starts from), and bring a running
        broker's security up to date for ``names``."""
        refresh_broker_files(
            self.authority,
            self.files,
            topic_prefix=self.topic_prefix,
            any_prefix=self.any_prefix,
            extra=self.extra_grants,
        )
        if self.running and names:
            commands = sync_commands(
                self.authority,
                self.topic_prefix,
                names,
                any_prefix=self.any_prefix,
                extra=self.extra_grants,
            )
            BrokerControl(self.host, self.port or 0, self._admin).apply(commands)

    def config_text(self) -> str:
        """The ``mosquitto.conf`` this instance runs with (creates its data folder)."""
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        write_broker_files(
            self.authority,
            self.files,
            topic_prefix=self.topic_prefix,
            port=self.port or 0,
            bind=self.host,
            any_prefix=self.any_prefix,
            extra=self.extra_grants,
        )
        lines = [
            self.files.config.read_text(),
            f"persistence_location {data}/",
            self.files.delivery.read_text(),
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            # No 'information': it logs every autosave, once a second with autosave_interval 1.
            "connection_messages false",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto drops to the 'mosquitto' user, which cannot write here.
            lines.append("user root")
        return "\n".join(lines) + "\n"

    def _command(self) -> list[str]:
        binary = find_binary("mosquitto", "mosquitto")
        config = self.workdir / "mosquitto.conf"
        config.write_text(self.config_text())
        return [binary, "-c", str(config)]

    def _ready(self) -> bool:
        return self._port_open()
