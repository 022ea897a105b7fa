"""``fleet``: the fleet service and the technicians' command line, one module per
command group; this one only assembles them."""

from __future__ import annotations

from typing import Annotated

import typer

from fleet import __version__
from fleet.cli.agents import agent_show, agents, readings_command
from fleet.cli.check import check
from fleet.cli.config import config_app
from fleet.cli.demo import demo
from fleet.cli.release import keys_app, release_app
from fleet.cli.rollout import rollout_app
from fleet.cli.security import agent_app, broker_app, ca_app, db_app
from fleet.cli.serve import serve

app = typer.Typer(no_args_is_help=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fleet {__version__}")
        raise typer.Exit


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Vigie fleet: service and technician tools."""


app.command()(serve)
app.command()(check)
app.command()(agents)
app.command(name="readings")(readings_command)
app.command()(demo)
agent_app.command("show")(agent_show)
app.add_typer(agent_app, name="agent")
app.add_typer(ca_app, name="ca")
app.add_typer(broker_app, name="broker")
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
app.add_typer(release_app, name="release")
app.add_typer(rollout_app, name="rollout")
