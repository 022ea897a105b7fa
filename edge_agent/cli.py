"""``edge-agent``: run the agent on a booth or bus PC, or a simulated fleet of them."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from edge_agent import __version__
from edge_agent.agent import Agent
from edge_agent.config import AgentConfig, load_agent_config
from edge_agent.contract import DocumentError

app = typer.Typer(help="The Vigie edge agent.", no_args_is_help=True, add_completion=False)

LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiomqtt/paho log every packet at DEBUG; keep that out unless asked for.
    if level.lower() != "debug":
        logging.getLogger("mqtt").setLevel(logging.WARNING)


def _load(paths: list[Path]) -> list[AgentConfig]:
    configs = []
    for path in paths:
        try:
            configs.append(load_agent_config(path))
        except DocumentError as exc:
            typer.echo(f"error: invalid agent configuration\n{exc}", err=True)
            raise typer.Exit(2) from None
    return configs


async def run_agents(configs: list[AgentConfig]) -> None:
    """Run agents side by side until SIGTERM or SIGINT, then stop them cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    agents = [Agent(config) for config in configs]
    async with asyncio.TaskGroup() as group:
        for agent in agents:
            group.create_task(agent.run(stop), name=agent.config.agent_id)


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="The agent's YAML config.")],
    log_level: LogLevel = "info",
) -> None:
    """Run one agent until SIGTERM."""
    configs = _load([config])
    _configure_logging(log_level)
    logging.getLogger(__name__).info(
        "edge-agent %s starting as %s", __version__, configs[0].agent_id
    )
    asyncio.run(run_agents(configs))


@app.command()
def simulate(
    configs: Annotated[list[Path], typer.Argument(help="Agent configs, one per agent.")],
    log_level: LogLevel = "warning",
) -> None:
    """Run many agents in one process: a simulated fleet for demos and benchmarks."""
    loaded = _load(configs)
    ids = [config.agent_id for config in loaded]
    if len(set(ids)) != len(ids):
        typer.echo("error: two configs share an agent_id", err=True)
        raise typer.Exit(2)
    _configure_logging(log_level)
    asyncio.run(run_agents(loaded))


@app.command()
def check(config: Annotated[Path, typer.Argument(help="The agent's YAML config.")]) -> None:
    """Validate a config file and say what it would run."""
    (loaded,) = _load([config])
    typer.echo(
        f"{config}: ok: agent {loaded.agent_id} ({loaded.kind.value}) at {loaded.site.id}, "
        f"{len(loaded.devices)} device(s), broker {loaded.broker.host}:{loaded.broker.port}"
    )


@app.command()
def version() -> None:
    """Print the agent's version."""
    typer.echo(__version__)
