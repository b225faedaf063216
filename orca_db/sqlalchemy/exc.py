"""The errors the SQLAlchemy plugin raises, as SQLAlchemy users catch them.

Each is a :class:`sqlalchemy.exc.DBAPIError` (what a failed statement
raises with stock SQLAlchemy) whose ``.orig`` is the orca-db core error of
the same name (``orca_db.outcomes``), chained to the driver error.

Which ones are ``sqlalchemy.exc.OperationalError`` is the design point:
code that re-runs a whole function on any ``OperationalError`` (ORCA's
``retry_operational_error``, tenacity recipes) must be right to do so.

- ``TransactionRolledBack`` and ``RetriesExhausted`` are: nothing of the
  operation was committed, so running it again is correct.
- ``OutcomeUnknown`` is **not** (it is a ``sqlalchemy.exc.DatabaseError``):
  the write or COMMIT may have been applied, and a blind re-run would apply
  it twice. It reaches the caller instead of the retry decorator.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import exc as sa_exc

__all__ = [
    "DeadlineExceeded",
    "OutcomeUnknown",
    "RetriesExhausted",
    "ScaleEventError",
    "SessionStateLost",
    "TransactionRolledBack",
    "WriteDeadlineExceeded",
]


class ScaleEventError(sa_exc.DatabaseError):
    """The database went away (scale event, pause, restart) and the
    operation could not be completed transparently. ``.orig`` is the core
    error (``orca_db.outcomes``) of the same name."""

    def __init__(self, statement: str | None, orig: BaseException, **kwargs: Any):
        # Parameters are never shown: they may hold secrets or row values.
        super().__init__(statement, None, orig, hide_parameters=True, **kwargs)

    def __reduce__(self) -> Any:
        # DBAPIError's own reduce passes its constructor's arguments.
        return (
            type(self),
            (self.statement, self.orig),
            {"connection_invalidated": self.connection_invalidated},
        )


class TransactionRolledBack(ScaleEventError, sa_exc.OperationalError):
    """The connection was lost inside a transaction (``engine.begin()``,
    ``Connection.begin()``, an ORM ``Session``'s): the server rolled the
    whole transaction back, nothing of it was committed. Run it again as a
    whole. An ``OperationalError``: a decorator that re-runs the function
    does the right thing."""


class RetriesExhausted(ScaleEventError, sa_exc.OperationalError):
    """Every retry allowed by the deadline and the attempt budget failed
    (a connect, or a replayed read): nothing was applied."""


class OutcomeUnknown(ScaleEventError):
    """The connection was lost while a write or a COMMIT was in flight and
    nothing proves whether the server applied it. It was not retried.

    Deliberately **not** a ``sqlalchemy.exc.OperationalError``: code that
    re-runs a function on any ``OperationalError`` would apply the write a
    second time. Catch it by name (or ``sqlalchemy.exc.DatabaseError``)
    and find out what happened."""


class SessionStateLost(ScaleEventError):
    """The ``Connection``'s driver connection was replaced after a scale
    event, and its session held state a new session does not have (a
    temporary table, an advisory lock, ``LISTEN``, ``PREPARE``, a cursor
    ``WITH HOLD``, a function call nobody can see inside). The statement
    was not run; the ``Connection`` refuses every statement until it is
    closed. ``.lost`` names what was lost.

    Not an ``OperationalError``: what the function did before on that
    session stands (autocommit statements, committed transactions), so
    running it again from the start is the application's call."""

    @property
    def lost(self) -> tuple[str, ...]:
        return getattr(self.orig, "lost", ())


class DeadlineExceeded(ScaleEventError, sa_exc.OperationalError):
    """A read, or a statement inside a transaction, was still waiting for
    the server at its deadline (``statement_deadline``, the Lambda cap) and
    was cut off: nothing was applied (the server rolls the transaction
    back). An ``OperationalError``: running it again is safe."""


class WriteDeadlineExceeded(OutcomeUnknown):
    """A write or a COMMIT was still waiting for the server at its deadline
    and was cut off: it may or may not have been applied. An
    ``OutcomeUnknown``, so **not** an ``OperationalError``."""


MESSAGES = {
    "TransactionRolledBack": (
        "The connection to database {alias!r} was lost inside a transaction ({error}): "
        "the server rolled the whole transaction back. Run it again as a whole."
    ),
    "OutcomeUnknown": (
        "The connection to database {alias!r} was lost while a write or COMMIT was in "
        "flight ({error}); it may or may not have been applied, and was not retried."
    ),
}


def core_error(name: str, alias: str, failure: Any) -> BaseException:
    from .. import outcomes

    cls = getattr(outcomes, name)
    return cls(MESSAGES[name].format(alias=alias, error=failure.error_type))


def wrap(core: BaseException, statement: str | None) -> ScaleEventError:
    """The SQLAlchemy error of ``core``'s name (``core`` is its ``.orig``)."""
    for cls in type(core).__mro__:
        ours = globals().get(cls.__name__)
        if isinstance(ours, type) and issubclass(ours, ScaleEventError):
            return ours(statement, core, connection_invalidated=True)
    return ScaleEventError(statement, core, connection_invalidated=True)


@contextlib.contextmanager
def as_sqlalchemy(statement: str | None):
    """Raise the core's errors (``orca_db.outcomes``) as ours."""
    from .. import outcomes

    try:
        yield
    except outcomes.ScaleEventError as core:
        raise wrap(core, statement) from core.__cause__
