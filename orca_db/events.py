"""The record of one operation that met a scale event, and its delivery."""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import functools
import logging
import os
import socket
from typing import Any

from .signals import retry_event

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


def deliver(event: SettledEvent) -> None:
    """Log the settled event and send ``retry_event``; never raise."""
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
    for receiver, response in retry_event.send_robust(sender=SettledEvent, event=event):
        if isinstance(response, Exception):
            logger.error(
                "retry_event receiver %r failed: %s",
                receiver,
                type(response).__name__,
                exc_info=response,
            )
