"""Django signals for feeding retry events to storage, metrics and alerting.

A Django host module (docs/architecture.md): the core calls the listeners
of ``orca_db.events``; from this module's import on, one of them sends
``retry_event``. (A receiver can only be connected after this module is
imported, so no event a receiver could hear is missed.)

``retry_event`` is sent once per operation that met at least one retryable
failure, after the operation settled (recovered, exhausted or raised), with
``event``: an :class:`orca_db.events.SettledEvent`. Receivers must not raise;
an exception from one is logged and swallowed so that it never reaches the
application's database call.

``invocation_finished`` is sent by ``orca_db.aws_lambda.database_handler``
after each invocation's handler returned (or raised), while what is left
of the function's time still bounds every retry: ``orca_db_app`` writes the
events it had to defer then, if there is time.

:func:`record_in_opentelemetry` is the receiver that sends events to
OpenTelemetry when ``settings.ORCA_DB_OPENTELEMETRY`` is on
(``orca_db_app`` connects it; docs/observability.md).
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

from . import events, otel

logger = logging.getLogger("orca_db.events")

retry_event = Signal()
invocation_finished = Signal()


def _send_retry_event(event: events.SettledEvent) -> None:
    for receiver, response in retry_event.send_robust(sender=events.SettledEvent, event=event):
        if isinstance(response, Exception):
            logger.error(
                "retry_event receiver %r failed: %s",
                receiver,
                type(response).__name__,
                exc_info=response,
            )


events.listen(_send_retry_event)


def opentelemetry_enabled() -> bool:
    """``settings.ORCA_DB_OPENTELEMETRY``, read now (``override_settings``
    works); only ``True`` switches it on (orca_db.W040 reports other values)."""
    from django.conf import settings

    return getattr(settings, otel.SETTING, False) is True


def record_in_opentelemetry(sender: Any, event: events.SettledEvent, **kwargs: Any) -> None:
    """The ``retry_event`` receiver ``orca_db_app`` connects: records the
    event in OpenTelemetry (``orca_db.otel.record``) when the setting is on."""
    if opentelemetry_enabled():
        otel.record(event)
