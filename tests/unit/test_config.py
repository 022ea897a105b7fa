"""Config files: validated once, errors name the file, the field and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import load_agent_config
from fleet.config import load_fleet_config
from fleet.security.pki import CertificateAuthority, Role
from vigie_core.errors import DocumentError

TLS = "tls: {ca_file: ca.crt, cert_file: client.crt, key_file: client.key}"
GOOD = """
schema_version: 1
agent_id: booth-01
site: {id: mairie-bellevue, name: "Mairie de quartier Bellevue"}
kind: booth
broker:
  tls: {ca_file: ca.crt, cert_file: client.crt, key_file: client.key}
state_dir: /tmp/x
opening_hours: {timezone: Europe/Paris, week: {mon: ["08:30-16:45"]}}
devices:
  - {id: bp1, kind: blood_pressure, interval_s: 20}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def identity(authority: CertificateAuthority, name: str, role: Role, folder: Path) -> None:
    """``name``'s bundle in ``folder``, as 'fleet agent enroll' or 'fleet ca init' write it."""
    certificate, key = authority.issue(name, role)
    assert key is not None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(authority.ca_path.read_bytes())
    (folder / "client.crt").write_bytes(certificate)
    (folder / "client.key").write_bytes(key)


@pytest.fixture(autouse=True)
def _booth_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GOOD names its TLS files relative to the working directory: put booth-01's there."""
    identity(CertificateAuthority.create(tmp_path / "pki"), "booth-01", Role.AGENT, tmp_path)
    monkeypatch.chdir(tmp_path)


def test_a_good_config_loads(tmp_path: Path) -> None:
    config = load_agent_config(write(tmp_path, GOOD))
    assert config.agent_id == "booth-01"
    assert config.devices[0].interval_s == 20
    assert config.broker.port == 8883
    assert config.broker.tls is not None


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (("agent_id: booth-01", "agent_id: Booth/01"), "agent_id", "should match pattern"),
        (("kind: booth", "kind: boat"), "kind", "'booth' or 'bus'"),
        (("interval_s: 20", "interval_s: -1"), "devices.0.interval_s", "greater than 0"),
        (("kind: booth", "kind: booth\ncolour: red"), "colour", "Extra inputs"),
        (("schema_version: 1", "schema_version: 2"), "schema_version", "Input should be 1"),
        (('"08:30-16:45"', '"8h-17h"'), "opening_hours.week", "HH:MM-HH:MM"),
        # Secure by default: no TLS section is an error, not a silent plain connection.
        ((TLS, "keepalive_s: 30"), "broker", "broker.tls is required"),
        ((", key_file: client.key", ""), "broker.tls", "go together"),
    ],
)
def test_errors_name_file_field_and_reason(
    tmp_path: Path, change: tuple[str, str], field: str, reason: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(DocumentError) as info:
        load_agent_config(path)
    message = str(info.value)
    assert str(path) in message
    assert field in message
    assert reason in message


def test_duplicate_device_ids_are_refused(tmp_path: Path) -> None:
    text = GOOD + "  - {id: bp1, kind: body_weight}\n"
    with pytest.raises(DocumentError, match="repeated: bp1"):
        load_agent_config(write(tmp_path, text))


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"missing\.yaml: no such file"):
        load_agent_config(tmp_path / "missing.yaml")
    with pytest.raises(DocumentError, match="not valid YAML"):
        load_agent_config(write(tmp_path, "a: [b"))
    with pytest.raises(DocumentError, match="mapping"):
        load_agent_config(write(tmp_path, "- a"))


def test_fleet_config_defaults_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("schema_version: 1\nmqtt: {allow_plaintext: true}\n")
    config = load_fleet_config(path)
    assert config.mqtt.share_group == "fleet"
    assert config.influxdb.retention == "180d"
    path.write_text("schema_version: 1\nmqtt: {port: 99999, allow_plaintext: true}\n")
    with pytest.raises(DocumentError, match=r"mqtt\.port"):
        load_fleet_config(path)
    path.write_text("schema_version: 1\nmqtt: {port: 8883}\n")
    with pytest.raises(DocumentError, match=r"mqtt\.tls is required"):
        load_fleet_config(path)
    path.write_text("schema_version: 1\nmqtt: {allow_plaintext: true}\ninfluxdb: {username: f}\n")
    with pytest.raises(DocumentError, match="username and password_file go together"):
        load_fleet_config(path)


def installed(example: str, root: Path) -> Path:
    """A documented example as installed under ``root``: its /etc and /var paths moved
    there (the files they name must exist, and the folders be creatable)."""
    source = Path(__file__).resolve().parents[2] / "docs" / "examples" / example
    text = source.read_text().replace(" /etc/", f" {root}/etc/").replace(" /var/", f" {root}/var/")
    path = root / example
    path.write_text(text)
    return path


def test_the_documented_examples_are_valid(tmp_path: Path) -> None:
    authority = CertificateAuthority(tmp_path / "pki")
    identity(authority, "booth-07", Role.AGENT, tmp_path / "etc/vigie/tls")
    agent = load_agent_config(installed("agent.yaml", tmp_path))
    assert agent.opening_hours.week["wed"] == ["08:30-12:00"]
    assert [device.id for device in agent.devices] == ["bp", "thermo", "oxi", "scale", "glucose"]
    assert agent.devices[0].profile == "sig_blood_pressure"
    identities = tmp_path / "etc/vigie/pki/identities"
    identity(authority, "fleet-service", Role.SERVICE, identities / "fleet-service")
    identity(authority, "fleet-cli", Role.TECHNICIAN, identities / "fleet-cli")
    (tmp_path / "etc/vigie/influx.password").write_text("s3cret\n")
    fleet = load_fleet_config(installed("fleet.yaml", tmp_path)).mqtt
    assert fleet.client_id is None  # the instance is named after its certificate
    assert fleet.share_group == "fleet"


def test_a_fleet_instance_is_named_after_its_certificate(tmp_path: Path) -> None:
    authority = CertificateAuthority(tmp_path / "pki")
    certificate, key = authority.issue("fleet-east", Role.SERVICE)
    assert key is not None
    (tmp_path / "client.crt").write_bytes(certificate)
    (tmp_path / "client.key").write_bytes(key)
    tls = (
        f"{{ca_file: {authority.ca_path}, cert_file: {tmp_path / 'client.crt'}, "
        f"key_file: {tmp_path / 'client.key'}}}"
    )
    path = tmp_path / "fleet.yaml"
    path.write_text(f"schema_version: 1\nmqtt: {{tls: {tls}}}\n")
    assert load_fleet_config(path).mqtt.instance_id == "fleet-east"
    # Another id would be silently replaced by the broker: refused, naming both.
    path.write_text(f"schema_version: 1\nmqtt: {{tls: {tls}, client_id: fleet-west}}\n")
    with pytest.raises(DocumentError, match=r"mqtt: .*'fleet-west' is not the certificate"):
        load_fleet_config(path)
