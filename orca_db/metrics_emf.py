"""Retry events as CloudWatch metrics, in the Embedded Metric Format (EMF).

An EMF document is a JSON log line with an ``_aws`` member telling CloudWatch
Logs which members of the line are metrics and which are their dimensions;
Lambda (from stdout) and the CloudWatch agent turn such lines into metrics
with no API call. One settled retry event gives three metrics:

- ``RetryEvents`` (Count): 1 per event, summed into events per period;
- ``RetryElapsed`` (Milliseconds): from the first failure to the outcome;
- ``RetryAttempts`` (Count): attempts the operation made, the first included.

Dimensions come from a closed set of low-cardinality fields (each distinct
combination of dimension values is a custom metric CloudWatch bills for):
the database alias, the phase and the outcome, and in Lambda the function's
name. The error type, SQLSTATE, statement and message stay plain members of
the line: searchable in Logs Insights, never metric identities.

Written by hand from AWS's specification rather than with
``aws-embedded-metrics``: that package flushes through ``asyncio`` and, off
Lambda, sends to a CloudWatch agent over TCP/UDP after probing the
environment; a log line written where the application's logging writes it
is all EMF needs. See docs/observability.md.
"""

from __future__ import annotations

import datetime
import os
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

#: Dimension names an operator may choose from, and where each value comes
#: from: a field of the event, or (``function_name``) the Lambda runtime.
DIMENSIONS = ("database", "phase", "outcome", "function_name")
#: Each combination of database and outcome is one metric of each name: the
#: least that alarms on exhausted retries and recovery time per database need.
DEFAULT_DIMENSIONS: tuple[tuple[str, ...], ...] = (("database", "outcome"),)
DEFAULT_NAMESPACE = "orca-db"
#: (metric name, CloudWatch unit).
METRICS = (
    ("RetryEvents", "Count"),
    ("RetryElapsed", "Milliseconds"),
    ("RetryAttempts", "Count"),
)
LAMBDA_FUNCTION_ENV = "AWS_LAMBDA_FUNCTION_NAME"

# CloudWatch's rules for namespaces: 1-255 characters of this alphabet, and
# the AWS/ prefix is AWS's own.
_NAMESPACE = re.compile(r"^[A-Za-z0-9._#:/ -]{1,255}$")


def parse_namespace(value: Any) -> str:
    if not isinstance(value, str) or not _NAMESPACE.match(value) or value.startswith("AWS/"):
        raise ValueError(
            f"EMF namespace must be 1-255 letters, digits, spaces or . _ # : / - "
            f"and not start with 'AWS/', got {value!r}."
        )
    return value


def parse_dimensions(value: Any) -> tuple[tuple[str, ...], ...]:
    """Validate ``dimensions``: a list of dimension sets, each a list of names
    from :data:`DIMENSIONS` (an empty set aggregates over everything)."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"EMF dimensions must be a list of lists of names, got {value!r}.")
    sets: list[tuple[str, ...]] = []
    for item in value:
        if isinstance(item, str) or not isinstance(item, Iterable):
            raise ValueError(
                f"EMF dimensions must be a list of lists of names; {item!r} is not a list."
            )
        names = tuple(item)
        for name in names:
            if name not in DIMENSIONS:
                raise ValueError(
                    f"Unknown EMF dimension {name!r}; choose from {', '.join(DIMENSIONS)} "
                    "(statements, messages and error types are never dimensions)."
                )
        if len(set(names)) != len(names):
            raise ValueError(f"EMF dimension set {list(names)!r} names a dimension twice.")
        sets.append(names)
    if not sets:
        raise ValueError("EMF dimensions must contain at least one dimension set.")
    return tuple(sets)


def function_name() -> str | None:
    """The Lambda function running this process (the runtime sets it)."""
    return os.environ.get(LAMBDA_FUNCTION_ENV) or None


def settled_at_ms(event: Mapping[str, Any]) -> int:
    """When the event settled, in milliseconds since the epoch: the
    operation's start plus its elapsed time (now, if the event lacks them)."""
    try:
        started = datetime.datetime.fromisoformat(str(event["occurred_at"]))
        elapsed = float(event.get("elapsed_ms") or 0)
    except (KeyError, TypeError, ValueError):
        return int(time.time() * 1000)
    return int(started.timestamp() * 1000 + elapsed)


class Directive:
    """How to turn settled events into metrics: a namespace and the dimension
    sets, validated once (when logging is configured)."""

    def __init__(
        self,
        namespace: str = DEFAULT_NAMESPACE,
        dimensions: Iterable[Iterable[str]] = DEFAULT_DIMENSIONS,
    ) -> None:
        self.namespace = parse_namespace(namespace)
        self.dimensions = parse_dimensions(dimensions)

    def members(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The members to add to ``event`` (a settled event's fields, as
        :meth:`orca_db.events.SettledEvent.as_dict` gives them) to make it an EMF
        document: ``_aws``, the metric values and any dimension value the
        event lacks."""
        values: dict[str, str] = {}
        for name in ("database", "phase", "outcome"):
            values[name] = str(event.get(name) or "unknown")
        function = function_name()
        if function is not None:
            values["function_name"] = function
        # Outside Lambda a set naming function_name is emitted without it
        # (the same metric a set without it gives; duplicates dropped).
        sets: list[list[str]] = []
        for names in self.dimensions:
            kept = [name for name in names if name in values]
            if kept not in sets:
                sets.append(kept)
        used = {name for names in sets for name in names}
        members: dict[str, Any] = {
            "_aws": {
                "Timestamp": settled_at_ms(event),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": sets,
                        "Metrics": [{"Name": name, "Unit": unit} for name, unit in METRICS],
                    }
                ],
            },
        }
        members.update({name: values[name] for name in sorted(used)})
        members["RetryEvents"] = 1
        members["RetryElapsed"] = round(float(event.get("elapsed_ms") or 0), 1)
        members["RetryAttempts"] = int(event.get("attempts") or 0)
        return members
