"""``manage.py aurora_dashboard``: the dashboard, alarms and queries it prints
name exactly the metrics ``EmfFormatter`` writes and the fields
``JsonFormatter`` writes."""

from __future__ import annotations

import datetime
import io
import json

import pytest
from django.core.management import CommandError, call_command

from orca_db.events import OUTCOMES, SettledEvent, deliver
from orca_db.logging import EmfFormatter, JsonFormatter
from tests.observability_helpers import assert_emf_document, captured, lines

NAMESPACE = "ORCA/Aurora"
#: What ``aws cloudwatch put-metric-alarm --cli-input-json`` accepts.
PUT_METRIC_ALARM = {
    "AlarmName", "AlarmDescription", "ActionsEnabled", "OKActions", "AlarmActions",
    "InsufficientDataActions", "MetricName", "Namespace", "Statistic", "ExtendedStatistic",
    "Dimensions", "Period", "Unit", "EvaluationPeriods", "DatapointsToAlarm", "Threshold",
    "ComparisonOperator", "TreatMissingData", "EvaluateLowSampleCountPercentile", "Metrics",
    "Tags", "ThresholdMetricId",
}  # fmt: skip


def dashboard_command(*args: str) -> tuple[object, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("aurora_dashboard", *args, stdout=out, stderr=err)
    return json.loads(out.getvalue()), err.getvalue()


def event(outcome: str, database: str = "default") -> SettledEvent:
    return SettledEvent(
        database=database,
        phase="execute",
        outcome=outcome,
        attempts=3,
        elapsed_ms=120.0,
        error_type="AdminShutdown",
        sqlstate="57P01",
        occurred_at=datetime.datetime.now(datetime.UTC),
    )


def emitted(formatter: EmfFormatter, database: str = "default") -> set[tuple]:
    """The metrics (namespace, name, dimensions) the formatter's lines for
    events of each outcome make CloudWatch create."""
    identities = set()
    for outcome in OUTCOMES:
        document = assert_emf_document(formatter.format_event(event(outcome, database)))
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for names in directive["Dimensions"]:
                dimensions = frozenset((name, document[name]) for name in names)
                for metric in directive["Metrics"]:
                    identities.add((directive["Namespace"], metric["Name"], dimensions))
    return identities


def widget_metrics(dashboard: dict) -> set[tuple]:
    found = set()
    for widget in dashboard["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            flat = [item for item in entry if not isinstance(item, dict)]
            namespace, name, rest = flat[0], flat[1], flat[2:]
            found.add((namespace, name, frozenset(zip(rest[::2], rest[1::2], strict=True))))
    return found


def alarm_metrics(alarms: list[dict]) -> set[tuple]:
    found = set()
    for alarm in alarms:
        metrics = [m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m]
        if "MetricName" in alarm:
            metrics.append(alarm)
        assert metrics, alarm
        for metric in metrics:
            dimensions = frozenset((d["Name"], d["Value"]) for d in metric["Dimensions"])
            found.add((metric["Namespace"], metric["MetricName"], dimensions))
    return found


def test_dashboard_and_alarms_read_the_metrics_the_formatter_writes():
    printed, err = dashboard_command("--namespace", NAMESPACE)

    assert set(printed) == {"dashboard", "alarms", "logs_insights"} and err == ""
    metrics = emitted(EmfFormatter(namespace=NAMESPACE))
    shown = widget_metrics(printed["dashboard"])
    assert shown and shown <= metrics
    assert {name for _, name, _ in shown} == {"RetryEvents", "RetryElapsed", "RetryAttempts"}
    alarmed = alarm_metrics(printed["alarms"])
    assert alarmed and alarmed <= metrics


def test_alarms_are_put_metric_alarm_input():
    alarms, _ = dashboard_command(
        "--part", "alarms", "--p99-ms", "2500", "--alarm-action", "arn:aws:sns:eu-west-1:1:ops"
    )
    assert [a["AlarmName"] for a in alarms] == [
        "orca-db default retries exhausted",
        "orca-db default slow recovery",
        "orca-db default retry storm",
    ]
    for alarm in alarms:
        assert set(alarm) <= PUT_METRIC_ALARM
        assert alarm["AlarmActions"] == ["arn:aws:sns:eu-west-1:1:ops"]
        assert alarm["TreatMissingData"] == "notBreaching"
    exhausted, slow, storm = alarms
    assert (exhausted["MetricName"], exhausted["Statistic"], exhausted["Period"]) == (
        "RetryEvents",
        "Sum",
        300,
    )
    assert {"Name": "outcome", "Value": "exhausted"} in exhausted["Dimensions"]
    assert (exhausted["Threshold"], exhausted["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert (slow["MetricName"], slow["ExtendedStatistic"], slow["Threshold"]) == (
        "RetryElapsed",
        "p99",
        2500,
    )
    [expression] = [m for m in storm["Metrics"] if "Expression" in m]
    assert expression["ReturnData"] is True
    for outcome in OUTCOMES:
        assert f"FILL({outcome}, 0)" in expression["Expression"]


def test_lambda_function_metrics(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orca-recovery")
    formatter = EmfFormatter(dimensions=[["database", "function_name", "outcome"]])

    printed, _ = dashboard_command("--function-name", "orca-recovery")

    metrics = emitted(formatter)
    assert widget_metrics(printed["dashboard"]) <= metrics
    assert alarm_metrics(printed["alarms"]) <= metrics
    assert printed["alarms"][0]["AlarmName"] == "orca-db default orca-recovery retries exhausted"


def test_namespace_comes_from_the_logging_setting(settings):
    settings.LOGGING = {
        "version": 1,
        "formatters": {
            "emf": {
                "()": "orca_db.logging.EmfFormatter",
                "namespace": NAMESPACE,
                "dimensions": [["database", "phase", "outcome"]],
            }
        },
    }
    dashboard, err = dashboard_command("--part", "dashboard")

    assert {namespace for namespace, _, _ in widget_metrics(dashboard)} == {NAMESPACE}
    # Its dimension sets lack database, outcome: the widgets would stay empty.
    assert "no EmfFormatter in LOGGING writes namespace 'ORCA/Aurora'" in err

    settings.LOGGING["formatters"]["emf"]["dimensions"].append(["outcome", "database"])
    _, err = dashboard_command("--part", "dashboard")
    assert err == ""


def test_log_widget_and_queries_read_the_json_lines():
    dashboard, _ = dashboard_command("--part", "dashboard", "--log-group", "/aws/lambda/orca")
    [log_widget] = [w for w in dashboard["widgets"] if w["type"] == "log"]
    assert log_widget["properties"]["query"].startswith('SOURCE "/aws/lambda/orca" | fields ')

    out = io.StringIO()
    call_command("aurora_dashboard", "--part", "queries", stdout=out)
    blocks = [block.split("\n", 1) for block in out.getvalue().strip().split("\n\n")]
    queries = {comment.removeprefix("# "): query for comment, query in blocks}
    everything, _ = dashboard_command()
    assert queries == everything["logs_insights"]
    assert set(queries) == {"trend", "failures"}
    with captured(JsonFormatter()) as stream:
        deliver(event("exhausted", database="elsewhere"))
    [line] = [line for line in lines(stream) if line.get("kind") == "settled"]
    for name, query in queries.items():
        assert 'kind = "settled" and database = "default"' in query, name
        fields = query.split("\n", 1)[0].removeprefix("fields ").split(", ")
        assert fields[0] == "@timestamp"
        assert set(fields[1:]) <= set(line), name
    assert "pct(elapsed_ms, 99)" in queries["trend"]


def test_widgets_do_not_overlap():
    dashboard, _ = dashboard_command("--part", "dashboard", "--log-group", "g")
    cells = set()
    for widget in dashboard["widgets"]:
        for x in range(widget["x"], widget["x"] + widget["width"]):
            for y in range(widget["y"], widget["y"] + widget["height"]):
                assert (x, y) not in cells
                cells.add((x, y))
        assert widget["x"] + widget["width"] <= 24


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--database", "nope"], "Database alias 'nope' does not exist"),
        (["--namespace", "AWS/RDS"], "--namespace: EMF namespace"),
        (["--p99-ms", "0"], "--p99-ms must be positive"),
    ],
)
def test_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message) as raised:
        dashboard_command(*args)
    assert raised.value.returncode == 2  # docs/commands.md#exit-codes
