"""``manage.py aurora_dashboard``: print a CloudWatch dashboard, alarms and
Logs Insights queries for one database's retry events, as JSON ready for
``aws cloudwatch put-dashboard`` / ``put-metric-alarm --cli-input-json``.
See docs/observability.md."""

from __future__ import annotations

import json
import os
from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser

from orca_db.metrics_emf import DEFAULT_DIMENSIONS, DEFAULT_NAMESPACE, parse_namespace
from orca_db_app import cloudwatch
from orca_db_app.management.base import DatabaseCommand, usage_error

PARTS = ("all", "dashboard", "alarms", "queries")


class Command(DatabaseCommand):
    help = (
        "Print a CloudWatch dashboard body, alarm definitions and Logs Insights queries "
        "for the retry events of one database (EMF metrics from "
        "orca_db.logging.EmfFormatter, JSON lines from JsonFormatter)."
    )
    # It prints JSON always and needs no connection: any engine will do.
    offers_json = False
    requires_postgresql = False

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--namespace",
            help="The metrics' namespace (default: the EmfFormatter's in LOGGING, "
            f"else {DEFAULT_NAMESPACE!r}).",
        )
        parser.add_argument(
            "--function-name",
            help="A Lambda function's name: metrics of the dimension set "
            "database, function_name, outcome.",
        )
        parser.add_argument(
            "--region",
            default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            help="The dashboard's region (default: AWS_REGION, else us-east-1).",
        )
        parser.add_argument(
            "--log-group", help="Add a widget listing failed operations from this log group."
        )
        parser.add_argument(
            "--p99-ms",
            type=float,
            default=5000,
            help="Slow-recovery alarm threshold, ms (default 5000).",
        )
        parser.add_argument(
            "--storm-events",
            type=int,
            default=50,
            help="Retry-storm alarm threshold, events in 5 minutes (default 50).",
        )
        parser.add_argument(
            "--alarm-action",
            action="append",
            default=[],
            help="An ARN (an SNS topic, say) each alarm notifies; repeatable.",
        )
        parser.add_argument(
            "--part", choices=PARTS, default="all", help="What to print (default all)."
        )

    def handle(
        self,
        *args: Any,
        database: str,
        namespace: str | None,
        function_name: str | None,
        region: str | None,
        log_group: str | None,
        p99_ms: float,
        storm_events: int,
        alarm_action: list[str],
        part: str,
        **options: Any,
    ) -> None:
        self.database_alias(database)
        if p99_ms <= 0 or storm_events < 0:
            raise usage_error("--p99-ms must be positive and --storm-events not negative.")
        configured = cloudwatch.configured_formatters(getattr(settings, "LOGGING", None))
        if namespace is None:
            namespaces = {f.get("namespace", DEFAULT_NAMESPACE) for f in configured}
            namespace = namespaces.pop() if len(namespaces) == 1 else DEFAULT_NAMESPACE
        try:
            namespace = parse_namespace(namespace)
        except ValueError as error:
            raise usage_error(f"--namespace: {error}") from None
        target = cloudwatch.Target(database, namespace, function_name, region or "us-east-1")
        self._warn_unless_emitted(target, configured)

        output: dict[str, Any] = {}
        if part in ("all", "dashboard"):
            output["dashboard"] = cloudwatch.dashboard(target, log_group)
        if part in ("all", "alarms"):
            output["alarms"] = cloudwatch.alarms(
                target, p99_ms=p99_ms, storm_events=storm_events, actions=alarm_action
            )
        if part in ("all", "queries"):
            output["logs_insights"] = cloudwatch.logs_insights_queries(target)
        if part == "queries":
            # Plain text to paste into Logs Insights, which skips # lines.
            self.stdout.write(
                "\n\n".join(f"# {name}\n{query}" for name, query in output["logs_insights"].items())
            )
            return
        # One part alone is printed bare, ready to pass to the AWS CLI.
        self.stdout.write(json.dumps(output if part == "all" else output.popitem()[1], indent=2))

    def _warn_unless_emitted(self, target: cloudwatch.Target, configured: list[dict]) -> None:
        """Say so when no EmfFormatter in LOGGING writes the metrics shown."""
        wanted = set(target.dimension_names)
        for options in configured:
            if options.get("namespace", DEFAULT_NAMESPACE) != target.namespace:
                continue
            sets = options.get("dimensions", DEFAULT_DIMENSIONS)
            if any(set(names) == wanted for names in sets):
                return
        if configured:
            self.stderr.write(
                f"Note: no EmfFormatter in LOGGING writes namespace {target.namespace!r} "
                f"with the dimension set {list(target.dimension_names)}; add it to its "
                "'dimensions' or these widgets and alarms stay empty."
            )
