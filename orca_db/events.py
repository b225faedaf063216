"""The record of one operation that met a scale event, and its delivery.

:func:`deliver` logs each settled event and calls the listeners hosts and
applications added with :func:`listen`: the Django host's ``retry_event``
signal (``orca_db.signals``, listening from its import on), the EMF writer
of ``orca_db.logging.emf_events_to``. Events are the same whatever the host,
so every listener hears every event of the process.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import functools
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("orca_db.events")

#: The AWS Lambda request id of the invocation running now, if any; set by
#: ``orca_db.aws_lambda.database_handler`` and stored with each event.
lambda_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "orca_db_lambda_request_id", default=None
)

PHASES = ("connect", "execute", "transaction")
OUTCOMES = ("recovered", "exhausted", "raised")


@functools.cache
def _hostname() -> str:
    return socket.gethostname()


@dataclasses.dataclass
class SettledEvent:
    """One operation that met at least one retryable failure."""

    database: str
    phase: str
    occurred_at: datetime.datetime
    error_type: str = ""
    sqlstate: str | None = None
    #: The last driver error message, scrubbed of secrets and row values.
    message: str = ""
    attempts: int = 0
    outcome: str = ""
    elapsed_ms: float = 0.0
    #: The SQL text with literals replaced by ``?``; never the parameters.
    statement: str = ""
    host: str = dataclasses.field(default_factory=_hostname)
    pid: int = dataclasses.field(default_factory=os.getpid)
    lambda_request_id: str | None = dataclasses.field(default_factory=lambda_request_id.get)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["occurred_at"] = self.occurred_at.isoformat()
        data["elapsed_ms"] = round(self.elapsed_ms, 1)
        return data


_LEVELS = {"recovered": logging.WARNING, "exhausted": logging.ERROR, "raised": logging.ERROR}

Listener = Callable[[SettledEvent], None]
#: Called with each settled event, in the thread of the operation, in the
#: order added. A tuple, replaced whole: delivering reads it without a lock.
_listeners: tuple[Listener, ...] = ()


def listen(listener: Listener) -> None:
    """Call ``listener(event)`` with every settled event from now on."""
    global _listeners
    _listeners = (*_listeners, listener)


def unlisten(listener: Listener) -> None:
    """Stop calling ``listener`` (added by :func:`listen`)."""
    global _listeners
    _listeners = tuple(known for known in _listeners if known != listener)


def deliver(event: SettledEvent) -> None:
    """Log the settled event and call the listeners; never raise."""
    logger.log(
        _LEVELS.get(event.outcome, logging.WARNING),
        "%s on database %r %s after %d attempt(s) in %.0f ms: %s",
        event.phase,
        event.database,
        event.outcome,
        event.attempts,
        event.elapsed_ms,
        event.error_type,
        extra={"orca_db": {"kind": "settled", **event.as_dict()}},
    )
    for listener in _listeners:
        try:
            listener(event)
        except Exception as error:
            logger.error(
                "retry event listener %r failed: %s",
                listener,
                type(error).__name__,
                exc_info=error,
            )
