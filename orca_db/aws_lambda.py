"""AWS Lambda handlers that use the database: :func:`database_handler`.

Lambda freezes the process between invocations and may thaw it much later;
the connections it held were cut meanwhile, often silently. A raw handler
never sends Django's ``request_finished``, so nothing closes them; an open
connection, even idle, also keeps an Aurora Serverless v2 cluster from
pausing. And a retry that outlasts the function's remaining time does not
end in an error the code can handle: Lambda just kills the function.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .events import lambda_request_id
from .retry import deadline_cap
from .signals import invocation_finished

logger = logging.getLogger("orca_db.aws_lambda")

T = TypeVar("T")

#: Time kept back from the function's remaining time: retries stop this much
#: before Lambda's own timeout, leaving room to raise, log and return.
DEFAULT_MARGIN_MS = 1000


def database_handler(
    handler: Callable[[Any, Any], T] | None = None,
    /,
    *,
    margin_ms: int = DEFAULT_MARGIN_MS,
) -> Any:
    """Decorate a Lambda handler ``(event, context)`` that uses Django's
    database connections::

        @database_handler
        def handler(event, context): ...

        @database_handler(margin_ms=2000)
        def handler(event, context): ...

    Before the invocation it closes every connection left from before (made
    during init, or from before a freeze: a thawed socket cannot be trusted
    even when it looks alive); after it, also when the handler raises, it
    closes every connection. During the invocation every retry deadline is
    capped at ``context.get_remaining_time_in_millis() - margin_ms``, so a
    long outage ends in ``RetriesExhausted`` before Lambda's timeout, and
    every retry event carries ``context.aws_request_id``.
    """
    if margin_ms < 0:
        raise ValueError(f"margin_ms must not be negative, got {margin_ms!r}.")
    if handler is None:
        return functools.partial(_decorate, margin_ms=margin_ms)
    return _decorate(handler, margin_ms=margin_ms)


def _decorate(handler: Callable[[Any, Any], T], margin_ms: int) -> Callable[[Any, Any], T]:
    @functools.wraps(handler)
    def invoke(event: Any, context: Any) -> T:
        with invocation(context, margin_ms=margin_ms):
            return handler(event, context)

    return invoke


@contextlib.contextmanager
def invocation(context: Any, *, margin_ms: int = DEFAULT_MARGIN_MS) -> Iterator[None]:
    """What :func:`database_handler` does around a handler, as a context
    manager (for frameworks that call the handler themselves)."""
    token = lambda_request_id.set(getattr(context, "aws_request_id", None))
    try:
        close_connections()
        with _capped(context, margin_ms):
            try:
                yield
            finally:
                _finished()
    finally:
        try:
            close_connections()
        finally:
            lambda_request_id.reset(token)


def _finished() -> None:
    for receiver, response in invocation_finished.send_robust(sender=database_handler):
        if isinstance(response, Exception):
            logger.warning("invocation_finished receiver %r failed", receiver, exc_info=response)


def _capped(context: Any, margin_ms: int) -> contextlib.AbstractContextManager:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return contextlib.nullcontext()  # not a Lambda context: no cap
    return deadline_cap(max(0, remaining() - margin_ms) / 1000)


def close_connections() -> None:
    """Close every database connection of this thread that is open and not
    inside an atomic block (a caller's transaction is left alone), and
    Django's psycopg 3 pools, which would keep connections open."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            continue
        try:
            connection.close()
            if connection.settings_dict.get("OPTIONS", {}).get("pool"):
                connection.close_pool()  # type: ignore[attr-defined]  # PostgreSQL's
        except Exception:
            # Closing a connection the server already dropped may fail; it
            # is gone either way (Django forgets it), and the handler's own
            # outcome matters more than this error.
            logger.warning("closing database %r failed", connection.alias, exc_info=True)
