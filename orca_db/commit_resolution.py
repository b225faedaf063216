"""The runs of one ``retry_atomic`` call, and what became of a COMMIT whose
reply was lost.

A COMMIT whose reply never came may or may not have committed. Before
COMMIT the transaction's id is read (``pg_current_xact_id_if_assigned()``,
no id for a transaction that wrote nothing); after a lost reply a new
connection asks ``pg_xact_status(id)``: "committed" (return the result, run
the on_commit callbacks Django dropped), "aborted" (run everything again),
"in progress" (the old backend has not noticed its client is gone: wait a
moment, then end it so that the status becomes final). Every connection that
dies while asking is replaced, within the operation's deadline.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
from typing import Any

from django.db import DatabaseError, transaction

from . import decisions, drivers
from .classify import Failure, classify, driver_error
from .exceptions import OutcomeUnknown, ScaleEventError, TransactionRolledBack
from .retry import Operation
from .sql import profile

logger = logging.getLogger("orca_db.retry")

# ``_if_assigned`` does not assign an id: a transaction that wrote nothing
# keeps committing without a WAL flush, and NULL tells that there is
# nothing to resolve.
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

SERVER_CLOSED = Failure(
    retryable=True,
    not_applied=True,
    error_type="ServerClosedConnection",
    sqlstate=None,
    message="the server had closed the idle connection before the transaction started",
    closed_before_send=True,
)


class Stage(enum.Enum):
    """Where the current run is; what a failure there proves."""

    CONNECT = "connect"  # nothing of this run was sent
    BODY = "body"  # the function runs; nothing committed yet
    COMMIT = "commit"  # COMMIT sent
    COMMITTED = "committed"  # the commit succeeded (on_commit began)
    RESOLVE = "resolve"  # asking what became of a lost COMMIT: reads only
    ROLLED_BACK = "rolled back"  # proven not committed


@dataclasses.dataclass
class Options:
    using: str
    savepoint: bool
    durable: bool
    resolve_commit: bool | None
    retry_conflicts: bool


@dataclasses.dataclass
class LostCommit:
    """A COMMIT sent, whose reply never came."""

    xid: str | None
    backend_pid: int | None
    result: Any
    hooks: list
    cause: BaseException
    failure: Failure


@dataclasses.dataclass
class _Commit:
    """What a run knows when it sends COMMIT."""

    asked: bool
    xid: str | None
    pid: int | None
    result: Any
    hooks: list


class TransactionRuns:
    """The attempts of one retry_atomic call and the judge of their failures."""

    def __init__(self, connection, operation: Operation, options: Options, call):
        self.connection = connection
        self.operation = operation
        self.options = options
        self.call = call
        self.stage = Stage.CONNECT
        self.driver_connection = None
        self.pending: LostCommit | None = None
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
        self.stage = Stage.CONNECT
        if connection.connection is not None and _server_closed(connection):
            # Closed by the server while idle (a scale event between two
            # transactions): start on a new connection instead of failing.
            # Still a scale event met: it is reported with the operation.
            _drop(connection)
            self.operation.last_failure = self.operation.last_failure or SERVER_CLOSED
        connection.ensure_connection()
        self.stage = Stage.BODY
        self.driver_connection = connection.connection
        commit = _Commit(False, None, None, None, [])
        try:
            with transaction.atomic(
                using=self.options.using,
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
                        commit.result = self.call()
                else:
                    commit.result = self.call()
                commit.asked = self._resolvable() and (
                    self.options.resolve_commit
                    or (self.options.resolve_commit is None and self.wrote)
                )
                if commit.asked:
                    commit.xid, commit.pid = _transaction_id(connection)
                commit.hooks = [h for h in connection.run_on_commit if h[1] != self._mark_committed]
                self.stage = Stage.COMMIT
        except Exception as error:
            if self.stage is not Stage.COMMIT:
                raise  # judged by judge(): the body failed
            self._commit_failed(error, commit)
        return commit.result

    def _resolvable(self) -> bool:
        """Whether COMMIT will be sent at all: a block marked for rollback
        (set_rollback(True), a caught error) or an aborted transaction ends
        in a ROLLBACK, as with transaction.atomic, and asks nothing."""
        connection = self.connection
        if connection.needs_rollback:
            return False
        return drivers.transaction_status(connection.connection) != drivers.INERROR

    def _watch_writes(self, execute, sql, params, many, context):
        # Reads need no resolution: a transaction that only read has nothing
        # to lose with its COMMIT. Anything unrecognised counts as a write.
        if not self.wrote and not profile(sql).maybe_read:
            self.wrote = True
        return execute(sql, params, many, context)

    def _mark_committed(self) -> None:
        self.stage = Stage.COMMITTED

    def _commit_failed(self, error: BaseException, commit: _Commit) -> None:
        """The COMMIT (or what Django did after it failed) raised ``error``."""
        reason = _commit_error(error)
        failure = classify(reason)
        if isinstance(reason, TransactionRolledBack) and failure.retryable:
            # The connection was closed before COMMIT could be sent: nothing
            # was committed. The driver error goes to the engine, which
            # judges it (retryable, rolled back) and runs everything again.
            self.stage = Stage.ROLLED_BACK
            raise driver_error(reason)
        if not isinstance(reason, OutcomeUnknown) and not failure.retryable:
            # Refused by the server (a deferred constraint, a serialization
            # failure): rolled back; the judge decides whether to run again.
            self.stage = Stage.ROLLED_BACK
            raise error
        self.operation.last_failure = failure
        if not commit.asked:
            why = "off" if self.options.resolve_commit is False else "not asked for reads"
            raise OutcomeUnknown(
                f"The connection to database {self.operation.alias!r} was lost while "
                f"COMMIT was in flight ({failure.error_type}); the transaction may or "
                f"may not have committed (resolve_commit: {why})."
            ) from driver_error(reason)
        self.pending = LostCommit(
            commit.xid, commit.pid, commit.result, commit.hooks, driver_error(reason), failure
        )

    # ----- a lost COMMIT ----------------------------------------------------

    def _settle_lost_commit(self) -> Any:
        pending = self.pending
        assert pending is not None
        if pending.xid is None:
            # No transaction id: the transaction wrote nothing, so whether
            # its COMMIT arrived changes nothing on the server.
            return self._committed(pending)
        self.stage = Stage.RESOLVE
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
            self.stage = Stage.ROLLED_BACK
            raise pending.cause  # retryable: the engine runs it all again
        self.pending = None
        raise OutcomeUnknown(
            f"The connection to database {self.operation.alias!r} was lost while COMMIT "
            f"was in flight ({pending.failure.error_type}) and the server cannot tell "
            f"whether the transaction committed (status: {status or 'unknown'})."
        ) from pending.cause

    def _committed(self, pending: LostCommit) -> Any:
        self.pending = None
        self.stage = Stage.COMMITTED
        connection = self.connection
        # Django dropped the callbacks with the failed COMMIT; the commit
        # did happen, so they run now, as they would have.
        connection.run_on_commit = pending.hooks + connection.run_on_commit
        connection.run_and_clear_commit_hooks()
        return pending.result

    def _transaction_status(self, pending: LostCommit) -> str | None:
        assert pending.xid is not None  # a transaction without one had nothing to lose
        connection = self.connection
        if connection.connection is self.driver_connection:
            _drop(connection)  # never ask the connection that was lost
        connection.ensure_connection()
        started = time.monotonic()
        budget = min(2 * _IN_PROGRESS_WAIT, max(0.0, self.operation.remaining()))
        terminated = False
        while True:
            status = self._query(_XACT_STATUS_SQL, [pending.xid])
            waited = time.monotonic() - started
            if status != "in progress" or waited >= budget:
                return status
            if not terminated and waited >= budget / 2:
                # Still "in progress": the old backend has not noticed that
                # its client is gone (a silent network). Ending it makes it
                # finish the COMMIT (a commit record being written cannot
                # be interrupted) or abort; either way the status is final.
                terminated = True
                self._query(_TERMINATE_SQL, [pending.backend_pid, pending.xid])
            time.sleep(_IN_PROGRESS_POLL)

    def _query(self, sql: str, params: list) -> Any:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchone()[0]
        except DatabaseError as error:
            if classify(error).retryable:
                # This connection died too: the engine asks again on a new
                # one (the next attempt reconnects), within the deadline.
                _drop(self.connection)
                raise
            # "transaction ID is in the future": another server's history;
            # not allowed to end another role's backend: keep waiting.
            logger.warning(
                "%s failed on database %r: %s",
                sql.split("(")[0],
                self.operation.alias,
                type(driver_error(error)).__name__,
            )
            return None

    # ----- the judge --------------------------------------------------------

    def judge(self, error: BaseException, failure: Failure) -> BaseException | None:
        """``None`` when running the function again cannot apply it twice."""
        if self.stage in (Stage.CONNECT, Stage.RESOLVE):
            # Nothing of this run was sent, or only reads: try again.
            return None if failure.retryable else error
        committed_nothing = self.stage is Stage.ROLLED_BACK or (
            self.stage is Stage.BODY and (failure.conflict or self._lost_transaction_connection())
        )
        settings = self.operation.settings
        if not self.options.retry_conflicts:
            settings = dataclasses.replace(settings, retry_conflicts=False)
        if decisions.rerun_transaction(
            failure, committed_nothing=committed_nothing, settings=settings
        ):
            return None
        if isinstance(error, ScaleEventError):
            return error
        # A failure on another connection (another database written in
        # autocommit): its write may have been applied; do not run it again.
        return error

    def _lost_transaction_connection(self) -> bool:
        """The server ends the session of a lost connection and rolls its
        open transaction back: nothing of this run was committed."""
        driver = self.driver_connection
        if driver is None:
            return False
        if self.connection.connection is not driver:
            return True  # dropped (and maybe replaced) after the failure
        return drivers.is_closed(driver)


def _server_closed(connection) -> bool:
    link = getattr(connection, "_orca_link", None)
    if link is None or link.connection is not connection.connection:
        link = drivers.Link(connection.connection)
    return link.server_closed()


def _drop(connection) -> None:
    """Give up a connection that was lost; its session comes back on the
    next one (the aurora engine), or is simply gone (any other)."""
    lose = getattr(connection, "_orca_lose_connection", None)
    if lose is not None:
        lose()
    else:
        connection.close()


def _transaction_id(connection) -> tuple[str | None, int]:
    # Through Django's cursor: execute wrappers, the debug log and
    # assertNumQueries see it, as they see every query sent.
    with connection.cursor() as cursor:
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
