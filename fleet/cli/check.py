"""``fleet check``: validate a fleet configuration without starting anything.

What ``fleet serve`` would refuse at start (fields, files, certificates, the password
file) is refused here the same way, exit status 2; nothing is connected to. The
deployment checks a new configuration with it before installing it.
"""

from __future__ import annotations

import os

import typer

from fleet.cli.common import ConfigOption, load_config
from fleet.config import CONFIG_ENV


def check(config: ConfigOption = None) -> None:
    """Validate a fleet config file and say what it would run; exit 2 if invalid."""
    settings = load_config(config)
    where = config or os.environ.get(CONFIG_ENV, "fleet.yaml")
    mqtt, influx = settings.mqtt, settings.influxdb
    security = "TLS" if mqtt.tls else "PLAINTEXT (lab only)"
    spill = settings.ingest.spill_dir
    releases = settings.artifacts.dir
    typer.echo(
        f"{where}: ok: instance {mqtt.instance_id}, broker {mqtt.host}:{mqtt.port} ({security}), "
        f"InfluxDB {influx.url} database {influx.database}"
        + (f" as {influx.username}" if influx.username else "")
        + (f", spill {spill}" if spill else ", no spill")
        + (f", releases {releases} on port {settings.artifacts.port}" if releases else "")
    )
