"""``edge-agent``: run the agent on a booth or bus PC, or a simulated fleet of them."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from edge_agent import __version__
from edge_agent.aio import wait_or_stop
from edge_agent.config import AgentConfig, load_agent_config
from edge_agent.errors import DecodeError, StorageBroken
from edge_agent.instruments.decoders import registry
from edge_agent.instruments.profiles import DEFAULT_PROFILES_DIR, load_profile, load_profiles
from edge_agent.runtime.session import broker_identity
from edge_agent.runtime.supervisor import Agent
from edge_agent.updates.launcher import launch as launch_agent
from vigie_core.contract.identifiers import IDENTIFIER_RE
from vigie_core.errors import DocumentError, TlsError
from vigie_core.files import write_private
from vigie_core.tls import key_pem, new_key, signing_request
from vigie_core.watchdog import Notifier

app = typer.Typer(no_args_is_help=True)
profiles_app = typer.Typer(help="Device profiles: list and validate.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
identity_app = typer.Typer(help="This agent's broker identity.", no_args_is_help=True)
app.add_typer(identity_app, name="identity")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edge-agent {__version__}")
        raise typer.Exit


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """The Vigie edge agent."""


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
    """Every config, or exit 2 after one ``error: <file>: <field>: <reason>`` line per
    problem in any of them."""
    configs = []
    failed = False
    for path in paths:
        try:
            configs.append(load_agent_config(path))
        except DocumentError as exc:
            failed = True
            for line in str(exc).splitlines():
                typer.echo(f"error: {line}", err=True)
    if failed:
        raise typer.Exit(2)
    return configs


def _log_tasks() -> None:
    log = logging.getLogger(__name__)
    for task in asyncio.all_tasks():
        frames = " <- ".join(
            f"{frame.f_code.co_name}:{frame.f_lineno}" for frame in task.get_stack(limit=8)
        )
        log.warning("task %s: %s", task.get_name(), frames or "(not started)")


def run_agents(configs: list[AgentConfig]) -> int:
    """Run agents side by side until SIGTERM or SIGINT, then stop them cleanly; the
    highest exit status any of them asked for."""
    try:
        # Built before the loop starts: opening outboxes and reading files is blocking.
        agents = [Agent(config) for config in configs]
    except (TlsError, StorageBroken) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    asyncio.run(_run(agents))
    return max((agent.exit_code for agent in agents), default=0)


async def _run(agents: list[Agent]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # kill -USR1 <pid>: what every task is waiting for, in the log (a stuck agent).
    loop.add_signal_handler(signal.SIGUSR1, _log_tasks)
    async with asyncio.TaskGroup() as group:
        for agent in agents:
            group.create_task(agent.run(stop), name=agent.config.agent_id)
        group.create_task(_tell_systemd(agents, stop), name="systemd")


async def _tell_systemd(agents: list[Agent], stop: asyncio.Event) -> None:
    """READY=1 once the agents run; then, under a systemd watchdog, WATCHDOG=1 each
    time this event loop and every agent's outbox thread (behind the writes queued so
    far) have answered: a hung loop or a stuck disk stops the pings, and systemd kills
    and restarts the agent."""
    notifier = Notifier.from_environment()
    notifier.ready()
    interval = notifier.ping_interval_s
    if interval is None:
        return
    while not await wait_or_stop(stop, interval):
        for agent in agents:
            await agent.recorder.call(lambda: None)
        notifier.alive()


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
    code = run_agents(configs)
    if code:
        raise typer.Exit(code)  # 75: start me again in the new release (the launcher)


@app.command()
def launch(
    root: Annotated[Path, typer.Option(help="The install root (slots, current, state).")],
    agent_args: Annotated[list[str], typer.Argument(help="After '--': what to run.")],
) -> None:
    """Run the agent from the active release slot, and roll back a failed release.

    systemd starts this, from the base installation:
    edge-agent launch --root /opt/vigie-agent -- run --config /etc/vigie/agent.yaml
    """
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s launcher: %(message)s")
    raise typer.Exit(launch_agent(root, agent_args))


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
    run_agents(loaded)


@app.command()
def check(config: Annotated[Path, typer.Argument(help="The agent's YAML config.")]) -> None:
    """Validate a config file and say what it would run."""
    (loaded,) = _load([config])
    try:
        broker_identity(loaded)
    except TlsError as exc:
        typer.echo(f"error: {config}: {exc}", err=True)
        raise typer.Exit(2) from None
    security = "TLS" if loaded.broker.tls else "PLAINTEXT (lab only)"
    typer.echo(
        f"{config}: ok: agent {loaded.agent_id} ({loaded.kind.value}) at {loaded.site.id}, "
        f"{len(loaded.devices)} device(s), broker {loaded.broker.host}:{loaded.broker.port} "
        f"({security})"
    )


@identity_app.command("request")
def identity_request(
    agent_id: Annotated[str, typer.Argument(help="This agent's id (its certificate's name).")],
    key: Annotated[Path, typer.Option(help="Where to write the new private key (0600).")],
    csr: Annotated[Path, typer.Option(help="Where to write the signing request.")],
) -> None:
    """Make this machine's key and a signing request for 'fleet agent enroll --csr'.

    The key never leaves this machine; only the request (public) travels.
    """
    if not IDENTIFIER_RE.match(agent_id):
        typer.echo(f"error: {agent_id!r} is not a valid agent id", err=True)
        raise typer.Exit(2)
    if key.exists():
        typer.echo(f"error: {key} exists; not replacing a key", err=True)
        raise typer.Exit(1)
    private = new_key()
    write_private(key, key_pem(private))
    csr.write_bytes(signing_request(agent_id, private))
    typer.echo(f"key: {key} (keep it here)\nrequest: {csr} (send it to the fleet)")


@app.command()
def version() -> None:
    """Print the agent's version."""
    typer.echo(__version__)


JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ProfilesDir = Annotated[Path, typer.Option("--dir", help="The profiles folder.", file_okay=False)]


@profiles_app.command("list")
def profiles_list(
    directory: ProfilesDir = DEFAULT_PROFILES_DIR, json_output: JsonFlag = False
) -> None:
    """List the device profiles: name, kind, transport, decoders."""
    try:
        profiles = load_profiles(directory)
    except DocumentError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    rows = [
        {
            "name": profile.name,
            "kind": profile.kind.value,
            "transport": profile.transport,
            "decoders": profile.decoders,
            "title": profile.title,
        }
        for profile in profiles.values()
    ]
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console  # noqa: PLC0415 - see _print_formats
    from rich.table import Table  # noqa: PLC0415

    table = Table("name", "kind", "transport", "decoders", "title")
    for row in rows:
        table.add_row(
            str(row["name"]),
            str(row["kind"]),
            str(row["transport"]),
            ", ".join(profiles[str(row["name"])].decoders),
            str(row["title"]),
        )
    Console().print(table)


@profiles_app.command("validate")
def profiles_validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Profile files; by default every one in --dir.")
    ] = None,
    directory: ProfilesDir = DEFAULT_PROFILES_DIR,
) -> None:
    """Validate profiles; exits 1 naming each invalid file and field."""
    files = paths or sorted(directory.glob("*.yaml"))
    if not files:
        typer.echo(f"error: no profiles in {directory}", err=True)
        raise typer.Exit(1)
    failed = 0
    for path in files:
        try:
            profile = load_profile(path)
        except DocumentError as exc:
            failed += 1
            typer.echo(f"invalid: {exc}", err=True)
        else:
            typer.echo(f"{path}: ok: {profile.name} ({profile.kind.value}, {profile.transport})")
    if failed:
        raise typer.Exit(1)


@app.command("decode")
def decode_command(
    format_name: Annotated[
        str | None,
        typer.Argument(
            metavar="FORMAT", help="A GATT characteristic UUID (2a35) or a serial format name."
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Argument(
            metavar="INPUT",
            help="Hex for binary formats, the line for text formats, - for standard input.",
        ),
    ] = None,
    list_formats: Annotated[
        bool, typer.Option("--list", help="List the formats and exit.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Decode one frame exactly as the agent would, and print it as JSON.

    Exits 1 with a one-line reason for input the format refuses.
    """
    if list_formats:
        _print_formats(json_output)
        return
    if format_name is None or data is None:
        typer.echo("error: give FORMAT and INPUT, or --list", err=True)
        raise typer.Exit(2)
    try:
        fmt = registry.resolve(format_name)
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(2) from None
    text = sys.stdin.read() if data == "-" else data
    try:
        frame = _frame_from_input(text, fmt.input)
        record = fmt.decode(frame)
    except (DecodeError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps({"format": fmt.name, **record.as_json()}, indent=2))


def _frame_from_input(text: str, style: str) -> bytes:
    if style == "hex":
        cleaned = "".join(text.split()).removeprefix("0x").replace(":", "")
        try:
            return bytes.fromhex(cleaned)
        except ValueError:
            raise ValueError(f"{text.strip()[:40]!r} is not hexadecimal") from None
    try:
        return text.rstrip("\r\n").encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("the line is not ASCII") from None


def _print_formats(json_output: bool) -> None:
    rows = [
        {
            "name": fmt.name,
            "title": fmt.title,
            "input": fmt.input,
            "framing": registry.framer_for(fmt.name) or "ble",
        }
        for fmt in registry.FORMATS.values()
    ]
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    # rich only for the commands that print tables: `edge-agent run`, which runs all
    # day, never loads it.
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table("format", "title", "input", "framing")
    for row in rows:
        table.add_row(row["name"], row["title"], row["input"], row["framing"])
    Console().print(table)
