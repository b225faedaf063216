"""Whole-transaction retries: :func:`retry_atomic`.

A scale event rolls a transaction back as a whole, so the only correct retry
is to run the whole block again, and only when it is certain that the first
try did not commit. A COMMIT whose reply was lost is resolved by asking the
server what became of the transaction (``pg_xact_status``) instead of
guessing. Everything else (backoff, the deadline, logging, the one
``RetryEvent``) comes from the retry engine in :mod:`orca_db.retry`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction

from .backends.liveness import server_closed
from .classify import Failure, classify, driver_error
from .conf import retry_settings
from .exceptions import OutcomeUnknown, RetriesExhausted, ScaleEventError, TransactionRolledBack
from .retry import Operation, report, run
from .statements import is_read_only

logger = logging.getLogger("orca_db.retry")

T = TypeVar("T")

# One round trip right before COMMIT. ``_if_assigned`` does not assign an id:
# a transaction that wrote nothing keeps committing without a WAL flush, and
# NULL tells that there is nothing to resolve.
_XACT_ID_SQL = "SELECT pg_current_xact_id_if_assigned()::text, pg_backend_pid()"
_XACT_STATUS_SQL = "SELECT pg_xact_status(%s::xid8)"
# The old backend may still be finishing the COMMIT (or not have noticed yet
# that its client is gone): how long to wait for it before ending it.
_IN_PROGRESS_WAIT = 1.0
_IN_PROGRESS_POLL = 0.02
# Ends the old backend only while it still runs that very transaction (a pid
# can be reused): its transaction then commits or aborts, and says which.
_TERMINATE_SQL = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE pid = %s AND backend_xid = %s::xid8::xid"
)


_SERVER_CLOSED = Failure(
    retryable=True,
    not_applied=True,
    error_type="ServerClosedConnection",
    sqlstate=None,
    message="the server had closed the idle connection before the transaction started",
    closed_before_send=True,
)


def retry_atomic(
    func: Callable[..., T] | None = None,
    /,
    *args: Any,
    using: str | None = None,
    savepoint: bool = True,
    durable: bool = False,
    deadline: float | None = None,
    resolve_commit: bool | None = None,
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
      a statement that is not a read; a lost COMMIT of a transaction that
      only read raises ``OutcomeUnknown``. ``True``: always. ``False``:
      never; a lost COMMIT raises ``OutcomeUnknown``.
    - ``savepoint``, ``durable``: as for ``transaction.atomic``.

    Nested in another atomic block of the same database it behaves exactly
    like ``transaction.atomic``: the outermost block is what can be re-run.
    The function may run more than once: it must not have side effects
    outside this transaction (e-mails, HTTP calls, writes through other
    connections) unless they are idempotent. Use ``transaction.on_commit``
    for those; its callbacks run once, after the commit that counted.
    """
    if deadline is not None and not deadline >= 0:
        raise ValueError(f"retry_atomic() deadline must be at least 0, got {deadline!r}.")
    options = _Options(using, savepoint, durable, deadline, resolve_commit)
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
        return _execute(func, args, kwargs, options)
    return _decorate(func, options=options)


@dataclasses.dataclass(frozen=True)
class _Options:
    using: str | None
    savepoint: bool
    durable: bool
    deadline: float | None
    resolve_commit: bool | None


def _decorate(func: Callable[..., T], options: _Options) -> Callable[..., T]:
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> T:
        return _execute(func, args, kwargs, options)

    return inner


def _execute(func: Callable[..., T], args: tuple, kwargs: dict, options: _Options) -> T:
    alias = options.using or DEFAULT_DB_ALIAS
    connection = connections[alias]
    settings = retry_settings(connection)
    nested = connection.in_atomic_block or (
        connection.connection is not None and not connection.autocommit
    )
    if nested or not settings.enabled or connection.vendor != "postgresql":
        # Only the outermost block owns the transaction: re-running an inner
        # one cannot bring back what the lost connection took with it.
        with transaction.atomic(using=alias, savepoint=options.savepoint, durable=options.durable):
            return func(*args, **kwargs)
    if options.deadline is not None:
        settings = dataclasses.replace(settings, deadline=options.deadline)
    operation = Operation(alias, "transaction", settings)
    runs = _TransactionRuns(connection, operation, options, func, args, kwargs)
    try:
        result = run(operation, runs.attempt, runs.judge)
    except RetriesExhausted as error:
        if runs.pending is None:
            raise  # every run was proven rolled back: nothing committed
        raise OutcomeUnknown(
            f"The COMMIT on database {alias!r} was lost in flight and the "
            f"deadline ran out before the server could say whether it committed."
        ) from error
    if operation.attempts == 1 and operation.last_failure is not None:
        # Resolved within the first run (a lost COMMIT found committed): the
        # engine only reports what it retried.
        report(operation, "recovered")
    return result


@dataclasses.dataclass
class _LostCommit:
    """A COMMIT sent, whose reply never came."""

    xid: str | None
    backend_pid: int | None
    result: Any
    hooks: list
    cause: BaseException
    failure: Failure


class _TransactionRuns:
    """The attempts of one retry_atomic call and the judge of their failures."""

    def __init__(self, connection, operation, options, func, args, kwargs):
        self.connection = connection
        self.operation = operation
        self.options = options
        self.func = func
        self.args = args
        self.kwargs = kwargs
        # Where the current attempt is: "connect", "body", "commit",
        # "committed", "resolve", or "rolled back" (proven not committed).
        self.stage = "connect"
        self.driver_connection = None
        self.pending: _LostCommit | None = None
        # Whether the current run sent a statement that is not a read.
        self.wrote = False

    # ----- one attempt ------------------------------------------------------

    def attempt(self) -> Any:
        if self.pending is None:
            result = self._run_once()
            if self.pending is None:
                return result
        return self._settle_lost_commit()

    def _run_once(self) -> Any:
        connection = self.connection
        self.stage = "connect"
        if connection.connection is not None and server_closed(connection.connection):
            # Closed by the server while idle (a scale event between two
            # transactions): start on a new connection instead of failing.
            # Still a scale event met: it is reported with the operation.
            connection.close()
            self.operation.last_failure = self.operation.last_failure or _SERVER_CLOSED
        connection.ensure_connection()
        self.stage = "body"
        self.driver_connection = connection.connection
        xid = pid = None
        asked = False
        try:
            with transaction.atomic(
                using=self.operation.alias,
                savepoint=self.options.savepoint,
                durable=self.options.durable,
            ):
                # Runs first among the on_commit callbacks, that is right
                # after a COMMIT that succeeded: what fails after it is an
                # application callback's error, never a reason to re-run.
                connection.on_commit(self._mark_committed)
                self.wrote = False
                if self.options.resolve_commit is None:
                    with connection.execute_wrapper(self._watch_writes):
                        result = self.func(*self.args, **self.kwargs)
                else:
                    result = self.func(*self.args, **self.kwargs)
                asked = self.options.resolve_commit or (
                    self.options.resolve_commit is None and self.wrote
                )
                if asked:
                    xid, pid = _transaction_id(connection)
                hooks = [h for h in connection.run_on_commit if h[1] != self._mark_committed]
                self.stage = "commit"
        except Exception as error:
            if self.stage != "commit":
                raise  # judged by judge(): the body failed
            self._commit_failed(error, asked, xid, pid, result, hooks)
        return result

    def _watch_writes(self, execute, sql, params, many, context):
        # Reads need no resolution: a transaction that only read has nothing
        # to lose with its COMMIT. Anything unrecognised counts as a write.
        if not self.wrote and not is_read_only(sql):
            self.wrote = True
        return execute(sql, params, many, context)

    def _mark_committed(self) -> None:
        self.stage = "committed"

    def _commit_failed(self, error, asked, xid, pid, result, hooks) -> None:
        """The COMMIT (or what Django did after it failed) raised ``error``."""
        reason = _commit_error(error)
        failure = classify(reason)
        if isinstance(reason, TransactionRolledBack) and failure.retryable:
            # The connection was closed before COMMIT could be sent: nothing
            # was committed. The driver error goes to the engine, which
            # judges it (retryable, rolled back) and runs everything again.
            self.stage = "rolled back"
            raise driver_error(reason)
        if not isinstance(reason, OutcomeUnknown) and not failure.retryable:
            # Refused by the server (a deferred constraint, a serialization
            # failure): rolled back, and the application must see it.
            self.stage = "rolled back"
            raise error
        self.operation.last_failure = failure
        if not asked:
            why = "off" if self.options.resolve_commit is False else "not asked for reads"
            raise OutcomeUnknown(
                f"The connection to database {self.operation.alias!r} was lost while "
                f"COMMIT was in flight ({failure.error_type}); the transaction may or "
                f"may not have committed (resolve_commit: {why})."
            ) from driver_error(reason)
        self.pending = _LostCommit(xid, pid, result, hooks, driver_error(reason), failure)

    # ----- a lost COMMIT ----------------------------------------------------

    def _settle_lost_commit(self) -> Any:
        pending = self.pending
        assert pending is not None
        if pending.xid is None:
            # No transaction id: the transaction wrote nothing, so whether
            # its COMMIT arrived changes nothing on the server.
            return self._committed(pending)
        self.stage = "resolve"
        status = self._transaction_status(pending)
        logger.info(
            "lost COMMIT on database %r resolved: %s",
            self.operation.alias,
            status or "unknown",
            extra={
                "orca_db": {
                    "kind": "commit_resolution",
                    "database": self.operation.alias,
                    "status": status or "unknown",
                }
            },
        )
        if status == "committed":
            return self._committed(pending)
        if status == "aborted":
            self.pending = None
            self.stage = "rolled back"
            raise pending.cause  # retryable: the engine runs it all again
        self.pending = None
        raise OutcomeUnknown(
            f"The connection to database {self.operation.alias!r} was lost while COMMIT "
            f"was in flight ({pending.failure.error_type}) and the server cannot tell "
            f"whether the transaction committed (status: {status or 'unknown'})."
        ) from pending.cause

    def _committed(self, pending: _LostCommit) -> Any:
        self.pending = None
        self.stage = "committed"
        connection = self.connection
        # Django dropped the callbacks with the failed COMMIT; the commit
        # did happen, so they run now, as they would have.
        connection.run_on_commit = pending.hooks + connection.run_on_commit
        connection.run_and_clear_commit_hooks()
        return pending.result

    def _transaction_status(self, pending: _LostCommit) -> str | None:
        assert pending.xid is not None  # a transaction without one had nothing to lose
        connection = self.connection
        if connection.connection is self.driver_connection:
            connection.close()  # never ask the connection that was lost
        connection.ensure_connection()
        started = time.monotonic()
        budget = min(2 * _IN_PROGRESS_WAIT, max(0.0, self.operation.remaining()))
        terminated = False
        while True:
            status = self._query_status(pending.xid)
            waited = time.monotonic() - started
            if status != "in progress" or waited >= budget:
                return status
            if not terminated and waited >= budget / 2:
                terminated = True
                self._end_old_backend(pending)
            time.sleep(_IN_PROGRESS_POLL)

    def _query_status(self, xid: str) -> str | None:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(_XACT_STATUS_SQL, [xid])
                return cursor.fetchone()[0]
        except DatabaseError as error:
            if classify(error).retryable:
                raise  # the engine reconnects and asks again
            # "transaction ID is in the future": another server's history.
            logger.warning(
                "pg_xact_status failed on database %r: %s",
                self.operation.alias,
                type(driver_error(error)).__name__,
            )
            return None

    def _end_old_backend(self, pending: _LostCommit) -> None:
        # Still "in progress": the old backend has not noticed that its
        # client is gone (a silent network). Ending it makes it finish the
        # COMMIT (a commit record being written cannot be interrupted) or
        # abort; either way the status becomes final.
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(_TERMINATE_SQL, [pending.backend_pid, pending.xid])
        except DatabaseError as error:
            if classify(error).retryable:
                raise
            # Not allowed (another role): keep waiting within the budget.

    # ----- the judge --------------------------------------------------------

    def judge(self, error: BaseException, failure: Failure) -> BaseException | None:
        """``None`` when running the function again cannot apply it twice."""
        if self.stage in ("connect", "resolve", "rolled back"):
            return None  # nothing of the transaction committed, or a read
        if self.stage == "body" and self._lost_transaction_connection():
            # The server ends the session of a lost connection and rolls its
            # open transaction back: nothing of this run was committed.
            return None
        if isinstance(error, ScaleEventError):
            return error
        # A failure on another connection (another database written in
        # autocommit): its write may have been applied; do not run it again.
        return error

    def _lost_transaction_connection(self) -> bool:
        driver = self.driver_connection
        if driver is None:
            return False
        if self.connection.connection is not driver:
            return True  # dropped (and maybe replaced) after the failure
        return bool(driver.closed) or bool(getattr(driver, "broken", False))


def _transaction_id(connection) -> tuple[str | None, int]:
    # On the driver's cursor, not Django's: this runs in every transaction,
    # and Django's cursor wrappers (execute wrappers, the retrying cursor,
    # which would only re-raise here) cost as much as the round trip itself.
    # Django's error wrapping is kept, for the judge to classify failures.
    with connection.wrap_database_errors, connection.connection.cursor() as cursor:
        cursor.execute(_XACT_ID_SQL)
        return cursor.fetchone()


def _commit_error(error: BaseException) -> BaseException:
    """The error the COMMIT itself raised. Django may mask it: after a failed
    COMMIT, leaving the atomic block reconnects, and that can fail too."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, (OutcomeUnknown, TransactionRolledBack)):
            return seen
        seen = seen.__context__
    return error
