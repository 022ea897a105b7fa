"""The deployment: its playbooks and roles pass Ansible's syntax check and ansible-lint's
production profile, and what the roles write for the example inventory is what the
programs and systemd accept: agent and fleet configurations that 'edge-agent check' and
'fleet check' pass, systemd units that 'systemd-analyze' verifies and scores, a Grafana
data source with every value filled in, and udev rules of the documented shape.

The files are rendered by Ansible itself (ansible-playbook on localhost, the roles'
tasks skipped by tag, their defaults and vars in force) with the folders they name
moved into a temporary one, where the test puts real certificates, profiles and keys.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from edge_agent.cli import app as agent_app
from fleet.cli.app import app as fleet_app
from fleet.devstack.services import Mosquitto
from fleet.security.broker import delivery_settings
from fleet.security.pki import CertificateAuthority, Role
from vigie_core.signing import generate_key, public_key_pem

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
ROLES = ANSIBLE / "roles"
INVENTORY = ANSIBLE / "inventory.example.yml"
BIN = Path(sys.executable).parent
PLAYBOOKS = ["site.yml", "central.yml", "agent.yml"]
ROLE_NAMES = ["vigie_agent", "vigie_broker", "vigie_influxdb", "vigie_fleet", "vigie_grafana"]
#: The highest 'systemd-analyze security' exposure the services may have (0 to 10).
MAX_EXPOSURE = 4.0


def example_inventory() -> dict[str, Any]:
    inventory: dict[str, Any] = yaml.safe_load(INVENTORY.read_text())
    return inventory


def hosts(group: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every host under an inventory group, with its variables."""
    found = {name: values or {} for name, values in (group.get("hosts") or {}).items()}
    for child in (group.get("children") or {}).values():
        found.update(hosts(child))
    return found


GROUPS = example_inventory()["all"]["children"]
AGENTS = sorted(hosts(GROUPS["agents"]))
(CENTRAL,) = hosts(GROUPS["central"])


def short(host: str) -> str:
    return host.split(".", maxsplit=1)[0]


# --- what the playbooks are ---------------------------------------------------------------


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbooks_pass_ansibles_syntax_check(playbook: str) -> None:
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", INVENTORY.name, "--syntax-check", playbook],
        cwd=ANSIBLE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ansible_lint_passes_with_the_production_profile() -> None:
    # ansible/.ansible-lint says production and offline: nothing is downloaded.
    done = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "-c", ".ansible-lint", "--nocolor"],
        cwd=ANSIBLE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_each_role_has_its_parts(role: str) -> None:
    for part in ("tasks", "defaults", "handlers", "meta"):
        assert (ROLES / role / part / "main.yml").is_file(), f"{role}/{part}/main.yml"
    assert yaml.safe_load((ROLES / role / "meta" / "main.yml").read_text())["galaxy_info"]


def _assert_conditions(tasks: Any) -> str:
    """The text of every assert's conditions in a task list (blocks included)."""
    text = ""
    for task in tasks or []:
        text += _assert_conditions(task.get("block"))
        if "ansible.builtin.assert" in task:
            that = task["ansible.builtin.assert"]["that"]
            text += " ".join(that if isinstance(that, list) else [that])
    return text


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_variable_a_role_reads_has_a_default_or_is_asserted(role: str) -> None:
    folder = ROLES / role
    defined = set()
    for part in ("defaults", "vars"):
        path = folder / part / "main.yml"
        if path.exists():
            defined |= set(yaml.safe_load(path.read_text()) or {})
    tasks_text = (folder / "tasks" / "main.yml").read_text()
    defined |= set(re.findall(r"register: (\w+)", tasks_text))
    asserted = set(re.findall(r"\bvigie_\w+", _assert_conditions(yaml.safe_load(tasks_text))))
    read_in = [folder / "tasks" / "main.yml", *sorted((folder / "templates").glob("*.j2"))]
    if (folder / "vars" / "main.yml").exists():
        read_in.append(folder / "vars" / "main.yml")
    read = {name for path in read_in for name in re.findall(r"\bvigie_\w+", path.read_text())}
    read -= {"vigie_core", *ROLE_NAMES}  # named in comments: a package, the roles
    missing = read - defined - asserted
    assert not missing, f"{role} reads {sorted(missing)} with no default and no assert"


def test_the_example_inventory_groups_booths_by_site_and_has_a_bus() -> None:
    booths = GROUPS["agents"]["children"]["booths"]
    sites = booths["children"]
    assert len(sites) >= 2
    assert all(name.startswith("site_") for name in sites)
    for site in sites.values():
        assert {"id", "name"} <= set(site["vars"]["vigie_agent_site"])
        assert site["hosts"]
    buses = GROUPS["agents"]["children"]["buses"]
    assert buses["vars"]["vigie_agent_kind"] == "bus"
    for bus in hosts(buses).values():
        assert "vigie_agent_opening_hours" not in bus  # open whenever it is on


# --- what the roles write, rendered by Ansible ---------------------------------------------


@dataclass(frozen=True)
class Rendered:
    root: Path
    out: Path

    def agent(self, host: str, name: str) -> Path:
        return self.out / host / name

    def central(self, name: str) -> Path:
        return self.out / CENTRAL / name


def _stub(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


def _bundle(authority: CertificateAuthority, name: str, role: Role, folder: Path) -> None:
    """``name``'s identity in ``folder``, as 'fleet agent enroll' or 'fleet ca init' write it."""
    certificate, key = authority.issue(name, role)
    assert key is not None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(authority.ca_path.read_bytes())
    (folder / "client.crt").write_bytes(certificate)
    (folder / "client.key").write_bytes(key)


def _render_playbook(out: Path) -> list[dict[str, Any]]:
    def render(role: str, names: list[str], where: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": f"Render {', '.join(names)}",
            "ansible.builtin.template": {
                "src": str(ROLES / role / "templates" / "{{ item }}.j2"),
                "dest": f"{out}/{{{{ inventory_hostname }}}}/{where}{{{{ item }}}}",
                "mode": "0644",
            },
            "loop": names,
            "delegate_to": "localhost",
            "tags": ["render"],
            **extra,
        }

    def folders(*where: str) -> dict[str, Any]:
        return {
            "name": "Folders",
            "ansible.builtin.file": {"path": "{{ item }}", "state": "directory"},
            "loop": [f"{out}/{{{{ inventory_hostname }}}}/{sub}" for sub in where],
            "delegate_to": "localhost",
            "tags": ["render"],
        }

    return [
        {
            "name": "Agents",
            "hosts": "agents",
            "gather_facts": False,
            "roles": ["vigie_agent"],
            # Play variables: over the inventory's root, under the tasks' own.
            "vars": {"vigie_agent_updates_root": f"{out}/{{{{ inventory_hostname }}}}/updates"},
            "tasks": [
                folders("", "bare", "updates"),
                render(
                    "vigie_agent",
                    ["agent.yaml", "vigie-agent.service", "vigie-instruments.rules"],
                    "",
                ),
                # The same agent without signed updates: no launcher, no extra path.
                render(
                    "vigie_agent",
                    ["vigie-agent.service"],
                    "bare/",
                    vars={"vigie_agent_updates_root": ""},
                ),
            ],
        },
        {
            "name": "Central",
            "hosts": "central",
            "gather_facts": False,
            "roles": ["vigie_broker", "vigie_influxdb", "vigie_fleet", "vigie_grafana"],
            "tasks": [
                folders("", "dollar"),
                render(
                    "vigie_fleet",
                    [
                        "fleet.yaml",
                        "vigie-fleet.service",
                        "vigie-fleet-crl.service",
                        "vigie-fleet-crl.timer",
                    ],
                    "",
                ),
                render("vigie_grafana", ["datasource.yaml"], ""),
                {
                    "name": "What the roles work out from the files on the controller",
                    "ansible.builtin.copy": {
                        "content": "{{ derived | to_json }}",
                        "dest": f"{out}/{{{{ inventory_hostname }}}}/derived.json",
                        "mode": "0644",
                    },
                    "vars": {
                        "derived": {
                            "plugin": "{{ vigie_broker_plugin }}",
                            "dashboards_dir": "{{ vigie_grafana_dashboards_dir }}",
                            "alerting_files": "{{ vigie_grafana_alerting_files }}",
                            "db_init": "{{ vigie_fleet_db_init_argv"
                            " + vigie_fleet_db_reader_argv }}",
                        }
                    },
                    "delegate_to": "localhost",
                    "tags": ["render"],
                },
                # Grafana expands $NAME in provisioning files: a password with a $.
                render(
                    "vigie_grafana",
                    ["datasource.yaml"],
                    "dollar/",
                    vars={"vigie_grafana_influxdb_password": "pa$word${X}"},
                ),
            ],
        },
    ]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    root = tmp_path_factory.mktemp("deploy")
    out = root / "out"
    authority = CertificateAuthority.create(root / "pki")
    for name, role in (("fleet-service", Role.SERVICE), ("fleet-cli", Role.TECHNICIAN)):
        _bundle(authority, name, role, root / "pki" / "identities" / name)
        _bundle(authority, name, role, root / "central" / "etc" / "tls" / name)
    (root / "central" / "etc" / "influx.password").write_text("a-fleet-password\n")
    release_pub = root / "keys" / "release.pub"
    release_pub.parent.mkdir()
    release_pub.write_bytes(public_key_pem(generate_key()))
    for host in AGENTS:
        agent_id = short(host)
        _bundle(authority, agent_id, Role.AGENT, root / "enrolled" / agent_id)
        etc = root / "hosts" / host / "etc"
        shutil.copytree(root / "enrolled" / agent_id, etc / "tls")
        (etc / "device_profiles").mkdir()
        for profile in (REPO / "device_profiles").glob("*.yaml"):
            shutil.copy(profile, etc / "device_profiles")
        shutil.copy(release_pub, etc / "release.pub")
    made = CliRunner().invoke(
        fleet_app,
        ["broker", "config", "--pki", str(root / "pki"), "--out", str(root / "broker"),
         "--install-dir", "/etc/mosquitto/vigie", "--hostname", "vigie-central.example.org"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    wheel = root / "vigie-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    for program in ("edge-agent", "fleet"):
        _stub(root / "home" / "venv" / "bin" / program)
    # Where the files the roles write would be, moved under root (vars/ need -e).
    extra = {
        "vigie_wheel": str(wheel),
        "vigie_agent_bundles": str(root / "enrolled"),
        "vigie_agent_release_public_key": str(release_pub),
        "vigie_agent_profiles_source": str(REPO / "device_profiles"),
        "vigie_agent_home": str(root / "home"),
        "vigie_agent_config_dir": f"{root}/hosts/{{{{ inventory_hostname }}}}/etc",
        "vigie_agent_state_dir": f"{root}/hosts/{{{{ inventory_hostname }}}}/state",
        "vigie_broker_files": str(root / "broker"),
        "vigie_fleet_home": str(root / "home"),
        "vigie_fleet_config_dir": str(root / "central" / "etc"),
        "vigie_fleet_state_dir": str(root / "central" / "state"),
        "vigie_fleet_pki_dir": str(root / "pki"),
        "vigie_fleet_broker_dir": str(root / "broker"),
        "vigie_grafana_source": str(REPO / "grafana"),
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
    }
    (root / "extra.json").write_text(json.dumps(extra))
    (root / "render.yml").write_text(yaml.safe_dump(_render_playbook(out), sort_keys=False))
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), "render.yml", "--tags", "render",
         "-e", f"@{root / 'extra.json'}"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(ROLES), "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return Rendered(root, out)


def test_every_agents_configuration_passes_edge_agent_check(rendered: Rendered) -> None:
    assert len(AGENTS) >= 3
    kinds = set()
    for host in AGENTS:
        path = rendered.agent(host, "agent.yaml")
        done = CliRunner().invoke(agent_app, ["check", str(path)])
        assert done.exit_code == 0, f"{host}: {done.output}"
        config = yaml.safe_load(path.read_text())
        assert config["agent_id"] == short(host)
        assert config["updates"]["root"] == str(rendered.out / host / "updates")
        kinds.add(config["kind"])
        assert f"agent {short(host)} ({config['kind']})" in done.stdout
    assert kinds == {"booth", "bus"}


def test_the_fleet_configuration_passes_fleet_check(rendered: Rendered) -> None:
    path = rendered.central("fleet.yaml")
    done = CliRunner().invoke(fleet_app, ["check", "--config", str(path)])
    assert done.exit_code == 0, done.output
    assert "ok: instance fleet-service, broker vigie-central.example.org:8883 (TLS)" in done.stdout
    config = yaml.safe_load(path.read_text())
    assert config["influxdb"]["username"] == "fleet"
    assert config["ingest"]["spill_dir"].startswith(str(rendered.root / "central" / "state"))
    # The CRL whose expiry is watched is the one the timer re-signs for the broker.
    crl = Path(config["status"]["crl_file"])
    assert crl.name == "crl.pem"
    renewal = rendered.central("vigie-fleet-crl.service").read_text()
    assert f"--broker-dir {crl.parent}\n" in renewal


def _units(rendered: Rendered) -> list[Path]:
    units = [rendered.agent(host, "vigie-agent.service") for host in AGENTS]
    units += [rendered.agent(host, "bare/vigie-agent.service") for host in AGENTS]
    units += [rendered.central(name) for name in ("vigie-fleet.service", "vigie-fleet-crl.service")]
    return units


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here (CI has systemd)")
    return tool


def test_the_units_directives_are_one_a_line(rendered: Rendered) -> None:
    # As Ansible's template module renders (trim_blocks: a block tag eats its newline):
    # a tag at the end of a line once glued ProtectHome to the ReadWritePaths path.
    for unit in [*_units(rendered), rendered.central("vigie-fleet-crl.timer")]:
        lines = unit.read_text().splitlines()
        assert all(
            not line
            or line.startswith(("#", "["))
            or re.fullmatch(r"[A-Za-z]+=\S.*|[A-Za-z]+=", line)
            for line in lines
        ), (unit, lines)
    for host in AGENTS:
        launched = rendered.agent(host, "vigie-agent.service").read_text().splitlines()
        bare = rendered.agent(host, "bare/vigie-agent.service").read_text().splitlines()
        assert f"ReadWritePaths={rendered.out / host / 'updates'}" in launched
        assert "NotifyAccess=all" in launched  # the launcher's child pings
        assert not [line for line in bare if line.startswith("ReadWritePaths=")]
        assert "NotifyAccess=main" in bare
        for lines in (launched, bare):
            assert {"ProtectHome=true", "Type=notify", "WatchdogSec=60"} <= set(lines)
            assert "StateDirectory=vigie-agent" in lines
            assert "DeviceAllow=char-ttyUSB rw" in lines
            assert "PrivateDevices=true" not in lines  # it would hide the serial ports
    assert "PrivateDevices=true" in rendered.central("vigie-fleet.service").read_text()


def test_systemd_analyze_verifies_every_unit(rendered: Rendered) -> None:
    tool = _systemd_analyze()
    units = [*_units(rendered), rendered.central("vigie-fleet-crl.timer")]
    for unit in units:
        done = subprocess.run(
            [tool, "verify", "--man=no", unit.name],
            cwd=unit.parent,  # the timer finds its service beside it
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # verify says "Unknown key" and bad values on stderr and still exits 0.
        complaints = [
            line
            for line in (done.stdout + done.stderr).splitlines()
            if unit.name in line or unit.stem in line
        ]
        assert done.returncode == 0, (unit, done.stdout + done.stderr)
        assert not complaints, (unit, complaints)


def exposure(unit: Path) -> float:
    """The overall exposure 'systemd-analyze security' gives a unit file (0 to 10)."""
    done = subprocess.run(
        [_systemd_analyze(), "security", "--offline=true", "--no-pager", unit.name],
        cwd=unit.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


def test_the_services_are_sandboxed(rendered: Rendered) -> None:
    # The CRL job too, though it runs as root (the CA's key) with the capabilities to
    # hand the broker's files back to mosquitto.
    scores = {str(unit.relative_to(rendered.out)): exposure(unit) for unit in _units(rendered)}
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores


def test_the_grafana_data_source_is_filled_in_from_the_inventory(rendered: Rendered) -> None:
    text = rendered.central("datasource.yaml").read_text()
    assert "${" not in text
    assert "{{" not in text
    assert "{%" not in text
    central = GROUPS["central"]["vars"]
    (source,) = yaml.safe_load(text)["datasources"]
    assert source["url"] == central["vigie_grafana_influxdb_url"] == "http://127.0.0.1:8086"
    assert source["jsonData"]["dbName"] == central["vigie_fleet_db_name"] == "vigie"
    assert source["user"] == central["vigie_fleet_db_reader"] == "grafana"
    assert source["secureJsonData"]["password"] == central["vault_influxdb_grafana_password"]
    assert "password" not in source  # never in clear in jsonData or at the top
    dollar = yaml.safe_load(rendered.central("dollar/datasource.yaml").read_text())
    assert dollar["datasources"][0]["secureJsonData"]["password"] == "pa$$word$${X}"  # noqa: S105
    # The hand-set-up copy in grafana/ stays the same data source.
    (by_hand,) = yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "datasources" / "vigie.yaml").read_text()
    )["datasources"]
    same = ("name", "uid", "type", "access", "isDefault", "editable")
    assert {key: by_hand[key] for key in same} == {key: source[key] for key in same}
    assert set(by_hand["jsonData"]) == set(source["jsonData"])
    assert by_hand["jsonData"]["httpMode"] == source["jsonData"]["httpMode"]
    assert set(by_hand["secureJsonData"]) == set(source["secureJsonData"])


def test_what_the_roles_read_from_the_controllers_files(rendered: Rendered) -> None:
    derived = json.loads(rendered.central("derived.json").read_text())
    # The broker role checks that the plugin 'fleet broker config' named is on the host.
    security = (rendered.root / "broker" / "vigie-security.conf").read_text()
    assert f"plugin {derived['plugin']}" in security.splitlines()
    # The dashboards go where grafana/'s provider reads them.
    provider = yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "dashboards" / "vigie.yaml").read_text()
    )
    assert derived["dashboards_dir"] == provider["providers"][0]["options"]["path"]
    # Every alerting file in grafana/, whatever was added since.
    alerting = REPO / "grafana" / "provisioning" / "alerting"
    present = sorted(
        str(path) for pattern in ("*.yaml", "*.yml", "*.json") for path in alerting.glob(pattern)
    )
    assert sorted(derived["alerting_files"]) == present
    # 'fleet db init' as the fleet role runs it: options the command has, no secret.
    argv = derived["db_init"]
    assert argv[0] == str(rendered.root / "home" / "venv" / "bin" / "fleet")
    assert argv[1:3] == ["db", "init"]
    usage = CliRunner().invoke(fleet_app, ["db", "init", "--help"], env={"COLUMNS": "200"})
    options = [word for word in argv if word.startswith("--")]
    assert all(option in usage.stdout for option in options), (options, usage.stdout)
    assert not any("password" in word.lower() and not word.startswith(("--", "/")) for word in argv)


UDEV_MATCH = {"SUBSYSTEM", "SUBSYSTEMS", "ATTRS{idVendor}", "ATTRS{idProduct}"}
UDEV_ASSIGN = {"GROUP", "MODE", "SYMLINK", "ENV{ID_MM_DEVICE_IGNORE}"}


def test_the_udev_rules_give_each_adapter_to_the_agent_and_keep_modemmanager_away(
    rendered: Rendered,
) -> None:
    adapters = yaml.safe_load((ROLES / "vigie_agent" / "defaults" / "main.yml").read_text())[
        "vigie_agent_serial_adapters"
    ]
    assert {(a["vendor"], a["product"]) for a in adapters} >= {
        ("0403", "6001"), ("067b", "2303"), ("10c4", "ea60"), ("1a86", "7523")
    }  # fmt: skip
    rules = rendered.agent(AGENTS[0], "vigie-instruments.rules").read_text().splitlines()
    seen = set()
    for line in rules:
        if not line or line.startswith("#"):
            continue
        keys = {}
        for item in line.split(", "):
            found = re.fullmatch(r'([A-Z_]+(?:\{[A-Za-z_]+\})?)(==|\+=|=)"([^"]*)"', item)
            assert found, (item, line)
            key, operator, value = found.groups()
            assert key in UDEV_MATCH | UDEV_ASSIGN, key
            assert (operator == "==") == (key in UDEV_MATCH), item
            keys[key] = value
        assert set(keys) == UDEV_MATCH | UDEV_ASSIGN, line
        assert keys["SUBSYSTEM"] == "tty"
        assert keys["GROUP"] == "dialout"
        assert keys["MODE"] == "0660"
        assert keys["ENV{ID_MM_DEVICE_IGNORE}"] == "1"
        assert keys["SYMLINK"].startswith("vigie/")
        seen.add((keys["ATTRS{idVendor}"], keys["ATTRS{idProduct}"]))
    assert seen == {(a["vendor"], a["product"]) for a in adapters}


# --- the programs under the units' rules -----------------------------------------------------

#: Run a module as the units' MemoryDenyWriteExecute=true would: the kernel's own W^X
#: rule (PR_SET_MDWE, Linux 6.3; systemd enforces the same with seccomp).
MDWE_WRAPPER = """
import ctypes, runpy, sys
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(f"no PR_SET_MDWE: errno {ctypes.get_errno()}")
module = sys.argv[1]
sys.argv = [module, *sys.argv[2:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def _mdwe_supported() -> bool:
    done = subprocess.run(
        [sys.executable, "-c", MDWE_WRAPPER, "json.tool", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return "no PR_SET_MDWE" not in done.stderr


def test_the_programs_run_as_their_units_run_them(tmp_path: Path) -> None:
    """Under W^X (MemoryDenyWriteExecute) and with systemd's notify socket: each starts,
    says READY=1, pings WATCHDOG=1 from its main loop, and stops cleanly on SIGTERM."""
    if not _mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 and later)")
    agent = tmp_path / "agent.yaml"
    agent.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "agent_id": "booth-01",
                "site": {"id": "lab", "name": "Lab"},
                "kind": "booth",
                # Port 9 (discard): nobody answers, the agent keeps trying as in a cut-off bus.
                "broker": {"host": "127.0.0.1", "port": 9, "allow_plaintext": True},
                "state_dir": str(tmp_path / "agent-state"),
                "devices": [
                    {
                        "id": "bp",
                        "kind": "blood_pressure",
                        "profile": "sig_blood_pressure",
                        "interval_s": 0.2,
                    }
                ],
            }
        )
    )
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "mqtt": {"host": "127.0.0.1", "port": 9, "allow_plaintext": True},
                "influxdb": {"url": "http://127.0.0.1:9"},
                "ingest": {"spill_dir": str(tmp_path / "spill")},
            }
        )
    )
    programs = {"edge_agent": agent, "fleet": fleet}
    sockets, processes = {}, {}
    try:
        for module, config in programs.items():
            path = tmp_path / f"{module}.notify"
            sockets[module] = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sockets[module].bind(str(path))
            sockets[module].settimeout(20)
            command = "run" if module == "edge_agent" else "serve"
            processes[module] = subprocess.Popen(
                [sys.executable, "-c", MDWE_WRAPPER, module, command, "--config", str(config)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={
                    **os.environ,
                    "PYTHONPATH": str(REPO),
                    "NOTIFY_SOCKET": str(path),
                    "WATCHDOG_USEC": "900000",  # a ping every 0.3 s
                },
            )
        for module, sock in sockets.items():
            assert sock.recv(64) == b"READY=1", module
            assert sock.recv(64) == b"WATCHDOG=1", module
            assert sock.recv(64) == b"WATCHDOG=1", module
        time.sleep(1.0)  # readings taken and stored, the fleet's InfluxDB retried
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for module, process in processes.items():
            output, _ = process.communicate(timeout=30)
            assert process.returncode == 0, (module, output)
            assert "Traceback" not in output, (module, output)
            assert "MemoryError" not in output, (module, output)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        for sock in sockets.values():
            sock.close()


# --- the broker's settings are the tested ones ---------------------------------------------


def test_the_test_broker_runs_with_the_shipped_delivery_settings(tmp_path: Path) -> None:
    config = Mosquitto(workdir=tmp_path, port=1).config_text()
    shipped = [
        line for line in delivery_settings().splitlines() if line and not line.startswith("#")
    ]
    assert shipped
    assert all(line in config.splitlines() for line in shipped)
    assert "max_inflight_messages 1000" in shipped
    # The broker role installs the copy 'fleet broker config' wrote beside the security files.
    assert (tmp_path / "tls" / "vigie-delivery.conf").read_text() == delivery_settings()
    variables = yaml.safe_load((ROLES / "vigie_broker" / "vars" / "main.yml").read_text())
    assert "vigie-delivery.conf" in variables["vigie_broker_conf_files"]
    tasks = (ROLES / "vigie_broker" / "tasks" / "main.yml").read_text()
    assert "dest: /etc/mosquitto/conf.d/{{ item }}" in tasks
