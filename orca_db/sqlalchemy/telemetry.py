"""Retry events of the SQLAlchemy plugin in OpenTelemetry, without Django.

The plugin's events are the Django host's (``orca_db.events``): one
``orca_db.retry`` log record per retry and one ``orca_db.events`` settled
record per operation (recovered, exhausted, or raised: a refusal such as
``TransactionRolledBack``, ``OutcomeUnknown``, ``SessionStateLost``,
``DeadlineExceeded``), written as JSON lines or CloudWatch EMF documents by
``orca_db.logging.JsonFormatter`` / ``EmfFormatter`` once the application's
logging uses them, and given to the listeners of ``orca_db.events``.

The Django host switches OpenTelemetry on with
``settings.ORCA_DB_OPENTELEMETRY``; a SQLAlchemy application, which has no
settings, calls :func:`use_opentelemetry` once at start-up: each settled
event then becomes a span event on the current span and points on the
``orca_db`` meter (:func:`orca_db.otel.record`).
"""

from __future__ import annotations

from typing import Any


def use_opentelemetry(enabled: bool = True) -> None:
    """Record every settled retry event in OpenTelemetry (``enabled``), or
    stop doing so. Needs ``opentelemetry-api`` (``orca-db[otel]``); the
    application configures the SDK and its exporters. One listener per
    process, however often it is switched on."""
    from .. import events

    events.unlisten(_record)
    if enabled:
        events.listen(_record)


def _record(event: Any) -> None:
    from ..otel import record

    record(event)
