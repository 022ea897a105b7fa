"""Device profiles: every shipped profile loads; bad ones are refused with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edge_agent.cli import app
from edge_agent.config import AgentConfig, device_profiles, load_agent_config
from edge_agent.instruments.decoders import registry
from edge_agent.instruments.profiles import DEFAULT_PROFILES_DIR, load_profile, load_profiles
from vigie_core.contract.data import ReadingKind
from vigie_core.errors import DocumentError

SHIPPED = sorted(DEFAULT_PROFILES_DIR.glob("*.yaml"))

#: The instrument kinds the real-instruments issue names, and the transports they use.
EXPECTED_KINDS = {
    (ReadingKind.BLOOD_PRESSURE, "ble"),
    (ReadingKind.BODY_TEMPERATURE, "ble"),
    (ReadingKind.BODY_WEIGHT, "ble"),
    (ReadingKind.PULSE_OXIMETRY, "ble"),
    (ReadingKind.BLOOD_GLUCOSE, "ble"),
    (ReadingKind.PULSE_OXIMETRY, "serial"),
    (ReadingKind.BODY_WEIGHT, "serial"),
    (ReadingKind.BODY_COMPOSITION, "serial"),
    (ReadingKind.POSITION, "serial"),
}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_every_shipped_profile_loads_and_names_known_decoders(path: Path) -> None:
    profile = load_profile(path)
    assert profile.name == path.stem
    for name in profile.decoders:
        assert registry.resolve(name).name == name


def test_there_is_a_profile_for_each_instrument_kind() -> None:
    profiles = load_profiles(DEFAULT_PROFILES_DIR)
    assert {(profile.kind, profile.transport) for profile in profiles.values()} >= EXPECTED_KINDS


def _write(tmp_path: Path, document: dict[str, object], name: str = "p") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _serial_profile(**serial: object) -> dict[str, object]:
    return {
        "schema_version": 1,
        "name": "p",
        "title": "test",
        "kind": "position",
        "transport": "serial",
        "serial": {"decoder": "nmea", **serial},
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 2}, "schema_version"),
        ({"colour": "blue"}, "colour"),
        ({"serial": {"decoder": "nmea", "baud": 9600}}, "serial.baud"),
        ({"serial": {"decoder": "no_such_format"}}, "unknown decoder"),
        ({"serial": {"decoder": "2a35"}}, "not a serial format"),
        ({"serial": {"decoder": "nmea", "baudrate": 1234}}, "baudrate"),
        ({"transport": "ble"}, "needs a 'ble' section"),
        ({"name": "other"}, "differs from the file name"),
    ],
)
def test_bad_profiles_are_refused_naming_the_field(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    path = _write(tmp_path, {**_serial_profile(), **change})
    with pytest.raises(DocumentError, match=message):
        load_profile(path)


def test_ble_profiles_check_uuids_and_writes(tmp_path: Path) -> None:
    base = {
        "schema_version": 1,
        "name": "p",
        "title": "t",
        "kind": "blood_pressure",
        "transport": "ble",
    }
    full_uuid = "00002A35-0000-1000-8000-00805F9B34FB"
    good = {"match": {"service_uuids": ["0x1810"]}, "subscribe": [{"characteristic": full_uuid}]}
    profile = load_profile(_write(tmp_path, {**base, "ble": good}))
    assert profile.ble is not None
    assert profile.ble.match.service_uuids == ["1810"]
    assert profile.decoders == ["2a35"]
    for ble, message in [
        ({**good, "match": {}}, "at least one of"),
        ({**good, "match": {"address": "not-a-mac"}}, "Bluetooth address"),
        (
            {**good, "subscribe": [{"characteristic": "12345678-aaaa-bbbb-cccc-1234567890ab"}]},
            "UUID",
        ),
        ({**good, "write": [{"characteristic": "2a52"}]}, "exactly one of value, hex"),
        ({**good, "write": [{"characteristic": "2a52", "hex": "0g"}]}, "hex digits"),
    ]:
        with pytest.raises(DocumentError, match=message):
            load_profile(_write(tmp_path, {**base, "ble": ble}))


def _agent(tmp_path: Path, device: dict[str, object]) -> Path:
    document = {
        "schema_version": 1,
        "broker": {"allow_plaintext": True},  # no broker in a unit test
        "agent_id": "bus-1",
        "site": {"id": "bus-1", "name": "Bus"},
        "kind": "bus",
        "state_dir": str(tmp_path / "state"),
        "devices": [device],
    }
    return _write(tmp_path, document, "agent")


def test_an_agent_config_resolves_its_profiles(tmp_path: Path) -> None:
    path = _agent(
        tmp_path,
        {
            "id": "gps",
            "kind": "position",
            "source": "serial",
            "profile": "nmea_gps",
            "address": "/dev/serial/by-id/usb-gps",
        },
    )
    config = load_agent_config(path)
    assert device_profiles(config)["gps"].name == "nmea_gps"


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ({"id": "gps", "kind": "position", "source": "serial"}, "needs a profile"),
        (
            {
                "id": "gps",
                "kind": "position",
                "source": "serial",
                "profile": "nope",
                "address": "x",
            },
            "no profile 'nope'",
        ),
        (
            {
                "id": "gps",
                "kind": "body_weight",
                "source": "serial",
                "profile": "nmea_gps",
                "address": "x",
            },
            "measures position",
        ),
        (
            {"id": "gps", "kind": "position", "source": "ble", "profile": "nmea_gps"},
            "is a serial profile",
        ),
        ({"id": "gps", "kind": "position", "source": "serial", "profile": "nmea_gps"}, "no port"),
    ],
)
def test_agent_configs_with_bad_instruments_are_refused(
    tmp_path: Path, device: dict[str, object], message: str
) -> None:
    with pytest.raises(DocumentError, match=message):
        load_agent_config(_agent(tmp_path, device))


def test_disabled_devices_are_not_resolved(tmp_path: Path) -> None:
    path = _agent(
        tmp_path,
        {
            "id": "gps",
            "kind": "position",
            "source": "serial",
            "profile": "nope",
            "address": "x",
            "enabled": False,
        },
    )
    config: AgentConfig = load_agent_config(path)
    assert config.enabled_devices == []


def test_profiles_cli_lists_and_validates(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["profiles", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {row["name"] for row in yaml.safe_load(listed.output)} == {p.stem for p in SHIPPED}
    assert runner.invoke(app, ["profiles", "validate"]).exit_code == 0
    bad = _write(tmp_path, {**_serial_profile(), "colour": "blue"})
    result = runner.invoke(app, ["profiles", "validate", str(bad)])
    assert result.exit_code == 1
    assert "colour" in result.output
