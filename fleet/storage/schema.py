"""Every measurement the fleet writes, with its tags and fields: the contract the
Grafana dashboards and alert rules are checked against (tests/unit/test_grafana.py).
Pure. The points themselves are built in ``fleet.storage.points`` (from messages) and
``fleet.status.derive`` (derived status).

Measurements (the dashboards may query only these, and only these fields):

- one per :class:`~vigie_core.contract.data.ReadingKind` (``blood_pressure``, ...):
  tags ``agent_id``, ``device``; fields: the reading's values, ``seq``,
  ``units``/``invalid``/``context`` as ``name=value;...`` strings and ``quality`` as
  ``flag;flag`` when present; from a real instrument ``profile``, ``address``,
  ``serial_number`` and ``device_clock_offset_s`` (agent receive time minus device time);
- ``agent_health``: tags ``agent_id``; numeric health fields, ``agent_version``,
  ``devices_ok``, ``devices_total``, ``seq``;
- ``device_status``: tags ``agent_id``, ``device``, ``kind``; fields ``status``,
  ``ok`` (1 or 0), ``last_reading_age_s`` (absent when the device never read), and when
  known ``battery_percent``, ``calibration_due_days`` (negative: overdue), ``detail``;
- ``agent_event``: tags ``agent_id``, ``name``, ``severity``; fields ``detail``, ``seq``;
- ``agent_presence``: tags ``agent_id``; fields ``online``, ``session`` and, from a
  birth, ``site_id``, ``site_name``, ``kind``, ``agent_version``, ``devices`` (JSON) and
  ``opening_hours`` (JSON). Time: the fleet's receive time (a Last Will has no other);
- ``agent_delivery``: tags ``agent_id``; field ``duplicates``: redeliveries a fleet
  instance stored again (harmlessly), written when it happens. Time: receive time;
- ``dead_letter``: tags ``reason``; fields ``topic``, ``detail``, ``size``, ``payload``
  (the first bytes, decoded leniently). Time: receive time;
- ``fleet_event``: tags ``instance`` (the fleet instance's identity), ``name``
  (``session_taken_over``); field ``detail``. Time: when the instance noticed.

Derived by the fleet service every ``status.interval_s`` (``fleet.status``), timed on
that interval's boundary so that several instances write the same points (the last
write wins, with the same values) and a minute holds one point per agent:

- ``agent_status``: tags ``agent_id``, ``site_id``, ``kind``; fields ``state``
  (``online``, ``offline``, ``closed``), ``online``, ``in_hours`` (its site is open;
  always 1 without opening hours), ``down`` (offline while open: what an operator must
  act on), all 1 or 0, ``session``, ``agent_version``, ``last_seen_s``, and
  ``seq_missing`` (sequence numbers missing over the last hour that the agent did not
  count as dropped; written once the agent stored anything in that hour);
- ``rollout_status``: tags ``rollout_id``; fields ``version``, ``state``, ``reason``,
  ``released_waves``, ``waves``, ``agents`` and the agents ``updated``, ``failed``,
  ``pending``, ``not_asked``, ``cancelled`` (written while a rollout is active, and
  once when it ends);
- ``rollout_wave``: tags ``rollout_id``, ``wave`` (1, 2, ...); fields ``size``,
  ``released`` (1 or 0) and the same counts, for the same ticks;
- ``config_status``: tags ``agent_id``; fields ``state`` (``in sync``, ``pending``,
  ``rejected``), ``desired_version``, ``running_version`` (when reported), ``reason``,
  for every agent a configuration was pushed to;
- ``crl_status``: fields ``readable`` (1 or 0) and, when readable, ``days_left`` before
  the broker's revocation list expires and ``next_update``; written when
  ``status.crl_file`` is set.

Each agent's release report is stored as it comes (``release_report``: tags
``agent_id``; fields ``running``, ``phase``, ``target``, ``progress_percent``,
``reason``; time: the report's own), every step of every update.
"""

from __future__ import annotations

from typing import Final

from vigie_core.contract.data import READING_FIELDS, ReadingKind

AGENT_HEALTH: Final = "agent_health"
DEVICE_STATUS: Final = "device_status"
AGENT_EVENT: Final = "agent_event"
AGENT_PRESENCE: Final = "agent_presence"
DEAD_LETTER: Final = "dead_letter"
AGENT_DELIVERY: Final = "agent_delivery"
FLEET_EVENT: Final = "fleet_event"
AGENT_STATUS: Final = "agent_status"
ROLLOUT_STATUS: Final = "rollout_status"
ROLLOUT_WAVE: Final = "rollout_wave"
CONFIG_STATUS: Final = "config_status"
RELEASE_REPORT: Final = "release_report"
CRL_STATUS: Final = "crl_status"
_ROLLOUT_COUNTS: Final = ("updated", "failed", "pending", "not_asked", "cancelled")
READING_MEASUREMENTS: Final = frozenset(kind.value for kind in ReadingKind)

#: The ``agent_presence`` fields that carry a birth's details.
BIRTH_FIELDS: Final = (
    "site_id",
    "site_name",
    "kind",
    "agent_version",
    "devices",
    "opening_hours",
    "tags",
)

#: What every point of a data message carries.
_DATA_FIELDS: Final = (
    "agent_id",
    "seq",
    "historical",
    "delay_s",
    "clock_suspect",
    "reported_time_ns",
)

#: What a reading's point may carry besides its values.
_READING_EXTRAS: Final = (
    "units",
    "invalid",
    "quality",
    "context",
    "profile",
    "address",
    "serial_number",
    "device_clock_offset_s",
    "consultation_id",
)

#: Every measurement the fleet writes and the fields (and tags) it may carry: the
#: contract the Grafana dashboards are checked against (tests/unit/test_grafana.py).
SCHEMA: Final[dict[str, frozenset[str]]] = {
    **{
        kind.value: frozenset({*fields, *_DATA_FIELDS, *_READING_EXTRAS, "device"})
        for kind, fields in READING_FIELDS.items()
    },
    AGENT_HEALTH: frozenset(
        {
            *_DATA_FIELDS,
            "agent_version",
            "uptime_s",
            "cpu_percent",
            "memory_percent",
            "disk_percent",
            "devices_ok",
            "devices_total",
            "backlog_messages",
            "backlog_oldest_s",
            "resent_messages",
            "dropped_messages",
            "refused_messages",
            "disk_free_bytes",
            "disk_low",
            "outbox_bytes",
            "held_messages",
        }
    ),
    DEVICE_STATUS: frozenset(
        {
            "agent_id",
            "device",
            "kind",
            "status",
            "ok",
            "last_reading_age_s",
            "battery_percent",
            "calibration_due_days",
            "detail",
        }
    ),
    AGENT_EVENT: frozenset({*_DATA_FIELDS, "name", "severity", "detail"}),
    AGENT_PRESENCE: frozenset({"agent_id", "online", "session", *BIRTH_FIELDS}),
    DEAD_LETTER: frozenset({"reason", "topic", "detail", "size", "payload"}),
    AGENT_DELIVERY: frozenset({"agent_id", "duplicates"}),
    FLEET_EVENT: frozenset({"instance", "name", "detail"}),
    AGENT_STATUS: frozenset(
        {
            "agent_id",
            "site_id",
            "kind",
            "state",
            "online",
            "in_hours",
            "down",
            "session",
            "agent_version",
            "last_seen_s",
            "seq_missing",
        }
    ),
    ROLLOUT_STATUS: frozenset(
        {
            "rollout_id",
            "version",
            "state",
            "reason",
            "released_waves",
            "waves",
            "agents",
            *_ROLLOUT_COUNTS,
        }
    ),
    ROLLOUT_WAVE: frozenset({"rollout_id", "wave", "size", "released", *_ROLLOUT_COUNTS}),
    CONFIG_STATUS: frozenset({"agent_id", "state", "desired_version", "running_version", "reason"}),
    RELEASE_REPORT: frozenset(
        {"agent_id", "running", "phase", "target", "progress_percent", "reason"}
    ),
    CRL_STATUS: frozenset({"readable", "days_left", "next_update"}),
}

#: Written by the status recorder (``fleet.status``), not from agents' messages.
DERIVED_MEASUREMENTS: Final = frozenset(
    {AGENT_STATUS, ROLLOUT_STATUS, ROLLOUT_WAVE, CONFIG_STATUS, RELEASE_REPORT, CRL_STATUS}
)
