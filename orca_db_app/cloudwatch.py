"""A CloudWatch dashboard, alarms and Logs Insights queries for the retry
events of one database, as the metrics ``orca_db.logging.EmfFormatter``
writes and the lines ``JsonFormatter`` writes. Printed by ``manage.py
aurora_dashboard``; see docs/observability.md.

The metrics are those of the dimension set ``database, outcome`` (the
formatter's default), with ``function_name`` added for a Lambda function.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from orca_db.events import OUTCOMES
from orca_db.metrics_emf import DEFAULT_NAMESPACE

COLORS = {"recovered": "#2ca02c", "exhausted": "#d62728", "raised": "#ff7f0e"}


@dataclasses.dataclass(frozen=True)
class Target:
    """Whose metrics: a namespace, a database alias, optionally a function."""

    database: str
    namespace: str = DEFAULT_NAMESPACE
    function_name: str | None = None
    region: str = "us-east-1"

    @property
    def dimension_names(self) -> tuple[str, ...]:
        if self.function_name:
            return ("database", "function_name", "outcome")
        return ("database", "outcome")

    def dimensions(self, outcome: str) -> dict[str, str]:
        values = {"database": self.database, "outcome": outcome}
        if self.function_name:
            values["function_name"] = self.function_name
        return {name: values[name] for name in self.dimension_names}

    def widget_metric(self, name: str, outcome: str, **options: Any) -> list[Any]:
        flat: list[Any] = [self.namespace, name]
        for key, value in self.dimensions(outcome).items():
            flat += [key, value]
        return [*flat, options] if options else flat

    def metric(self, name: str, outcome: str) -> dict[str, Any]:
        """The metric as the CloudWatch API names one."""
        return {
            "Namespace": self.namespace,
            "MetricName": name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions(outcome).items()],
        }


def _quote(value: str) -> str:
    return json.dumps(value)  # a double-quoted string literal, escapes included


def logs_insights_queries(target: Target) -> dict[str, str]:
    """Queries over ``JsonFormatter`` lines: the trend, and the failures."""
    where = f'kind = "settled" and database = {_quote(target.database)}'
    return {
        "trend": (
            "fields @timestamp, outcome, elapsed_ms\n"
            f"| filter {where}\n"
            "| stats count(*) as events, pct(elapsed_ms, 99) as p99_ms, "
            "max(elapsed_ms) as max_ms by bin(5m), outcome"
        ),
        "failures": (
            "fields @timestamp, phase, outcome, attempts, elapsed_ms, error_type, sqlstate, "
            "error_message, statement, lambda_request_id\n"
            f'| filter {where} and outcome != "recovered"\n'
            "| sort @timestamp desc\n"
            "| limit 50"
        ),
    }


def dashboard(target: Target, log_group: str | None = None) -> dict[str, Any]:
    """A dashboard body for ``aws cloudwatch put-dashboard``."""
    common = {"region": target.region, "period": 60, "view": "timeSeries"}
    title = f"database {target.database!r}" + (
        f", function {target.function_name}" if target.function_name else ""
    )
    widgets: list[dict[str, Any]] = [
        {
            "type": "metric",
            "width": 12,
            "height": 6,
            "properties": {
                **common,
                "title": f"Retry events per minute, {title}",
                "stacked": True,
                "stat": "Sum",
                "metrics": [
                    target.widget_metric("RetryEvents", o, label=o, color=COLORS[o])
                    for o in OUTCOMES
                ],
                "yAxis": {"left": {"min": 0, "label": "events"}},
            },
        },
        {
            "type": "metric",
            "width": 12,
            "height": 6,
            "properties": {
                **common,
                "title": f"Recovery time (recovered operations), {title}",
                "metrics": [
                    target.widget_metric("RetryElapsed", "recovered", stat=s, label=s)
                    for s in ("p50", "p99", "Maximum")
                ],
                "yAxis": {"left": {"min": 0, "label": "ms"}},
            },
        },
        {
            "type": "metric",
            "width": 12,
            "height": 6,
            "properties": {
                **common,
                "title": f"Attempts per operation, {title}",
                "metrics": [
                    target.widget_metric("RetryAttempts", o, stat="Maximum", label=f"{o}, max")
                    for o in OUTCOMES
                ],
                "yAxis": {"left": {"min": 0, "label": "attempts"}},
            },
        },
    ]
    if log_group:
        query = logs_insights_queries(target)["failures"]
        widgets.append(
            {
                "type": "log",
                "width": 12,
                "height": 6,
                "properties": {
                    "region": target.region,
                    "title": f"Latest failed operations, {title}",
                    "query": f"SOURCE {_quote(log_group)} | {query}",
                    "view": "table",
                },
            }
        )
    for index, widget in enumerate(widgets):
        widget["x"], widget["y"] = (index % 2) * 12, (index // 2) * 6
    return {"start": "-PT6H", "periodOverride": "inherit", "widgets": widgets}


def alarms(
    target: Target,
    *,
    p99_ms: float = 5000,
    storm_events: int = 50,
    actions: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Alarm definitions, each the input of ``aws cloudwatch put-metric-alarm
    --cli-input-json``: retries exhausted (any, in 5 minutes), slow recovery
    (p99 over ``p99_ms`` in 2 of 3 five-minute periods), and a storm (over
    ``storm_events`` events of any outcome in 5 minutes)."""
    prefix = f"orca-db {target.database}" + (
        f" {target.function_name}" if target.function_name else ""
    )
    shared: dict[str, Any] = {"TreatMissingData": "notBreaching"}
    if actions:
        shared["AlarmActions"] = list(actions)

    total = [
        {
            "Id": o,
            "MetricStat": {"Metric": target.metric("RetryEvents", o), "Period": 300, "Stat": "Sum"},
            "ReturnData": False,
        }
        for o in OUTCOMES
    ]
    total.append(
        {
            "Id": "events",
            "Expression": "SUM([" + ", ".join(f"FILL({o}, 0)" for o in OUTCOMES) + "])",
            "Label": "Retry events, all outcomes",
            "ReturnData": True,
        }
    )
    return [
        {
            "AlarmName": f"{prefix} retries exhausted",
            "AlarmDescription": (
                "A database operation ran out of retry time (RetriesExhausted): the "
                "application saw an error. See docs/observability.md."
            ),
            **target.metric("RetryEvents", "exhausted"),
            "Period": 300,
            "Statistic": "Sum",
            "EvaluationPeriods": 1,
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            **shared,
        },
        {
            "AlarmName": f"{prefix} slow recovery",
            "AlarmDescription": (
                f"p99 recovery time above {p99_ms:g} ms: scale events or resumes are "
                "holding requests. See docs/observability.md."
            ),
            **target.metric("RetryElapsed", "recovered"),
            "Period": 300,
            "ExtendedStatistic": "p99",
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 2,
            "Threshold": p99_ms,
            "ComparisonOperator": "GreaterThanThreshold",
            **shared,
        },
        {
            "AlarmName": f"{prefix} retry storm",
            "AlarmDescription": (
                f"More than {storm_events} retry events in 5 minutes. See docs/observability.md."
            ),
            "Metrics": total,
            "EvaluationPeriods": 1,
            "Threshold": storm_events,
            "ComparisonOperator": "GreaterThanThreshold",
            **shared,
        },
    ]


def configured_formatters(logging_setting: Any) -> list[dict[str, Any]]:
    """The ``EmfFormatter`` entries of a ``LOGGING`` setting (their options)."""
    if not isinstance(logging_setting, Mapping):
        return []
    found = []
    for options in (logging_setting.get("formatters") or {}).values():
        if isinstance(options, Mapping) and "orca_db.logging.EmfFormatter" in (
            options.get("()"),
            options.get("class"),
        ):
            found.append(dict(options))
    return found
