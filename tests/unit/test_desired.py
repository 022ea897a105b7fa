"""Desired configuration, the pure parts and the agent's side without a broker."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.errors import ConfigRejected
from edge_agent.remote_config.merge import apply_settings, effective_settings
from edge_agent.runtime.supervisor import Agent
from fleet.desired.targets import ConfigSync, SyncState, next_version, select_agents
from fleet.errors import TargetError
from fleet.storage.presence import AgentStatus
from fleet.storage.queries import AgentView
from vigie_core.clock import utc_now
from vigie_core.contract.presence import OpeningHours
from vigie_core.contract.settings import (
    ConfigRejection,
    DesiredConfig,
    DeviceOverride,
    ManagedSettings,
    ReportedConfig,
    differences,
)

from .test_agent import make_agent


def apply(agent: Agent, desired: DesiredConfig) -> bool:
    """What the agent does with a desired configuration that arrives."""
    return asyncio.run(agent.apply_desired(desired))


SETTINGS = ManagedSettings(
    health_interval_s=5,
    devices={"bp": DeviceOverride(interval_s=30, calibration_due=date(2027, 3, 1))},
)


def desired(
    version: int, settings: ManagedSettings = SETTINGS, agent_id: str = "bus-1"
) -> DesiredConfig:
    return DesiredConfig(
        agent_id=agent_id,
        version=version,
        sha256=settings.digest(),
        issued_at=utc_now(),
        settings=settings,
    )


def test_settings_are_laid_over_the_file_and_validated_as_a_whole(tmp_path: Path) -> None:
    base = make_agent(tmp_path).remote_config.base
    merged = apply_settings(base, SETTINGS)
    assert merged.health_interval_s == 5
    assert merged.devices[0].interval_s == 30
    assert merged.devices[0].calibration_due == date(2027, 3, 1)
    assert merged.agent_id == base.agent_id  # identity never comes from the fleet
    assert differences(SETTINGS, effective_settings(merged)) == []
    with pytest.raises(ConfigRejected) as info:
        apply_settings(base, ManagedSettings(devices={"ecg": DeviceOverride(enabled=True)}))
    assert info.value.field == "devices.ecg"


def test_thresholds_are_managed_settings(tmp_path: Path) -> None:
    base = make_agent(tmp_path).remote_config.base
    assert (base.devices[0].battery_low_percent, base.devices[0].calibration_warning_days) == (
        20,
        30,
    )
    override = DeviceOverride(battery_low_percent=35, calibration_warning_days=60)
    merged = apply_settings(base, ManagedSettings(devices={"bp": override}))
    assert (merged.devices[0].battery_low_percent, merged.devices[0].calibration_warning_days) == (
        35,
        60,
    )
    running = effective_settings(merged).devices["bp"]
    assert (running.battery_low_percent, running.calibration_warning_days) == (35, 60)
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        ManagedSettings.model_validate({"devices": {"bp": {"battery_low_percent": 120}}})


def test_a_tampered_or_malformed_desired_configuration_is_refused() -> None:
    good = desired(1).model_dump(mode="json")
    with pytest.raises(ValidationError, match="sha256 does not match"):
        DesiredConfig.model_validate({**good, "settings": {"health_interval_s": 1}})
    with pytest.raises(ValidationError, match="greater than 0"):
        ManagedSettings.model_validate({"health_interval_s": 0})
    with pytest.raises(ValidationError, match="Extra inputs"):
        ManagedSettings.model_validate({"broker": {"host": "evil.example.org"}})


def test_the_agent_applies_persists_and_refuses_as_it_should(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    assert apply(agent, desired(2)) is True
    assert agent.config.health_interval_s == 5
    assert agent.reported_config().version == 2
    assert apply(agent, desired(2)) is False  # the retained copy seen again
    # Older than what runs: refused, nothing changes.
    other = ManagedSettings(health_interval_s=9)
    assert apply(agent, desired(1, other)) is False
    report = agent.reported_config()
    assert report.version == 2
    assert report.rejected is not None
    assert report.rejected.field == "version"
    # A restart runs the saved one before any broker is reached.
    agent.recorder.close()
    again = make_agent(tmp_path)
    assert again.config.health_interval_s == 5
    assert again.remote_config.version == 2
    # A configuration the agent cannot run keeps the old one, with the reason.
    assert apply(again, desired(3, ManagedSettings(devices={"x": DeviceOverride()}))) is False
    assert again.config.health_interval_s == 5
    rejected = again.reported_config().rejected
    assert rejected is not None
    assert (rejected.version, rejected.field) == (3, "devices.x")
    # Every step is an event (the outbox is shared by both runs of the agent).
    again.recorder.flush()
    events = [json.loads(e.payload) for e in again.outbox.due(100) if "/event" in e.topic]
    assert [e["name"] for e in events if e["name"].startswith("config_")] == [
        "config_applied",
        "config_rejected",
        "config_rejected",
    ]


def test_disabling_an_instrument_at_run_time_removes_it(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    assert [i.id for i in agent.instruments] == ["bp"]
    apply(agent, desired(1, ManagedSettings(devices={"bp": DeviceOverride(enabled=False)})))
    assert agent.instruments == []
    apply(agent, desired(2, ManagedSettings(devices={"bp": DeviceOverride(enabled=True)})))
    assert [i.id for i in agent.instruments] == ["bp"]


def view(agent_id: str, site: str, kind: str, tags: list[str]) -> AgentView:
    return AgentView(
        agent_id=agent_id,
        status=AgentStatus.ONLINE,
        site_id=site,
        site_name=site,
        kind=kind,
        agent_version="1",
        devices=[],
        last_seen=None,
        status_since=utc_now(),
        session=1,
        opening_hours=OpeningHours.always(),
        tags=tags,
    )


VIEWS = [
    view("booth-1", "mamers", "booth", ["sarthe"]),
    view("booth-2", "loue", "booth", ["sarthe", "pilot"]),
    view("bus-1", "bus", "bus", []),
]


@pytest.mark.parametrize(
    ("targets", "chosen"),
    [
        (["booth-1"], ["booth-1"]),
        (["site:loue"], ["booth-2"]),
        (["kind:bus"], ["bus-1"]),
        (["tag:sarthe"], ["booth-1", "booth-2"]),
        (["tag:pilot", "kind:bus"], ["booth-2", "bus-1"]),
        (["all"], ["booth-1", "booth-2", "bus-1"]),
    ],
)
def test_targets_select_agents(targets: list[str], chosen: list[str]) -> None:
    assert select_agents(VIEWS, targets) == chosen


@pytest.mark.parametrize("targets", [["booth-9"], ["tag:none"], ["kind:boat"], ["colour:red"], []])
def test_a_target_that_names_nobody_is_an_error(targets: list[str]) -> None:
    with pytest.raises(TargetError):
        select_agents(VIEWS, targets)


def reported(version: int, rejected: int | None = None) -> ReportedConfig:
    settings = effective_settings(make_agent_config())
    return ReportedConfig(
        agent_id="bus-1",
        version=version,
        sha256=settings.digest(),
        settings=settings,
        rejected=None
        if rejected is None
        else ConfigRejection(version=rejected, sha256=None, field="f", reason="r"),
        at=utc_now(),
    )


def make_agent_config():  # type: ignore[no-untyped-def]
    from edge_agent.config import AgentConfig

    return AgentConfig.model_validate(
        {
            "schema_version": 1,
            "broker": {"allow_plaintext": True},
            "agent_id": "bus-1",
            "site": {"id": "bus", "name": "Bus"},
            "kind": "bus",
            "state_dir": "/tmp/unused",
        }
    )


def test_sync_states_and_versions() -> None:
    assert ConfigSync("bus-1", None, reported(0)).state is SyncState.LOCAL
    assert ConfigSync("bus-1", desired(2), None).state is SyncState.PENDING
    assert ConfigSync("bus-1", desired(2), reported(2)).state is SyncState.IN_SYNC
    assert ConfigSync("bus-1", desired(3), reported(2)).state is SyncState.PENDING
    refused = ConfigSync("bus-1", desired(3), reported(2, rejected=3))
    assert refused.state is SyncState.REJECTED
    assert refused.reason == "f: r"
    assert next_version(None, None) == 1
    assert next_version(desired(3), reported(2, rejected=5)) == 6
