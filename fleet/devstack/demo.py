"""The demo: a local broker and InfluxDB, the fleet service and a simulated department.

Everything runs as child processes with its data under one folder (``.vigie/demo`` by
default); Ctrl-C stops the agents first (they publish "offline"), then the service,
then the broker and the database.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from fleet.cli.render import agents_table
from fleet.devstack.influxdb import InfluxDB
from fleet.devstack.processes import running, spawn, start_fleet_service
from fleet.devstack.services import Mosquitto
from fleet.errors import FleetError
from fleet.storage.influx import InfluxClient
from fleet.storage.presence import AgentStatus
from fleet.storage.queries import list_agents
from vigie_core.clock import utc_now

DEMO_DATABASE = "vigie"

# Towns of the Sarthe department, where many residents have no regular doctor.
TOWNS = [
    "Allonnes",
    "Coulaines",
    "La Flèche",
    "Sablé-sur-Sarthe",
    "La Ferté-Bernard",
    "Mamers",
    "Château-du-Loir",
    "Saint-Calais",
    "Sillé-le-Guillaume",
    "Loué",
    "Écommoy",
    "Bonnétable",
    "Montval-sur-Loir",
    "Changé",
    "Arnage",
    "Yvré-l'Évêque",
    "Champagné",
    "Parigné-l'Évêque",
    "Ballon-Saint-Mars",
    "Beaumont-sur-Sarthe",
    "Fresnay-sur-Sarthe",
    "Conlie",
    "Brûlon",
    "Malicorne-sur-Sarthe",
    "Le Lude",
    "Mayet",
    "Pontvallain",
    "Bouloire",
    "Vibraye",
    "Montfort-le-Gesnois",
    "Savigné-l'Évêque",
    "Saint-Saturnin",
    "La Suze-sur-Sarthe",
    "Noyen-sur-Sarthe",
    "Marolles-les-Braults",
    "Tuffé",
    "Dollon",
    "Connerré",
    "Bessé-sur-Braye",
    "Le Grand-Lucé",
    "Jupilles",
    "Marçon",
    "Vaas",
    "Aubigné-Racan",
    "Mansigné",
    "Cérans-Foulletourte",
    "Chemiré-le-Gaudin",
    "Saint-Jean-d'Assé",
    "Neuville-sur-Sarthe",
    "Le Mans",
]
WEEKDAYS_ONLY = ("mon", "tue", "wed", "thu", "fri")
# Opening hours seen in real deployments: a town-hall booth, a staffed kiosk, a booth
# with Saturday mornings, and a hospital booth open around the clock.
SCHEDULES: list[dict[str, list[str]]] = [
    {day: ["08:30-16:45"] for day in WEEKDAYS_ONLY},
    {day: ["09:00-18:00"] for day in WEEKDAYS_ONLY},
    {**{day: ["08:30-12:00", "13:30-17:30"] for day in WEEKDAYS_ONLY}, "sat": ["09:00-12:00"]},
    {day: ["00:00-24:00"] for day in (*WEEKDAYS_ONLY, "sat", "sun")},
]
#: (id, kind, model, device profile): simulated instruments that produce the bytes a
#: real device of that profile sends, decoded by the agent's real decoders.
BOOTH_DEVICES = [
    ("bp", "blood_pressure", "simulated-cuff", "sig_blood_pressure"),
    ("thermo", "body_temperature", "simulated-thermometer", "sig_thermometer"),
    ("scale", "body_weight", "simulated-scale", "and_scale"),
    ("oxi", "pulse_oximetry", "simulated-oximeter", "nonin_df2"),
    ("glucose", "blood_glucose", "simulated-glucose-meter", "sig_glucose_meter"),
    ("composition", "body_composition", "simulated-analyser", "tanita_body_composition"),
]


def _slug(name: str) -> str:
    table = str.maketrans("éèêëàâîïôûùç'", "eeeeaaiiouuc-")
    return "-".join(name.lower().translate(table).replace("-", " ").split())[:40]


def _agent_config(
    agent_id: str,
    site: dict[str, str],
    kind: str,
    week: dict[str, list[str]],
    devices: list[dict[str, Any]],
    mqtt_port: int,
    state_root: Path,
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "agent_id": agent_id,
        "site": site,
        "kind": kind,
        "opening_hours": {"timezone": "Europe/Paris", "week": week},
        "broker": {"host": "127.0.0.1", "port": mqtt_port},
        "tags": ["sarthe", kind],
        "state_dir": str(state_root / agent_id),
        "health_interval_s": 15.0,
        "devices": devices,
    }


def demo_agent_configs(
    booths: int, buses: int, mqtt_port: int, state_root: Path, reading_interval_s: float = 30.0
) -> list[dict[str, Any]]:
    """Agent configs for a simulated department: ``booths`` booths and ``buses`` buses."""
    instruments = [
        {
            "id": device_id,
            "kind": kind,
            "model": model,
            "profile": profile,
            "interval_s": reading_interval_s,
        }
        for device_id, kind, model, profile in BOOTH_DEVICES
    ]
    gps = {
        "id": "gps",
        "kind": "position",
        "model": "simulated-gps",
        "profile": "nmea_gps",
        "interval_s": 5.0,
    }
    configs = [
        _agent_config(
            f"booth-{index + 1:02d}",
            {
                "id": _slug(TOWNS[index % len(TOWNS)]),
                "name": f"Cabine de {TOWNS[index % len(TOWNS)]}",
            },
            "booth",
            SCHEDULES[index % len(SCHEDULES)],
            instruments,
            mqtt_port,
            state_root,
        )
        for index in range(booths)
    ]
    configs += [
        _agent_config(
            f"bus-{index + 1}",
            {"id": f"bus-sante-{index + 1}", "name": "Bus santé de la Sarthe"},
            "bus",
            {day: ["08:00-18:00"] for day in WEEKDAYS_ONLY},
            [*instruments, gps],
            mqtt_port,
            state_root,
        )
        for index in range(buses)
    ]
    return configs


@dataclass
class DemoOptions:
    folder: Path
    booths: int
    buses: int
    mqtt_port: int
    influx_port: int
    refresh_s: float = 2.0


def _status_view(client: InfluxClient, options: DemoOptions, started: float) -> Group:
    now = utc_now()
    try:
        views = list_agents(client, now)
    except FleetError as exc:
        return Group(Text(f"waiting for InfluxDB: {exc}", style="yellow"))
    counts = {status: sum(view.status is status for view in views) for status in AgentStatus}
    summary = Text.assemble(
        (f"Vigie demo  {int(time.monotonic() - started)} s  ", "bold"),
        (f"{counts[AgentStatus.ONLINE]} online  ", "green"),
        (f"{counts[AgentStatus.OFFLINE]} offline  ", "red"),
        (f"{counts[AgentStatus.CLOSED]} closed  ", "dim"),
        f"of {options.booths + options.buses} agents.  "
        f"MQTT 127.0.0.1:{options.mqtt_port}, InfluxDB 127.0.0.1:{options.influx_port}.  "
        "Ctrl-C stops.",
    )
    return Group(summary, agents_table(views, now))


def run_demo(options: DemoOptions, console: Console) -> None:
    """Start everything, show live status until Ctrl-C, then stop everything cleanly."""
    folder = options.folder.resolve()
    agents_dir = folder / "agents"
    agents_dir.mkdir(parents=True, exist_ok=True)
    for old in agents_dir.glob("*.yaml"):
        old.unlink()
    # Ctrl-C should interrupt only the live view; the teardown below must not be cut.
    console.print(
        f"[bold]Starting[/] Mosquitto on {options.mqtt_port} (TLS, a certificate per "
        f"agent) and InfluxDB on {options.influx_port} (authentication on); data in {folder}"
    )
    ready, logs = folder / "fleet.ready", folder / "logs"
    with contextlib.ExitStack() as stack:  # closed in reverse: agents first, broker last
        broker = stack.enter_context(
            Mosquitto(workdir=folder / "mosquitto", port=options.mqtt_port, any_prefix=False)
        )
        database = stack.enter_context(
            InfluxDB(workdir=folder / "influxdb", port=options.influx_port)
        )
        configs = demo_agent_configs(
            options.booths, options.buses, options.mqtt_port, folder / "agent-state"
        )
        # As 'fleet agent enroll' would: one certificate per agent, the ACL reloaded.
        identities = broker.enroll(*(config["agent_id"] for config in configs))
        paths = []
        for config in configs:
            config["broker"]["tls"] = identities[config["agent_id"]].as_config()
            path = agents_dir / f"{config['agent_id']}.yaml"
            path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
            paths.append(str(path))
        fleet_config = folder / "fleet.yaml"
        fleet_config.write_text(
            yaml.safe_dump(
                {
                    "schema_version": 1,
                    "mqtt": {
                        "host": "127.0.0.1",
                        "port": options.mqtt_port,
                        "tls": broker.service_credentials.as_config(),
                        # So that 'fleet config push' works against the demo too.
                        "cli_tls": broker.technician_credentials.as_config(),
                    },
                    "influxdb": {
                        "url": database.url,
                        "database": DEMO_DATABASE,
                        "username": "fleet",
                        "password_file": str(database.grant(DEMO_DATABASE, retention="30d")),
                    },
                },
                sort_keys=False,
            )
        )
        # Agents start only once the fleet's persistent subscription exists; before
        # that, the broker would have nobody to keep their first messages for.
        fleet = start_fleet_service(fleet_config, ready, logs / "fleet.log", own_session=True)
        stack.enter_context(running(fleet))
        agents = spawn(
            ["-m", "edge_agent", "simulate", *paths], logs / "agents.log", own_session=True
        )
        stack.enter_context(running(agents))
        client = stack.enter_context(database.client(DEMO_DATABASE))
        console.print(
            f"Fleet service and {len(paths)} simulated agents started; logs in "
            f"{logs}. [bold]Ctrl-C[/] to stop."
        )
        console.print(
            f"In another terminal: [bold]VIGIE_FLEET_CONFIG={fleet_config} "
            ".venv/bin/fleet agents[/]"
        )
        started = time.monotonic()
        try:
            with Live(
                _status_view(client, options, started),
                console=console,
                refresh_per_second=1,
                screen=False,
            ) as live:
                while True:
                    time.sleep(options.refresh_s)
                    live.update(_status_view(client, options, started))
        except KeyboardInterrupt:
            console.print("[bold]Stopping[/] agents, fleet service, InfluxDB and Mosquitto...")
    console.print("Stopped.")
