"""``fleet rollout start|status|pause|resume|abort``: staged rollouts of a release.

The CLI writes the rollout's spec and control documents (retained on the broker); the
fleet service releases the waves (``fleet/rollouts/driver.py``). Decisions and counts
come from ``fleet/rollouts/plan.py``, the same code in both.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fleet.cli.common import ConfigOption, JsonOption, error, fail_with, load_config, open_influx
from fleet.cli.render import rollout_detail, rollouts_table
from fleet.config import FleetConfig
from fleet.desired.retained import publish_retained, read_rollouts
from fleet.desired.targets import TARGET_HELP, select_agents
from fleet.errors import FleetError, RolloutError, TargetError
from fleet.rollouts.plan import (
    ACTIVE_STATES,
    Outcome,
    RolloutStatus,
    new_rollout_id,
    overlapping,
    parse_percent,
    parse_waves,
    plan_waves,
)
from fleet.rollouts.view import RolloutView
from fleet.storage.queries import AgentView, list_agents
from vigie_core.clock import utc_now
from vigie_core.contract.releases import MANIFEST_NAME
from vigie_core.contract.rollouts import Command, RolloutControl, RolloutSpec
from vigie_core.contract.topics import Topics
from vigie_core.documents import describe_validation_error

console = Console()
rollout_app = typer.Typer(help="Staged rollouts of a release, in waves.", no_args_is_help=True)

#: How long 'start' waits to see a fleet service release the first wave.
PICKUP_WAIT_S = 15.0

IdArgument = Annotated[
    str | None, typer.Argument(help="The rollout (default: the only active one).")
]


def _view(settings: FleetConfig) -> RolloutView:
    try:
        return read_rollouts(settings.mqtt)
    except FleetError as exc:
        raise fail_with(exc) from None


def _release_kinds(url: str, version: str) -> list[str] | None:
    """The kinds the published manifest is for; None when the store cannot be read
    from here (agents may reach it by another route). Exits 1 when it says 404."""
    address = f"{url.rstrip('/')}/{version}/{MANIFEST_NAME}"
    try:
        answer = httpx.get(address, timeout=5)
    except httpx.HTTPError as exc:
        console.print(f"[yellow]warning:[/] could not check {escape(address)}: {exc}")
        return None
    if answer.status_code == 404:
        error(f"{version} is not published at {url} (no {MANIFEST_NAME}); nothing was sent")
        raise typer.Exit(1)
    try:
        answer.raise_for_status()
        kinds = answer.json()["kinds"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        error(f"{address}: not a release manifest ({exc}); nothing was sent")
        raise typer.Exit(1) from None
    return [str(kind) for kind in kinds]


def _eligible(views: list[AgentView], chosen: list[str], kinds: list[str] | None) -> list[str]:
    """The chosen agents the release is for; says which are left out."""
    if kinds is None:
        return chosen
    kind_of = {view.agent_id: view.kind for view in views}
    left_out = [agent for agent in chosen if kind_of.get(agent) not in kinds]
    if left_out:
        console.print(
            f"Left out, the release is for {', '.join(kinds)} only: {', '.join(left_out)}"
        )
    return [agent for agent in chosen if agent not in left_out]


@rollout_app.command("start")
def rollout_start(
    version: Annotated[str, typer.Argument(help="A published version.")],
    target: Annotated[list[str], typer.Option("--target", "-t", help=TARGET_HELP)],
    url: Annotated[
        str | None,
        typer.Option(help="Where releases are served (default: artifacts.url in the config)."),
    ] = None,
    waves: Annotated[
        str, typer.Option(help="Cumulative shares of the targets, wave by wave.")
    ] = "1,10,50,100%",
    max_failure: Annotated[
        str, typer.Option(help="Halt once this share of the agents asked so far failed.")
    ] = "5%",
    rollout_id: Annotated[
        str | None, typer.Option("--id", help="A name for it (default: VERSION-time).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Show the waves; send nothing.")] = False,
    config: ConfigOption = None,
) -> None:
    """Update the targets to VERSION, wave by wave.

    The next wave goes once enough of the last one runs VERSION healthy; failures past
    --max-failure halt the rollout. Booths restart only when closed and with no
    consultation in progress, buses only when parked.
    """
    settings = load_config(config)
    try:
        shares = parse_waves(waves)
        threshold = parse_percent(max_failure)
    except RolloutError as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    url = url or settings.artifacts.url
    if url is None:
        error("give --url, or set artifacts.url in the fleet configuration")
        raise typer.Exit(2)
    agents = _targeted_agents(settings, target, _release_kinds(url, version))
    now = utc_now()
    rollout_id = rollout_id or new_rollout_id(version, now)
    try:
        spec = RolloutSpec(
            rollout_id=rollout_id,
            version=version,
            url=url,
            waves=plan_waves(agents, shares, seed=rollout_id),
            max_failure_percent=threshold,
            targets=target,
            created_at=now,
        )
    except ValidationError as exc:  # a malformed version, URL or id
        error(describe_validation_error(exc))
        raise typer.Exit(2) from None
    view = _view(settings)
    if rollout_id in view.specs:
        error(f"a rollout named {rollout_id} exists; choose another --id")
        raise typer.Exit(1)
    taken = overlapping(view.statuses(), agents)
    if taken:
        listing = ", ".join(f"{agent} ({rollout})" for agent, rollout in sorted(taken.items()))
        error(f"already in an active rollout: {listing}; abort that one first")
        raise typer.Exit(1)
    _print_plan(spec)
    if dry_run:
        return
    prefix = settings.mqtt.topic_prefix
    control = RolloutControl(rollout_id=rollout_id, command=Command.RUN, at=now)
    documents = [
        (Topics(prefix).rollout(rollout_id, "control"), control.model_dump_json().encode()),
        (Topics(prefix).rollout(rollout_id, "spec"), spec.model_dump_json().encode()),
    ]
    try:
        publish_retained(settings.mqtt, documents)
    except FleetError as exc:
        raise fail_with(exc) from None
    console.print(f"Rollout [bold]{rollout_id}[/] started.")
    _await_pickup(settings, rollout_id)


def _targeted_agents(
    settings: FleetConfig, targets: list[str], kinds: list[str] | None
) -> list[str]:
    """The agents the targets name that the release is for (exits 1 when none)."""
    try:
        with open_influx(settings) as influx:
            views = list_agents(influx, utc_now())
        chosen = select_agents(views, targets)
    except TargetError as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    except FleetError as exc:
        raise fail_with(exc) from None
    agents = _eligible(views, chosen, kinds)
    if not agents:
        error("no targeted agent can run this release; nothing was sent")
        raise typer.Exit(1)
    return agents


def _print_plan(spec: RolloutSpec) -> None:
    table = Table("wave", "agents", "reaches", "first agents", header_style="bold")
    total = len(spec.agents)
    reached = 0
    for number, wave in enumerate(spec.waves, start=1):
        reached += len(wave)
        sample = ", ".join(wave[:5]) + (", …" if len(wave) > 5 else "")
        table.add_row(str(number), str(len(wave)), f"{reached}/{total}", sample)
    console.print(
        f"{spec.version} to {total} agent(s) in {len(spec.waves)} wave(s); "
        f"halts past {spec.max_failure_percent:g} % failures"
    )
    console.print(table)


def _await_pickup(settings: FleetConfig, rollout_id: str) -> None:
    deadline = time.monotonic() + PICKUP_WAIT_S
    with console.status("Waiting for the fleet service to release the first wave…"):
        while time.monotonic() < deadline:
            progress = _view(settings).progress.get(rollout_id)
            if progress is not None and progress.released_waves >= 1:
                console.print("The fleet service released wave 1.")
                return
            time.sleep(1)
    console.print(
        "[yellow]warning:[/] no fleet service has taken it up yet; "
        "the rollout goes on once 'fleet serve' runs."
    )


def _choose(view: RolloutView, rollout_id: str | None) -> RolloutStatus:
    statuses = view.statuses()
    if rollout_id is not None:
        for status in statuses:
            if status.spec.rollout_id == rollout_id:
                return status
        error(f"no rollout named {rollout_id}")
        raise typer.Exit(1)
    active = [status for status in statuses if status.state in ACTIVE_STATES]
    if len(active) == 1:
        return active[0]
    names = ", ".join(status.spec.rollout_id for status in active) or "none"
    error(f"name the rollout: active rollouts: {names}")
    raise typer.Exit(1)


@rollout_app.command("status")
def rollout_status(
    rollout_id: Annotated[
        str | None, typer.Argument(help="One rollout in detail (default: all of them).")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every rollout with its progress, or one in detail.

    The detail gives each wave's counts and the agents still pending or failed, with
    where their update stands.
    """
    settings = load_config(config)
    view = _view(settings)
    if rollout_id is None:
        statuses = view.statuses()
        if as_json:
            typer.echo(json.dumps([status.as_json() for status in statuses], indent=2))
            return
        if not statuses:
            console.print("No rollouts.")
            return
        console.print(rollouts_table(statuses))
        for status in statuses:
            if status.reason and status.state in ACTIVE_STATES:
                console.print(f"{status.spec.rollout_id}: {escape(status.reason)}")
        return
    status = _choose(view, rollout_id)
    details = view.unfinished_agents(status)
    if as_json:
        typer.echo(json.dumps({**status.as_json(), "details": details}, indent=2))
        return
    console.print(rollout_detail(status, details))


def _control(config: ConfigOption, rollout_id: str | None, command: Command) -> RolloutStatus:
    settings = load_config(config)
    status = _choose(_view(settings), rollout_id)
    if status.state not in ACTIVE_STATES:
        error(f"{status.spec.rollout_id} is {status.state.value}; nothing to change")
        raise typer.Exit(1)
    # A resume accepts the failures seen so far; the threshold counts new ones.
    accepted = (Outcome.EXCUSED, Outcome.FAILED) if command is Command.RUN else (Outcome.EXCUSED,)
    control = RolloutControl(
        rollout_id=status.spec.rollout_id,
        command=command,
        excused=[agent for agent, outcome in status.outcomes.items() if outcome in accepted],
        at=utc_now(),
    )
    topic = Topics(settings.mqtt.topic_prefix).rollout(status.spec.rollout_id, "control")
    try:
        publish_retained(settings.mqtt, [(topic, control.model_dump_json().encode())])
    except FleetError as exc:
        raise fail_with(exc) from None
    return status


@rollout_app.command("pause")
def rollout_pause(rollout_id: IdArgument = None, config: ConfigOption = None) -> None:
    """Release no further wave (agents already asked go on)."""
    status = _control(config, rollout_id, Command.PAUSE)
    console.print(f"Paused {status.spec.rollout_id}.")


@rollout_app.command("resume")
def rollout_resume(rollout_id: IdArgument = None, config: ConfigOption = None) -> None:
    """Go on after a pause or a halt; the failures seen so far are accepted."""
    status = _control(config, rollout_id, Command.RUN)
    failed = status.total(Outcome.FAILED)
    accepted = f"; {failed} failure(s) accepted" if failed else ""
    console.print(f"Resumed {status.spec.rollout_id}{accepted}.")


@rollout_app.command("abort")
def rollout_abort(rollout_id: IdArgument = None, config: ConfigOption = None) -> None:
    """Stop for good; agents not yet updated stay on their release.

    Agents already updated keep the new release (a rollback is a rollout of the old
    version, published with --downgrade).
    """
    status = _control(config, rollout_id, Command.ABORT)
    pending = status.total(Outcome.PENDING)
    console.print(
        f"Aborted {status.spec.rollout_id}; {pending} agent(s) not yet updated "
        "will stay on their release."
    )
