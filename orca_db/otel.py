"""Retry events as OpenTelemetry span events and metrics.

Each settled retry event becomes:

- an event named ``orca_db.retry`` on the span current when the operation
  settled (the application's request or task span: the event is delivered
  in the thread and context that made the database call), with the
  database alias, phase, outcome, attempts, elapsed milliseconds, error type
  and SQLSTATE; never the statement, its parameters or the driver's message;
- a point on three instruments of the meter ``orca_db``: the counter
  ``orca_db.retry.events`` and the histograms ``orca_db.retry.duration``
  (seconds) and ``orca_db.retry.attempts``, with the low-cardinality
  attributes database, phase and outcome.

Only ``opentelemetry-api`` is used (``pip install orca-db[otel]``); the
application installs the SDK and configures exporters. Nothing here imports
OpenTelemetry until the first :func:`record`; whether to record is the
host's decision (Django's ``ORCA_DB_OPENTELEMETRY`` setting, read by
``orca_db.signals.record_in_opentelemetry``). See docs/observability.md.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from .events import SettledEvent

logger = logging.getLogger("orca_db.events")

SETTING = "ORCA_DB_OPENTELEMETRY"
SPAN_EVENT = "orca_db.retry"
#: Histogram buckets (advisory; the application's views may override them):
#: a scale event recovers in tens of milliseconds, a paused cluster in
#: 15-40 s, the default deadline is 60 s.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0)
ATTEMPT_BUCKETS = (1, 2, 3, 5, 10, 20, 50, 100)


def metric_attributes(event: SettledEvent) -> dict[str, str]:
    return {
        "orca_db.database": event.database,
        "orca_db.phase": event.phase,
        "orca_db.outcome": event.outcome,
    }


def span_event_attributes(event: SettledEvent) -> dict[str, str | int | float]:
    attributes: dict[str, str | int | float] = {
        **metric_attributes(event),
        "orca_db.attempts": event.attempts,
        "orca_db.elapsed_ms": round(event.elapsed_ms, 1),
        "error.type": event.error_type,
    }
    if event.sqlstate:
        # OpenTelemetry's name for a database's status code; PostgreSQL's is
        # the SQLSTATE.
        attributes["db.response.status_code"] = event.sqlstate
    return attributes


def record(event: SettledEvent) -> None:
    """Add ``event`` to the current span and to the metrics, whatever the
    setting says (for applications that connect it themselves)."""
    instruments = _instruments()
    if instruments is None:
        return
    span = instruments.get_current_span()
    if span.is_recording():
        span.add_event(SPAN_EVENT, span_event_attributes(event))
    attributes = metric_attributes(event)
    instruments.events.add(1, attributes)
    instruments.duration.record(event.elapsed_ms / 1000, attributes)
    instruments.attempts.record(event.attempts, attributes)


class _Instruments:
    # A plain class, not a dataclass: making a dataclass costs more than the
    # rest of this module's import, which every orca_db_app start-up pays.
    __slots__ = ("get_current_span", "events", "duration", "attempts")

    def __init__(self, get_current_span: Any, events: Any, duration: Any, attempts: Any):
        self.get_current_span = get_current_span
        self.events = events
        self.duration = duration
        self.attempts = attempts


@functools.cache
def _instruments() -> _Instruments | None:
    """The meter's instruments, made on first use; ``None`` (and one warning
    per process) when ``opentelemetry-api`` is not installed."""
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        logger.warning(
            "%s is on but opentelemetry-api is not installed: retry events are "
            "not sent to OpenTelemetry (pip install 'orca-db[otel]').",
            SETTING,
            extra={"orca_db": {"kind": "otel_unavailable"}},
        )
        return None
    from . import __version__

    # Instruments from the global meter follow a MeterProvider the
    # application sets later (the API proxies them until then).
    meter = metrics.get_meter("orca_db", __version__)
    return _Instruments(
        get_current_span=trace.get_current_span,
        events=meter.create_counter(
            "orca_db.retry.events",
            unit="{event}",
            description="Database operations that met a retryable failure, once settled.",
        ),
        duration=meter.create_histogram(
            "orca_db.retry.duration",
            unit="s",
            description="Time from an operation's first attempt to its outcome.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        ),
        attempts=meter.create_histogram(
            "orca_db.retry.attempts",
            unit="{attempt}",
            description="Attempts an operation that met a retryable failure made.",
            explicit_bucket_boundaries_advisory=ATTEMPT_BUCKETS,
        ),
    )
