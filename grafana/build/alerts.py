"""Alert rules as Grafana provisions them from files (``apiVersion: 1``), and an example
contact point and notification policy.

Each rule is query A (InfluxQL over the rule's window, ``$timeFilter``), B the
reduction of each series of A to one number, C the threshold on B (Grafana's
server-side expressions, data source ``__expr__``); C is the condition. One alert per
series: per agent, per instrument, per rollout.

The SDK's alerting models are those of Grafana's HTTP provisioning API; the file
format differs only around the rules (a group has ``orgId``, ``name``, ``folder``; a
rule no ``folderUID``, ``ruleGroup``, ``orgID``), so the rules are built with the SDK
and laid out as the file wants (``file_rule``). Grafana reads every ``.yaml`` file in
its ``provisioning/alerting/`` folder: the examples live elsewhere
(``grafana/alerting-examples/``), since a notification policy file replaces the
organisation's whole policy tree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as alerting_model
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from grafana.build.influx import DATASOURCE_UID, Query

FOLDER: Final = "Vigie"
EXPRESSIONS: Final = "__expr__"
ORG: Final = 1

Reducer = Literal["last", "max", "min", "mean", "sum", "count"]
NoData = Literal["OK", "NoData", "Alerting"]


@dataclass(frozen=True)
class Rule:
    """One alert rule: A queries InfluxDB over ``window_s``, B reduces each series,
    C compares it (``above`` or ``below`` the threshold)."""

    uid: str
    title: str
    query: str
    window_s: int
    threshold: float
    compare: Literal["gt", "lt"]
    pending: str
    severity: Literal["critical", "warning"]
    summary: str
    description: str
    #: What "the query found nothing" means for this rule, chosen per rule: usually
    #: OK (nothing to alert about), Alerting where silence is the fault.
    no_data: NoData
    reducer: Reducer = "last"


#: A query that fails is not a healthy fleet, nor proof of a fault: Grafana shows the
#: rule in error (and sends its DatasourceError alert).
EXEC_ERROR: Final = "Error"

BOOTHS: Final = (
    Rule(
        uid="vigie-booth-down",
        title="Booth down during its opening hours",
        query=(
            'SELECT last("down") FROM "agent_status" WHERE $timeFilter '
            'GROUP BY "agent_id", "site_id"'
        ),
        window_s=300,
        threshold=0,
        compare="gt",
        pending="5m",
        severity="critical",
        summary="{{ $labels.agent_id }} is offline while its site is open",
        description=(
            "Agent {{ $labels.agent_id }} (site {{ $labels.site_id }}) has been offline "
            "for 5 minutes during its opening hours (its Last Will, or no birth since). "
            "Outside opening hours an offline booth is closed, never down. "
            "'fleet agent {{ $labels.agent_id }}' shows its last report."
        ),
        # No agent_status at all: no agent, or the fleet is not writing it (its own rule).
        no_data="OK",
    ),
    Rule(
        uid="vigie-sequence-gaps",
        title="Messages missing from an agent",
        query=(
            'SELECT last("seq_missing") FROM "agent_status" WHERE $timeFilter GROUP BY "agent_id"'
        ),
        window_s=300,
        threshold=0,
        compare="gt",
        pending="10m",
        severity="warning",
        summary="{{ $labels.agent_id }}: {{ $values.B.Value }} sequence numbers missing",
        description=(
            "Over the last hour, {{ $values.B.Value }} of {{ $labels.agent_id }}'s "
            "sequence numbers were neither stored nor counted as dropped by the agent: "
            "messages lost between its outbox and InfluxDB. 'fleet agent "
            "{{ $labels.agent_id }}' lists the gaps."
        ),
        no_data="OK",
    ),
    Rule(
        uid="vigie-messages-dropped",
        title="Agent dropped messages (outbox full)",
        query=(
            'SELECT spread("dropped_messages") FROM "agent_health" WHERE $timeFilter '
            'GROUP BY "agent_id"'
        ),
        window_s=3600,
        threshold=0,
        compare="gt",
        pending="0s",
        severity="warning",
        summary="{{ $labels.agent_id }} dropped {{ $values.B.Value }} messages in the last hour",
        description=(
            "The outbox of {{ $labels.agent_id }} had no room (its budget or the disk) "
            "and its overflow policy dropped {{ $values.B.Value }} messages in the last "
            "hour (docs/architecture.md, 'A full disk')."
        ),
        no_data="OK",
    ),
    Rule(
        uid="vigie-backlog-stuck",
        title="Agent backlog not draining",
        query=(
            'SELECT min("backlog_oldest_s") FROM "agent_health" WHERE $timeFilter '
            'GROUP BY "agent_id"'
        ),
        window_s=900,
        threshold=900,
        compare="gt",
        pending="5m",
        severity="warning",
        summary="{{ $labels.agent_id }}: messages wait in its outbox for over 15 minutes",
        description=(
            "{{ $labels.agent_id }} reports health, yet the oldest message in its "
            "outbox stayed older than 15 minutes for the last 15 minutes: its "
            "messages are not confirmed (broker rights, InfluxDB, the fleet service)."
        ),
        no_data="OK",
        reducer="min",
    ),
    Rule(
        uid="vigie-disk-low",
        title="Agent disk almost full",
        query=(
            'SELECT count("disk_low") FROM (SELECT last("disk_low") AS "disk_low" '
            'FROM "agent_health" WHERE $timeFilter GROUP BY "agent_id") '
            'WHERE "disk_low" = true GROUP BY "agent_id"'
        ),
        window_s=600,
        threshold=0,
        compare="gt",
        pending="10m",
        severity="warning",
        summary="{{ $labels.agent_id }} is short of disk space",
        description=(
            "The free space of {{ $labels.agent_id }}'s outbox file system is under its "
            "warning level (outbox.warn_free_bytes, 1 GiB by default). Under "
            "outbox.min_free_bytes its outbox starts dropping."
        ),
        # disk_low is a boolean field: only InfluxQL can test it (= true), so only
        # the agents short of disk come back, and no data is the normal case.
        no_data="OK",
    ),
)

INSTRUMENTS: Final = (
    Rule(
        uid="vigie-battery-low",
        title="Instrument battery low",
        query=(
            'SELECT last("battery_percent") FROM "device_status" WHERE $timeFilter '
            'GROUP BY "agent_id", "device", "kind"'
        ),
        window_s=900,
        threshold=20,
        compare="lt",
        pending="15m",
        severity="warning",
        summary="{{ $labels.agent_id }}/{{ $labels.device }}: battery at {{ $values.B.Value }} %",
        description=(
            "The {{ $labels.kind }} instrument {{ $labels.device }} of "
            "{{ $labels.agent_id }} reports a battery under 20 %."
        ),
        no_data="OK",
    ),
    Rule(
        uid="vigie-calibration-due",
        title="Instrument calibration due within 30 days",
        query=(
            'SELECT last("calibration_due_days") FROM "device_status" WHERE $timeFilter '
            'GROUP BY "agent_id", "device", "kind"'
        ),
        window_s=900,
        threshold=30,
        compare="lt",
        pending="10m",
        severity="warning",
        summary=(
            "{{ $labels.agent_id }}/{{ $labels.device }}: calibration due in "
            "{{ $values.B.Value }} days"
        ),
        description=(
            "The {{ $labels.kind }} instrument {{ $labels.device }} of "
            "{{ $labels.agent_id }} is due for calibration in {{ $values.B.Value }} days "
            "(negative: overdue)."
        ),
        no_data="OK",
    ),
)

FLEET: Final = (
    Rule(
        uid="vigie-status-stale",
        title="Fleet status not written",
        query='SELECT count("state") FROM "agent_status" WHERE $timeFilter',
        window_s=300,
        threshold=1,
        compare="lt",
        pending="5m",
        severity="critical",
        summary="No agent status written for 5 minutes",
        description=(
            "No fleet service instance wrote agent_status (every status.interval_s): "
            "the fleet service is stopped or cannot write to InfluxDB, and every other "
            "rule is blind."
        ),
        # Silence is the fault here.
        no_data="Alerting",
        reducer="sum",
    ),
    Rule(
        uid="vigie-rollout-halted",
        title="Rollout halted",
        query=(
            'SELECT count("state") FROM (SELECT last("state") AS "state" '
            'FROM "rollout_status" WHERE $timeFilter GROUP BY "rollout_id") '
            'WHERE "state" = \'halted\' GROUP BY "rollout_id"'
        ),
        window_s=300,
        threshold=0,
        compare="gt",
        pending="0s",
        severity="warning",
        summary="Rollout {{ $labels.rollout_id }} halted itself",
        description=(
            "More agents of rollout {{ $labels.rollout_id }} failed (rolled back or "
            "refused) than it allows. 'fleet rollout status {{ $labels.rollout_id }}' "
            "gives the reason; resume (excusing the failures) or abort."
        ),
        # state is a string: InfluxQL keeps the halted rollouts only (= 'halted').
        no_data="OK",
    ),
    Rule(
        uid="vigie-crl-expiring",
        title="Certificate revocation list expires soon",
        query='SELECT last("days_left") FROM "crl_status" WHERE $timeFilter',
        window_s=900,
        threshold=30,
        compare="lt",
        pending="0s",
        severity="critical",
        summary="The broker's CRL expires in {{ $values.B.Value }} days",
        description=(
            "When the revocation list expires the broker refuses every client. Renew "
            "it with 'fleet ca crl' (docs/security.md)."
        ),
        # Written only when status.crl_file is set.
        no_data="OK",
    ),
    Rule(
        uid="vigie-crl-unreadable",
        title="Certificate revocation list unreadable",
        query='SELECT last("readable") FROM "crl_status" WHERE $timeFilter',
        window_s=900,
        threshold=1,
        compare="lt",
        pending="10m",
        severity="critical",
        summary="The fleet cannot read the broker's CRL",
        description="status.crl_file is missing or not a CRL; its expiry is not watched.",
        no_data="OK",
    ),
)

#: (group name, evaluation interval, rules).
GROUPS: Final = (
    ("booths", "1m", BOOTHS),
    ("instruments", "5m", INSTRUMENTS),
    ("fleet", "1m", FLEET),
)


def _expressions() -> DataSourceRef:
    return DataSourceRef(type_val=EXPRESSIONS, uid=EXPRESSIONS)


def sdk_rule(rule: Rule) -> alerting.Rule:
    window = alerting_model.RelativeTimeRange(from_val=rule.window_s, to=0)
    reduce = (
        expr.TypeReduce()
        .ref_id("B")
        .datasource(_expressions())
        .expression("A")
        .reducer(rule.reducer)
        # A series with no value is no reading, not zero.
        .settings(expr.ExprTypeReduceSettings().mode("dropNN"))
    )
    threshold = (
        expr.TypeThreshold()
        .ref_id("C")
        .datasource(_expressions())
        .expression("B")
        .conditions(
            [
                expr.ExprTypeThresholdConditions().evaluator(
                    expr.ExprTypeThresholdConditionsEvaluator()
                    .type(rule.compare)
                    .params([rule.threshold])
                )
            ]
        )
    )
    return (
        alerting.Rule(rule.title)
        .uid(rule.uid)
        .condition("C")
        .queries(
            [
                alerting.Query("A")
                .datasource_uid(DATASOURCE_UID)
                .relative_time_range(window)
                .model(Query(rule.query).ref_id("A").for_alerting()),
                alerting.Query("B").datasource_uid(EXPRESSIONS).model(reduce),
                alerting.Query("C").datasource_uid(EXPRESSIONS).model(threshold),
            ]
        )
        .no_data_state(rule.no_data)
        .exec_err_state(EXEC_ERROR)
        .for_val(rule.pending)
        .labels({"severity": rule.severity})
        .annotations({"summary": rule.summary, "description": rule.description})
        .is_paused(False)
    )


def plain(value: object) -> Any:
    """An SDK object as JSON-like dicts and lists (what YAML is written from)."""
    return json.loads(json.dumps(value, cls=JSONEncoder))


#: A rule's keys in the provisioning file, in the order Grafana exports them.
FILE_RULE_KEYS: Final = (
    "uid",
    "title",
    "condition",
    "data",
    "noDataState",
    "execErrState",
    "for",
    "annotations",
    "labels",
    "isPaused",
)


#: A query's keys, likewise.
FILE_QUERY_KEYS: Final = ("refId", "relativeTimeRange", "datasourceUid", "model")


def file_rule(rule: alerting.Rule) -> dict[str, Any]:
    api = plain(rule.build())
    api["data"] = [
        {key: query[key] for key in FILE_QUERY_KEYS if key in query} for query in api["data"]
    ]
    return {key: api[key] for key in FILE_RULE_KEYS if key in api}


def rules_file() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": ORG,
                "name": name,
                "folder": FOLDER,
                "interval": interval,
                "rules": [file_rule(sdk_rule(rule)) for rule in rules],
            }
            for name, interval, rules in GROUPS
        ],
    }


CONTACT_POINT: Final = "vigie-operators"


def contact_points_file() -> dict[str, Any]:
    receiver = plain(
        alerting.ContactPoint()
        .uid("vigie-operators-email")
        .name(CONTACT_POINT)
        .type("email")
        # A placeholder (the .invalid domain never resolves): put the operators' list.
        .settings({"addresses": "vigie-operators@example.invalid", "singleEmail": True})
        .disable_resolve_message(False)
        .build()
    )
    del receiver["name"]
    return {
        "apiVersion": 1,
        "contactPoints": [{"orgId": ORG, "name": CONTACT_POINT, "receivers": [receiver]}],
    }


def policies_file() -> dict[str, Any]:
    critical = (
        alerting.NotificationPolicy()
        .receiver(CONTACT_POINT)
        .object_matchers([["severity", "=", "critical"]])
        .repeat_interval("1h")
    )
    root = (
        alerting.NotificationPolicy()
        .receiver(CONTACT_POINT)
        # One message per rule and site (a power cut takes a whole site down).
        .group_by(["grafana_folder", "alertname", "site_id"])
        .group_wait("30s")
        .group_interval("5m")
        .repeat_interval("4h")
        .routes([critical])
    )
    return {"apiVersion": 1, "policies": [{"orgId": ORG, **plain(root.build())}]}


def all_rules() -> list[Rule]:
    return [rule for _, _, rules in GROUPS for rule in rules]
