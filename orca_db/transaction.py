"""Whole-transaction retries: :func:`retry_atomic`.

A scale event rolls a transaction back as a whole, so the only correct retry
is to run the whole block again, and only when it is certain that the first
try did not commit. A COMMIT whose reply was lost is resolved by asking the
server what became of the transaction (:mod:`orca_db.commit_resolution`)
instead of guessing. Everything else (backoff, the deadline, logging, the
one ``RetryEvent``) comes from the retry engine in :mod:`orca_db.retry`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from . import drivers
from .commit_resolution import question_failed
from .conf import retry_settings
from .exceptions import OutcomeUnknown, RetriesExhausted
from .retry import Operation, report, run
from .transaction_runs import Options, TransactionRuns

T = TypeVar("T")


def retry_atomic(
    func: Callable[..., T] | None = None,
    /,
    *args: Any,
    using: str | None = None,
    savepoint: bool = True,
    durable: bool = False,
    deadline: float | None = None,
    resolve_commit: bool | None = None,
    retry_conflicts: bool | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``func`` in ``transaction.atomic(using)``; when a scale event rolls
    the transaction back, run the whole function again on a new connection.

    Three forms::

        @retry_atomic
        def move(...): ...

        @retry_atomic(using="other", deadline=30)
        def move(...): ...

        retry_atomic(move, job, files)   # runs it now

    Called with a function alone it returns the decorated function (that is
    what ``@retry_atomic`` does): run a function without arguments with
    ``retry_atomic(func)()``. The keyword options are always retry_atomic's.

    - ``deadline``: seconds for all the runs together (default: the
      database's ``OPTIONS["aurora"]["deadline"]``), capped on Lambda.
    - ``resolve_commit``: record the transaction id before COMMIT (one
      extra round trip) so that a COMMIT lost in flight is resolved with
      ``pg_xact_status``. ``None`` (default): only in transactions that sent
      a statement that is not a read (or called ``callproc``, COPY,
      ``stream()``); a lost COMMIT of a transaction that
      only read raises ``OutcomeUnknown``. ``True``: always. ``False``:
      never; a lost COMMIT raises ``OutcomeUnknown``.
    - ``retry_conflicts``: run the function again after a serialization
      failure (40001) or a deadlock (40P01), which the server resolved by
      rolling this transaction back (default: the database's
      ``OPTIONS["aurora"]["retry_conflicts"]``, on).
    - ``savepoint``, ``durable``: as for ``transaction.atomic``.

    Nested in another atomic block of the same database it behaves exactly
    like ``transaction.atomic``: the outermost block is what can be re-run.
    The function may run more than once: it must not have side effects
    outside this transaction (e-mails, HTTP calls) unless they are
    idempotent. Use ``transaction.on_commit`` for those; its callbacks run
    once, after the commit that counted. A write through another database
    of ``DATABASES`` is seen: after one, the function is not run again
    (``TransactionRolledBack`` names that database).
    """
    if deadline is not None and not deadline >= 0:
        raise ValueError(f"retry_atomic() deadline must be at least 0, got {deadline!r}.")
    options = _Call(using, savepoint, durable, deadline, resolve_commit, retry_conflicts)
    if func is None:
        if args or kwargs:
            raise TypeError("retry_atomic() takes the function as its first argument.")
        return functools.partial(_decorate, options=options)
    if not callable(func):
        raise TypeError(
            f"retry_atomic() needs a callable, got {type(func).__name__}; "
            f"pass the database as using=..."
        )
    if args or kwargs:
        _check_function(func)
        return _execute(func, args, kwargs, options)
    return _decorate(func, options=options)


def _check_function(func: Callable[..., Any]) -> None:
    # Their bodies run when iterated or awaited, after the transaction has
    # committed: in autocommit, not atomic, and not safe to run again.
    for kind, test in (
        ("generator", inspect.isgeneratorfunction),
        ("async generator", inspect.isasyncgenfunction),
        ("coroutine", inspect.iscoroutinefunction),
    ):
        if test(func):
            raise TypeError(
                f"retry_atomic() cannot run a {kind} function ({func.__qualname__}): its "
                f"body would run after the transaction ends. Collect the results in a "
                f"plain function (or use sync_to_async around one)."
            )


@dataclasses.dataclass(frozen=True)
class _Call:
    using: str | None
    savepoint: bool
    durable: bool
    deadline: float | None
    resolve_commit: bool | None
    retry_conflicts: bool | None


def _decorate(func: Callable[..., T], options: _Call) -> Callable[..., T]:
    _check_function(func)

    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> T:
        return _execute(func, args, kwargs, options)

    return inner


def _execute(func: Callable[..., T], args: tuple, kwargs: dict, call: _Call) -> T:
    alias = call.using or DEFAULT_DB_ALIAS
    connection = connections[alias]
    settings = retry_settings(connection)
    _refuse_if_broken_unseen(connection)
    if _in_transaction(connection) or not settings.enabled or connection.vendor != "postgresql":
        # Only the outermost block owns the transaction: re-running an inner
        # one cannot bring back what the lost connection took with it.
        with transaction.atomic(using=alias, savepoint=call.savepoint, durable=call.durable):
            return func(*args, **kwargs)
    if call.deadline is not None:
        settings = dataclasses.replace(settings, deadline=call.deadline)
    operation = Operation(alias, "transaction", settings)
    options = Options(
        using=alias,
        savepoint=call.savepoint,
        durable=call.durable,
        resolve_commit=call.resolve_commit,
        retry_conflicts=(
            settings.retry_conflicts if call.retry_conflicts is None else call.retry_conflicts
        ),
    )
    runs = TransactionRuns(connection, operation, options, functools.partial(func, *args, **kwargs))
    try:
        result = run(operation, runs.attempt, runs.judge)
    except RetriesExhausted as error:
        if runs.pending is None:
            raise  # every run was proven rolled back: nothing committed
        raise OutcomeUnknown(
            f"The COMMIT on database {alias!r} was lost in flight and the "
            f"deadline ran out before the server could say whether it committed."
        ) from error
    except Exception as error:
        if runs.pending is None or isinstance(error, OutcomeUnknown):
            raise
        # Asking failed for good (a login refused; a session rule 1 will not
        # restore, whose "start over" would run again what may have
        # committed): the error must say that COMMIT was in flight.
        raise question_failed(alias, runs.pending, error, settings.errors) from error
    if operation.attempts == 1 and operation.last_failure is not None:
        # Resolved within the first run (a lost COMMIT found committed): the
        # engine only reports what it retried.
        report(operation, "recovered")
    return result


def _in_transaction(connection) -> bool:
    """A transaction is open already: an atomic block, set_autocommit(False),
    or BEGIN sent as SQL (libpq knows; Django's flags do not)."""
    if connection.in_atomic_block:
        return True
    driver = connection.connection
    if driver is None:
        return False
    return not connection.autocommit or drivers.transaction_open(drivers.transaction_status(driver))


def _refuse_if_broken_unseen(connection) -> None:
    """The connection broke outside a statement (a server-side cursor's
    fetch, the driver used directly): libpq says UNKNOWN, and a transaction
    begun as SQL may have been open on it. Starting over on a new connection
    would commit this block while the rest of that transaction is lost
    (rule 4 of docs/retry-safety.md): the aurora engine refuses, until the
    application ends the transaction, as it refuses every statement."""
    driver = connection.connection
    lose = getattr(connection, "_orca_lose_transaction", None)
    if lose is None or driver is None or connection.in_atomic_block:
        return
    if drivers.transaction_status(driver) == drivers.UNKNOWN:
        raise lose()
