"""AWS Lambda handlers that use SQLAlchemy engines: :func:`lambda_handler`.

Lambda freezes the process between invocations and may thaw it much later;
the pooled connections were cut meanwhile, often silently, and an open
connection, even idle, keeps an Aurora Serverless v2 cluster from pausing
(and holds a slot of a small cluster's connection limit). A retry that
outlasts the function's remaining time ends in no error at all: Lambda
kills the function. The Django host does the same for Django's connections
(``orca_db.aws_lambda.database_handler``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine

from ..deadlines import deadline_cap
from ..events import lambda_request_id

__all__ = ["close_engine", "invocation", "lambda_handler"]

logger = logging.getLogger("orca_db.aws_lambda")

T = TypeVar("T")

#: Time kept back from the function's remaining time: retries stop this much
#: before Lambda's own timeout, leaving room to raise, log and return.
DEFAULT_MARGIN_MS = 1000


def lambda_handler(*engines: Engine, margin_ms: int = DEFAULT_MARGIN_MS) -> Callable:
    """Decorate a Lambda handler ``(event, context)`` that uses ``engines``::

        engine = create_engine(url, plugins=["orca_db"], aurora={...})

        @lambda_handler(engine)
        def handler(event, context): ...

    Before the invocation it closes every connection of the engines left
    from before (made during init, or before a freeze: a thawed socket
    cannot be trusted); after it, also when the handler raises, it closes
    every connection again: the pooled ones, and those the handler left
    checked out (a Session never closed), which are invalidated. During the
    invocation every retry deadline (the plugin's connects and replays,
    :func:`~orca_db.sqlalchemy.run_transaction`) is capped at
    ``context.get_remaining_time_in_millis() - margin_ms``, and every retry
    event carries ``context.aws_request_id``.
    """
    if not engines or not all(isinstance(e, Engine) for e in engines):
        raise TypeError(
            "lambda_handler() takes the engines the handler uses: lambda_handler(engine)"
        )
    if margin_ms < 0:
        raise ValueError(f"margin_ms must not be negative, got {margin_ms!r}.")
    for engine in engines:
        _tracker(engine)  # follows checkouts from now on

    def decorate(handler: Callable[[Any, Any], T]) -> Callable[[Any, Any], T]:
        if _lazy(handler):
            raise TypeError(
                f"lambda_handler() cannot wrap {handler!r}: its body would run after the "
                f"invocation closed the connections. Decorate a plain function."
            )

        @functools.wraps(handler)
        def invoke(event: Any, context: Any) -> T:
            with invocation(context, *engines, margin_ms=margin_ms):
                result = handler(event, context)
                if _lazy(result):
                    with contextlib.suppress(Exception):
                        result.close()  # type: ignore[attr-defined]
                    raise TypeError(
                        f"{handler!r} returned {type(result).__name__}: it would run after "
                        f"the invocation closed the connections (and past the cap). "
                        f"Return the result itself."
                    )
                return result

        return invoke

    return decorate


@contextlib.contextmanager
def invocation(
    context: Any, *engines: Engine, margin_ms: int = DEFAULT_MARGIN_MS
) -> Iterator[None]:
    """What :func:`lambda_handler` does around a handler, as a context
    manager (for frameworks that call the handler themselves). Inside
    another invocation (a handler calling a decorated one) it closes
    nothing: closing there would close the outer one's connections; its
    engines are closed when the outermost invocation ends."""
    outer = _inside.get()
    if outer is not None:
        for engine in engines:
            if not any(engine is known for known in outer):
                _tracker(engine)
                close_engine(engine)  # not used by the outer one (yet)
                outer.append(engine)
        yield
        return
    closing = list(engines)
    inside = _inside.set(closing)
    try:
        with _invocation(context, closing, margin_ms):
            yield
    finally:
        _inside.reset(inside)


#: The engines the outermost invocation running in this context closes.
_inside: contextvars.ContextVar[list[Engine] | None] = contextvars.ContextVar(
    "orca_db_lambda_invocation", default=None
)


def _lazy(value: Any) -> bool:
    """A coroutine, generator (or their functions): a body run later."""
    return any(
        check(value)
        for check in (
            inspect.isawaitable,
            inspect.isgenerator,
            inspect.isasyncgen,
            inspect.iscoroutinefunction,
            inspect.isgeneratorfunction,
            inspect.isasyncgenfunction,
        )
    )


@contextlib.contextmanager
def _invocation(context: Any, engines: list[Engine], margin_ms: int) -> Iterator[None]:
    token = lambda_request_id.set(getattr(context, "aws_request_id", None))
    try:
        for engine in engines:
            close_engine(engine)
        with _capped(context, margin_ms):
            yield
    finally:
        try:
            for engine in engines:
                close_engine(engine)
        finally:
            lambda_request_id.reset(token)


def _capped(context: Any, margin_ms: int) -> contextlib.AbstractContextManager:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return contextlib.nullcontext()  # not a Lambda context: no cap
    return deadline_cap(max(0, remaining() - margin_ms) / 1000)


def close_engine(engine: Engine) -> None:
    """Close every connection of ``engine``: those checked out (followed
    since :func:`lambda_handler` was applied) are invalidated, which closes
    them under whoever holds them (their next use reconnects), and the
    pool is disposed. Never raises: closing a connection the server dropped
    may fail, and the handler's outcome matters more."""
    tracker = _trackers.get(engine)
    if tracker is not None:
        for record in list(tracker.values()):
            logger.warning(
                "a connection of database %r was still checked out at the end of the "
                "invocation (a Connection or Session not closed): closed",
                engine.url.database,
            )
            with contextlib.suppress(Exception):
                record.invalidate()
        tracker.clear()
    try:
        engine.dispose()
    except Exception:
        logger.warning("closing the connections of database %r failed", engine.url.database)


#: engine -> {id(pool entry): pool entry} of the connections checked out now.
_trackers: weakref.WeakKeyDictionary[Engine, dict[int, Any]] = weakref.WeakKeyDictionary()


def _tracker(engine: Engine) -> dict[int, Any]:
    tracker = _trackers.get(engine)
    if tracker is None:
        out: dict[int, Any] = {}
        tracker = _trackers[engine] = out

        def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
            out[id(record)] = record

        def checked_in(dbapi_connection: Any, record: Any) -> None:
            out.pop(id(record), None)

        # Pool events outlive dispose(): the new pool takes them over.
        event.listen(engine.pool, "checkout", checked_out)
        event.listen(engine.pool, "checkin", checked_in)
    return tracker
