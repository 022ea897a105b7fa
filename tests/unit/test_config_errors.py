"""Broken configurations of both programs, as a user meets them on the command line:
exit status 2, one ``error: <file>: <field>: <reason>`` line per problem, no traceback.

Each case starts from a valid configuration (real certificates, keys and secrets) and
breaks one thing.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

import edge_agent.cli
import fleet.cli.agents
import fleet.cli.serve
from edge_agent.cli import app as agent_app
from edge_agent.config import load_agent_config
from edge_agent.remote_config.merge import apply_settings
from fleet.cli.app import app as fleet_app
from fleet.config import PASSWORD_ENV, TOKEN_ENV, load_fleet_config
from fleet.security.pki import CertificateAuthority, Role
from vigie_core.contract.settings import ManagedSettings
from vigie_core.signing import generate_key, public_key_pem
from vigie_core.tls import new_key

REPO = Path(__file__).resolve().parents[2]
AS_ROOT = os.geteuid() == 0
ROOT_READS_ANYTHING = pytest.mark.skipif(
    AS_ROOT, reason="root reads a chmod 000 file: no unreadable file to test with"
)


@dataclass(frozen=True)
class Files:
    """Everything the configurations point at: good files, and bad ones to swap in."""

    root: Path
    ca: Path
    agent_cert: Path
    agent_key: Path
    service_cert: Path
    service_key: Path
    cli_cert: Path
    cli_key: Path
    password: Path
    release_pub: Path
    text: Path  # a regular file that is nothing in particular
    empty: Path
    folder: Path
    fake_key: Path  # PEM armour around nonsense
    encrypted_key: Path
    unreadable: Path

    def missing(self, name: str = "missing.pem") -> str:
        return str(self.root / "nowhere" / name)


def _bundle(
    authority: CertificateAuthority, name: str, role: Role, root: Path
) -> tuple[Path, Path]:
    certificate, key = authority.issue(name, role)
    assert key is not None
    (root / f"{name}.crt").write_bytes(certificate)
    (root / f"{name}.key").write_bytes(key)
    return root / f"{name}.crt", root / f"{name}.key"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("files")
    authority = CertificateAuthority.create(root / "pki")
    agent = _bundle(authority, "booth-01", Role.AGENT, root)
    service = _bundle(authority, "fleet-service", Role.SERVICE, root)
    cli = _bundle(authority, "fleet-cli", Role.TECHNICIAN, root)
    paths = {
        "password": b"s3cret\n",
        "release.pub": public_key_pem(generate_key()),
        "notes.txt": b"this is not PEM\n",
        "empty": b"",
        "fake.key": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "encrypted.key": new_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        ),
        "unreadable": b"s3cret\n",
    }
    for name, content in paths.items():
        (root / name).write_bytes(content)
    (root / "unreadable").chmod(0)
    (root / "folder").mkdir()
    return Files(
        root=root,
        ca=authority.ca_path,
        agent_cert=agent[0],
        agent_key=agent[1],
        service_cert=service[0],
        service_key=service[1],
        cli_cert=cli[0],
        cli_key=cli[1],
        password=root / "password",
        release_pub=root / "release.pub",
        text=root / "notes.txt",
        empty=root / "empty",
        folder=root / "folder",
        fake_key=root / "fake.key",
        encrypted_key=root / "encrypted.key",
        unreadable=root / "unreadable",
    )


@pytest.fixture(autouse=True)
def _no_secret_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables override the secret files, which are then not checked."""
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)


@pytest.fixture(autouse=True)
def _never_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A config that passes would start an agent or a service (and wait for a broker or
    InfluxDB that are not there): fail at once instead."""

    def accepted(*_: object) -> None:
        raise AssertionError("the configuration was accepted")

    monkeypatch.setattr(edge_agent.cli, "run_agents", accepted)
    for command in (fleet.cli.serve, fleet.cli.agents):
        monkeypatch.setattr(command, "open_influx", accepted)


def agent_config(files: Files, state: Path) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "agent_id": "booth-01",
        "site": {"id": "mamers", "name": "Mairie de Mamers"},
        "kind": "booth",
        "broker": {
            "host": "mqtt.example.org",
            "tls": {
                "ca_file": str(files.ca),
                "cert_file": str(files.agent_cert),
                "key_file": str(files.agent_key),
            },
        },
        "state_dir": str(state / "state"),  # does not exist yet: created at start
        "consultation_file": str(state / "run" / "consultation"),  # comes and goes
        "updates": {"root": str(state / "install"), "public_key_file": str(files.release_pub)},
        "devices": [{"id": "bp", "kind": "blood_pressure", "profile": "sig_blood_pressure"}],
    }


def fleet_config(files: Files, state: Path) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "mqtt": {
            "host": "mqtt.example.org",
            "tls": {
                "ca_file": str(files.ca),
                "cert_file": str(files.service_cert),
                "key_file": str(files.service_key),
            },
            "cli_tls": {
                "ca_file": str(files.ca),
                "cert_file": str(files.cli_cert),
                "key_file": str(files.cli_key),
            },
        },
        "influxdb": {
            "url": "http://127.0.0.1:8086",
            "username": "fleet",
            "password_file": str(files.password),
        },
        "ingest": {"spill_dir": str(state / "spill")},
        "artifacts": {"dir": str(state / "releases"), "url": "http://central.example.org:8780"},
    }


#: Remove the key instead of setting it.
DROP = object()
#: A value, or how to make it from the files.
Value = object | Callable[[Files], object]


def edited(config: dict[str, Any], edits: dict[str, Value], files: Files) -> dict[str, Any]:
    """``config`` with each dotted key set (or dropped)."""
    result = copy.deepcopy(config)
    for dotted, value in edits.items():
        *parents, last = dotted.split(".")
        section = result
        for part in parents:
            section = section[int(part)] if isinstance(section, list) else section[part]
        if value is DROP:
            del section[last]
        else:
            section[last] = value(files) if callable(value) else value
    return result


def case(
    name: str, edits: dict[str, Value], field: str, reason: str, *marks: pytest.MarkDecorator
) -> Any:
    return pytest.param(edits, field, reason, id=name, marks=marks)


def tls(**override: Callable[[Files], object]) -> Callable[[Files], dict[str, object]]:
    """The agent's TLS section with some files replaced."""

    def make(files: Files) -> dict[str, object]:
        section: dict[str, object] = {
            "ca_file": str(files.ca),
            "cert_file": str(files.agent_cert),
            "key_file": str(files.agent_key),
        }
        section.update({key: str(value(files)) for key, value in override.items()})
        return section

    return make


def _password_login(password: Callable[[Files], object]) -> Callable[[Files], object]:
    """The agent's TLS section with a user name and password instead of a certificate."""
    return lambda f: {
        "ca_file": str(f.ca),
        "username": "booth-01",
        "password_file": str(password(f)),
    }


AGENT_CASES = [
    case("missing-agent-id", {"agent_id": DROP}, "agent_id", "Field required"),
    case("unknown-key", {"colour": "red"}, "colour", "Extra inputs are not permitted"),
    case("wrong-type", {"health_interval_s": "often"}, "health_interval_s", "valid number"),
    case("bad-enum", {"kind": "boat"}, "kind", "'booth' or 'bus'"),
    case("bad-identifier", {"agent_id": "Booth/01"}, "agent_id", "should match pattern"),
    case("schema-version", {"schema_version": 2}, "schema_version", "Input should be 1"),
    case("bad-hours", {"opening_hours": {"week": {"mon": ["8h-17h"]}}}, "opening_hours.week",
         "HH:MM"),
    case("port-range", {"broker.port": 99999}, "broker.port", "less than or equal to 65535"),
    case("no-tls", {"broker.tls": DROP}, "broker", "broker.tls is required"),
    case("prefix-hash", {"broker.topic_prefix": "vi#gie/x"}, "broker.topic_prefix", "no '/'"),
    case("prefix-slash", {"broker.topic_prefix": "vi/gie"}, "broker.topic_prefix", "no '/'"),
    case("prefix-plus", {"broker.topic_prefix": "vigie+"}, "broker.topic_prefix", "no '/'"),
    case("prefix-dollar", {"broker.topic_prefix": "$SYS"}, "broker.topic_prefix", "no '/'"),
    case("prefix-empty", {"broker.topic_prefix": ""}, "broker.topic_prefix", "1 to 64"),
    case("host-empty", {"broker.host": ""}, "broker.host", "empty"),
    case("host-spaces", {"broker.host": "mqtt example org"}, "broker.host", "no '/' or spaces"),
    case("host-url", {"broker.host": "mqtts://mqtt.example.org"}, "broker.host", "not a URL"),
    case("ca-missing", {"broker.tls": tls(ca_file=lambda f: f.missing())}, "broker.tls.ca_file",
         "no such file"),
    case("ca-directory", {"broker.tls": tls(ca_file=lambda f: f.folder)}, "broker.tls.ca_file",
         "is a directory, not a file"),
    case("ca-garbage", {"broker.tls": tls(ca_file=lambda f: f.text)}, "broker.tls.ca_file",
         "not a PEM certificate"),
    case("ca-empty", {"broker.tls": tls(ca_file=lambda f: f.empty)}, "broker.tls.ca_file",
         "is empty"),
    case("ca-unreadable", {"broker.tls": tls(ca_file=lambda f: f.unreadable)},
         "broker.tls.ca_file", "not readable (permission denied)", ROOT_READS_ANYTHING),
    case("ca-under-a-file", {"broker.tls": tls(ca_file=lambda f: f.text / "ca.crt")},
         "broker.tls.ca_file", "notes.txt is a file, not a directory"),
    case("cert-missing", {"broker.tls": tls(cert_file=lambda f: f.missing("client.crt"))},
         "broker.tls.cert_file", "no such file"),
    case("cert-garbage", {"broker.tls": tls(cert_file=lambda f: f.text)}, "broker.tls.cert_file",
         "not a PEM certificate"),
    case("cert-is-the-key", {"broker.tls": tls(cert_file=lambda f: f.agent_key)},
         "broker.tls.cert_file", "holds a private key, not a certificate"),
    case("key-missing", {"broker.tls": tls(key_file=lambda f: f.missing("client.key"))},
         "broker.tls.key_file", "no such file"),
    case("key-directory", {"broker.tls": tls(key_file=lambda f: f.folder)},
         "broker.tls.key_file", "is a directory, not a file"),
    case("key-garbage", {"broker.tls": tls(key_file=lambda f: f.fake_key)},
         "broker.tls.key_file", "not a PEM private key"),
    case("key-is-the-cert", {"broker.tls": tls(key_file=lambda f: f.agent_cert)},
         "broker.tls.key_file", "holds a certificate, not a private key"),
    case("key-encrypted", {"broker.tls": tls(key_file=lambda f: f.encrypted_key)},
         "broker.tls.key_file", "encrypted with a passphrase"),
    case("key-unreadable", {"broker.tls": tls(key_file=lambda f: f.unreadable)},
         "broker.tls.key_file", "permission denied", ROOT_READS_ANYTHING),
    case("key-not-the-certs", {"broker.tls": tls(key_file=lambda f: f.service_key)},
         "broker.tls", "key_file does not match cert_file"),
    case("cert-of-another-agent",
         {"broker.tls": tls(cert_file=lambda f: f.service_cert, key_file=lambda f: f.service_key)},
         "broker.tls.cert_file", "'fleet-service' but this is 'booth-01'"),
    case("password-missing", {"broker.tls": _password_login(lambda f: f.missing("password"))},
         "broker.tls.password_file", "no such file"),
    case("password-empty", {"broker.tls": _password_login(lambda f: f.empty)},
         "broker.tls.password_file", "is empty"),
    case("state-under-a-file", {"state_dir": lambda f: str(f.text / "state")}, "state_dir",
         "notes.txt is a file, not a directory"),
    case("state-is-a-file", {"state_dir": lambda f: str(f.text)}, "state_dir",
         "is a file, not a directory"),
    case("profiles-missing", {"profiles_dir": lambda f: f.missing("profiles")}, "profiles_dir",
         "no such directory"),
    case("unknown-profile", {"devices.0.profile": "no_such_cuff"}, "devices.0.profile",
         "no profile 'no_such_cuff'"),
    case("consultation-directory", {"consultation_file": lambda f: str(f.folder)},
         "consultation_file", "is a directory, not a file"),
    case("release-key-missing", {"updates.public_key_file": lambda f: f.missing("release.pub")},
         "updates.public_key_file", "no such file"),
    case("release-key-garbage", {"updates.public_key_file": lambda f: str(f.text)},
         "updates.public_key_file", "not an Ed25519 public key"),
    case("release-key-not-ed25519", {"updates.public_key_file": lambda f: str(f.agent_cert)},
         "updates.public_key_file", "not an Ed25519 public key"),
    case("release-private-key", {"updates.public_key_file": lambda f: str(f.agent_key)},
         "updates.public_key_file", "holds a private key"),
    case("install-root-under-a-file", {"updates.root": lambda f: str(f.text / "root")},
         "updates.root", "is a file, not a directory"),
]  # fmt: skip


def _fleet_tls(section: str, **override: Callable[[Files], object]) -> dict[str, Value]:
    """The fleet's ``section`` (tls or cli_tls) with some files replaced."""

    def make(files: Files) -> dict[str, object]:
        cert, key = (
            (files.service_cert, files.service_key)
            if section == "tls"
            else (files.cli_cert, files.cli_key)
        )
        made: dict[str, object] = {
            "ca_file": str(files.ca),
            "cert_file": str(cert),
            "key_file": str(key),
        }
        made.update({name: str(value(files)) for name, value in override.items()})
        return made

    return {f"mqtt.{section}": make}


def _token(token: Callable[[Files], object]) -> dict[str, Value]:
    """InfluxDB 2.x and 3.x: a token file instead of a user and password."""
    return {
        "influxdb.username": DROP,
        "influxdb.password_file": DROP,
        "influxdb.token_file": lambda f: str(token(f)),
    }


FLEET_CASES = [
    case("missing-mqtt", {"mqtt": DROP}, "mqtt", "Field required"),
    case("unknown-key", {"influxdb.databse": "vigie"}, "influxdb.databse", "Extra inputs"),
    case("wrong-type", {"influxdb.timeout_s": "soon"}, "influxdb.timeout_s", "valid number"),
    case("bad-retention", {"influxdb.retention": "forever"}, "influxdb.retention", "pattern"),
    case("port-zero", {"mqtt.port": 0}, "mqtt.port", "greater than or equal to 1"),
    case("no-tls", {"mqtt.tls": DROP}, "mqtt", "mqtt.tls is required"),
    case("prefix-hash", {"mqtt.topic_prefix": "vi#gie/x"}, "mqtt.topic_prefix", "no '/'"),
    case("prefix-empty", {"mqtt.topic_prefix": ""}, "mqtt.topic_prefix", "1 to 64"),
    case("bad-share-group", {"mqtt.share_group": "a/b"}, "mqtt.share_group", "pattern"),
    case("bad-client-id", {"mqtt.client_id": "Fleet East"}, "mqtt.client_id", "pattern"),
    case("client-id-not-the-certs", {"mqtt.client_id": "fleet-west"}, "mqtt",
         "'fleet-west' is not the certificate's name 'fleet-service'"),
    case("host-empty", {"mqtt.host": ""}, "mqtt.host", "empty"),
    case("ca-missing", _fleet_tls("tls", ca_file=lambda f: f.missing()), "mqtt.tls.ca_file",
         "no such file"),
    case("key-garbage", _fleet_tls("tls", key_file=lambda f: f.text), "mqtt.tls.key_file",
         "not a PEM private key"),
    case("key-not-the-certs", _fleet_tls("tls", key_file=lambda f: f.cli_key), "mqtt.tls",
         "key_file does not match cert_file"),
    case("cli-cert-directory", _fleet_tls("cli_tls", cert_file=lambda f: f.folder),
         "mqtt.cli_tls.cert_file", "is a directory, not a file"),
    case("cli-cert-unreadable", _fleet_tls("cli_tls", cert_file=lambda f: f.unreadable),
         "mqtt.cli_tls.cert_file", "permission denied", ROOT_READS_ANYTHING),
    case("url-not-a-url", {"influxdb.url": "not a url"}, "influxdb.url", "not a URL"),
    case("url-ftp", {"influxdb.url": "ftp://x"}, "influxdb.url", "http:// or https://"),
    case("url-no-host", {"influxdb.url": "http://"}, "influxdb.url", "empty host"),
    case("url-bad-port", {"influxdb.url": "http://influx:99999"}, "influxdb.url", "port"),
    case("artifacts-url", {"artifacts.url": "not a url"}, "artifacts.url", "not a URL"),
    case("password-missing", {"influxdb.password_file": lambda f: f.missing("password")},
         "influxdb.password_file", "no such file"),
    case("password-empty", {"influxdb.password_file": lambda f: str(f.empty)},
         "influxdb.password_file", "is empty"),
    case("password-directory", {"influxdb.password_file": lambda f: str(f.folder)},
         "influxdb.password_file", "is a directory, not a file"),
    case("password-unreadable", {"influxdb.password_file": lambda f: str(f.unreadable)},
         "influxdb.password_file", "permission denied", ROOT_READS_ANYTHING),
    case("token-missing", _token(lambda f: f.missing("token")), "influxdb.token_file",
         "no such file"),
    case("spill-under-a-file", {"ingest.spill_dir": lambda f: str(f.text / "spill")},
         "ingest.spill_dir", "notes.txt is a file, not a directory"),
    case("artifacts-dir-is-a-file", {"artifacts.dir": lambda f: str(f.text)}, "artifacts.dir",
         "is a file, not a directory"),
]  # fmt: skip

#: Whole-file problems: (name, what is at the config's path); no field to name.
BROKEN_FILES: list[tuple[str, Callable[[Path], object], str]] = [
    ("yaml-syntax", lambda p: p.write_text("schema_version: 1\nsite: [a\n"), "not valid YAML"),
    ("not-a-mapping", lambda p: p.write_text("- schema_version: 1\n"), "expected a mapping"),
    ("empty", lambda p: p.write_text(""), "is empty"),
    ("not-utf8", lambda p: p.write_bytes(b"site: \xff\xfe\n"), "not UTF-8 text"),
    ("missing", lambda p: None, "no such file"),
    ("directory", lambda p: p.mkdir(), "is a directory, not a file"),
]


def write(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def invoke(program: str, *args: str) -> Any:
    app = agent_app if program == "agent" else fleet_app
    return CliRunner().invoke(app, list(args))


def assert_refused(result: Any, path: Path, field: str | None, reason: str) -> None:
    """Exit 2 by SystemExit, one error line naming the file (and field), no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    (line,) = lines
    where = f"error: {path}: " + (f"{field}: " if field else "")
    assert line.startswith(where), line
    assert reason in line, line


@pytest.mark.parametrize(("edits", "field", "reason"), AGENT_CASES)
def test_a_broken_agent_config_is_one_line_and_exit_2(
    files: Files, tmp_path: Path, edits: dict[str, Value], field: str, reason: str
) -> None:
    path = write(edited(agent_config(files, tmp_path), edits, files), tmp_path / "agent.yaml")
    assert_refused(invoke("agent", "run", "--config", str(path)), path, field, reason)


@pytest.mark.parametrize(("edits", "field", "reason"), FLEET_CASES)
@pytest.mark.parametrize("command", ["serve", "agents", "check"])
def test_a_broken_fleet_config_is_one_line_and_exit_2(
    files: Files, tmp_path: Path, command: str, edits: dict[str, Value], field: str, reason: str
) -> None:
    path = write(edited(fleet_config(files, tmp_path), edits, files), tmp_path / "fleet.yaml")
    assert_refused(invoke("fleet", command, "--config", str(path)), path, field, reason)


@pytest.mark.parametrize(
    ("name", "breaks", "reason"), BROKEN_FILES, ids=[name for name, _, _ in BROKEN_FILES]
)
@pytest.mark.parametrize(
    "command",
    [
        ("agent", "run", "--config"),
        ("agent", "check"),
        ("fleet", "serve", "--config"),
        ("fleet", "check", "--config"),
    ],
    ids=["agent-run", "agent-check", "fleet-serve", "fleet-check"],
)
def test_a_config_file_that_cannot_be_read_is_one_line_and_exit_2(
    tmp_path: Path,
    command: tuple[str, ...],
    name: str,
    breaks: Callable[[Path], object],
    reason: str,
) -> None:
    path = tmp_path / f"{name}.yaml"
    breaks(path)
    assert_refused(invoke(*command, str(path)), path, None, reason)


def test_every_agent_command_that_loads_a_config_reports_alike(
    files: Files, tmp_path: Path
) -> None:
    good = write(agent_config(files, tmp_path), tmp_path / "good.yaml")
    bad = agent_config(files, tmp_path)
    bad["broker"]["topic_prefix"] = "vi#gie/x"
    path = write(bad, tmp_path / "agent.yaml")
    for args in (("check", str(path)), ("simulate", str(good), str(path))):
        assert_refused(invoke("agent", *args), path, "broker.topic_prefix", "topic prefix")


def test_several_problems_are_one_line_each(files: Files, tmp_path: Path) -> None:
    config = fleet_config(files, tmp_path)
    config["mqtt"]["topic_prefix"] = "a/b"
    config["influxdb"]["url"] = "not a url"
    path = write(config, tmp_path / "fleet.yaml")
    result = invoke("fleet", "serve", "--config", str(path))
    assert result.exit_code == 2
    assert [line.split(": ")[2] for line in result.stderr.splitlines()] == [
        "mqtt.topic_prefix",
        "influxdb.url",
    ]


def test_valid_configs_load(files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent_path = write(agent_config(files, tmp_path), tmp_path / "agent.yaml")
    agent = load_agent_config(agent_path)
    assert agent.broker.tls is not None
    assert not (tmp_path / "state").exists()  # checked as creatable, not created
    # Pushed settings are validated over the file's again: the paths still pass.
    pushed = apply_settings(agent, ManagedSettings(health_interval_s=30))
    assert pushed.health_interval_s == 30
    done = invoke("agent", "check", str(agent_path))
    assert done.exit_code == 0, done.output
    assert "agent booth-01 (booth)" in done.stdout

    fleet_path = write(fleet_config(files, tmp_path), tmp_path / "fleet.yaml")
    fleet = load_fleet_config(fleet_path)
    assert fleet.mqtt.instance_id == "fleet-service"
    assert fleet.influxdb.url == "http://127.0.0.1:8086"  # kept as written
    done = invoke("fleet", "check", "--config", str(fleet_path))
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"{fleet_path}: ok: instance fleet-service, broker ")
    # $VIGIE_INFLUX_PASSWORD overrides the file, which may then not exist.
    config = fleet_config(files, tmp_path)
    config["influxdb"]["password_file"] = files.missing("password")
    monkeypatch.setenv(PASSWORD_ENV, "from-the-environment")
    assert load_fleet_config(write(config, tmp_path / "env.yaml")).influxdb.credentials().apply()


@pytest.mark.parametrize(
    ("module", "command", "config"),
    [("edge_agent", "run", "agent.yaml"), ("fleet", "serve", "fleet.yaml")],
    ids=["edge-agent", "fleet"],
)
def test_the_real_programs_exit_2_without_a_traceback(
    files: Files, tmp_path: Path, module: str, command: str, config: str
) -> None:
    document = (agent_config if module == "edge_agent" else fleet_config)(files, tmp_path)
    section = document["broker" if module == "edge_agent" else "mqtt"]
    section["topic_prefix"] = "vi#gie/x"
    section["tls"]["ca_file"] = files.missing()
    path = write(document, tmp_path / config)
    done = subprocess.run(
        [sys.executable, "-m", module, command, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2, lines
    assert all(line.startswith(f"error: {path}: ") for line in lines)
    assert "topic_prefix" in done.stderr
    assert "tls.ca_file" in done.stderr
