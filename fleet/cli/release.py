"""``fleet keys generate`` and ``fleet release publish``: signed releases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fleet.cli.common import ConfigOption, JsonOption, error, fail_with, load_config, open_influx
from fleet.desired.retained import publish_desired, read_release_state, read_rollouts
from fleet.desired.targets import TARGET_HELP, select_agents
from fleet.errors import FleetError, TargetError
from fleet.releases.manifests import new_manifest
from fleet.rollouts.plan import overlapping
from fleet.storage.queries import list_agents
from vigie_core.clock import utc_now
from vigie_core.contract.identifiers import AgentKind
from vigie_core.contract.releases import (
    MANIFEST_NAME,
    SIGNATURE_SUFFIX,
    DesiredRelease,
    manifest_bytes,
)
from vigie_core.errors import ReleaseError
from vigie_core.files import write_private, write_public
from vigie_core.signing import generate_key, load_private_key, private_key_pem, public_key_pem, sign

console = Console()
keys_app = typer.Typer(help="The release signing key.", no_args_is_help=True)
release_app = typer.Typer(help="Signed releases of the agent.", no_args_is_help=True)


@keys_app.command("generate")
def keys_generate(
    out: Annotated[Path, typer.Option(help="Folder for release.key (0600) and release.pub.")],
) -> None:
    """Create the Ed25519 key pair that signs releases; agents get release.pub."""
    private, public = out / "release.key", out / "release.pub"
    if private.exists():
        error(f"{private} exists; not replacing a signing key")
        raise typer.Exit(1)
    key = generate_key()
    write_private(private, private_key_pem(key))
    write_public(public, public_key_pem(key))
    console.print(f"Signing key: {private} (keep it offline). Public key for agents: {public}")


@release_app.command("publish")
def release_publish(
    artifact: Annotated[
        Path, typer.Argument(help="The agent's wheel.", exists=True, dir_okay=False)
    ],
    version: Annotated[str, typer.Option(help="Its version (PEP 440).")],
    key: Annotated[Path, typer.Option(help="release.key from 'fleet keys generate'.")],
    store: Annotated[
        Path, typer.Option(help="The artifact folder agents download from (served over HTTP).")
    ],
    kind: Annotated[
        list[AgentKind] | None, typer.Option(help="Agent kinds it is for (repeat); default both.")
    ] = None,
    min_agent_version: Annotated[
        str | None, typer.Option(help="Agents below this cannot update to it directly.")
    ] = None,
    downgrade: Annotated[bool, typer.Option(help="Allow installing over a newer one.")] = False,
) -> None:
    """Sign a manifest (version, size, SHA-256, minimum agent version, kinds) and put
    it beside the artifact in <store>/<version>/. Releases are never overwritten."""
    folder = store / version
    if folder.exists():
        error(f"{folder} exists: a published release is never replaced")
        raise typer.Exit(1)
    try:
        signing_key = load_private_key(key.read_bytes())
        manifest = new_manifest(
            artifact,
            version=version,
            kinds=list(kind or AgentKind),
            published_at=utc_now(),
            min_agent_version=min_agent_version,
            downgrade=downgrade,
        )
    except (ReleaseError, ValueError, OSError) as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    document = manifest_bytes(manifest)
    staging = store / f".{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copyfile(artifact, staging / manifest.artifact)
    write_public(staging / MANIFEST_NAME, document)
    write_public(staging / (MANIFEST_NAME + SIGNATURE_SUFFIX), sign(document, signing_key))
    staging.rename(folder)  # all or nothing: agents never see half a release
    console.print(
        f"Published {version}: {manifest.artifact}, {manifest.size:,} bytes, "
        f"sha256 {manifest.sha256[:16]}…, for {', '.join(k.value for k in manifest.kinds)}"
    )


@release_app.command("deploy")
def release_deploy(
    version: Annotated[str, typer.Argument(help="A published version.")],
    target: Annotated[list[str], typer.Option("--target", "-t", help=TARGET_HELP)],
    url: Annotated[
        str | None,
        typer.Option(help="Where releases are served (default: artifacts.url in the config)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Ask the targeted agents to run VERSION (retained: offline ones get it on return).

    Each agent verifies, installs, waits for its moment (closed booth, no consultation,
    parked bus), restarts into it and commits only once healthy.
    """
    settings = load_config(config)
    url = url or settings.artifacts.url
    if url is None:
        error("give --url, or set artifacts.url in the fleet configuration")
        raise typer.Exit(2)
    try:
        with open_influx(settings) as influx:
            agents = select_agents(list_agents(influx, utc_now()), target)
        # A rollout would ask these agents for its own version again at its next step.
        taken = overlapping(read_rollouts(settings.mqtt).statuses(), agents)
        if taken:
            listing = ", ".join(f"{agent} ({rollout})" for agent, rollout in sorted(taken.items()))
            error(f"in an active rollout: {listing}; abort it first (fleet rollout abort)")
            raise typer.Exit(1)
        now = utc_now()
        messages = [
            DesiredRelease(agent_id=agent_id, version=version, url=url, issued_at=now)
            for agent_id in agents
        ]
        publish_desired(settings.mqtt, messages)
    except TargetError as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    except ValueError as exc:  # a malformed version or URL
        error(str(exc).splitlines()[0])
        raise typer.Exit(2) from None
    except FleetError as exc:
        raise fail_with(exc) from None
    console.print(f"Asked {len(messages)} agent(s) to run {version}: {', '.join(agents)}")


@release_app.command("status")
def release_status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Per agent: the release asked for, the one running, and where the update is."""
    settings = load_config(config)
    try:
        rows = read_release_state(settings.mqtt)
    except FleetError as exc:
        raise fail_with(exc) from None
    data = [
        {
            "agent_id": agent_id,
            "desired": desired.version if desired else None,
            "running": reported.running if reported else None,
            "phase": reported.phase.value if reported else None,
            "target": reported.target if reported else None,
            "progress_percent": reported.progress_percent if reported else None,
            "reason": reported.reason if reported else "",
        }
        for agent_id, (desired, reported) in rows.items()
    ]
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table("agent", "desired", "running", "phase", "reason", header_style="bold")
    for row in data:
        phase = str(row["phase"] or "-")
        if row["progress_percent"] is not None and phase == "downloading":
            phase += f" {row['progress_percent']}%"
        table.add_row(
            str(row["agent_id"]),
            str(row["desired"] or "-"),
            str(row["running"] or "-"),
            phase,
            escape(str(row["reason"])),
        )
    console.print(table)
