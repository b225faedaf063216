"""The runs of one ``retry_atomic`` call, and the judge of their failures.

Each run goes through named stages (:class:`Stage`); what a failure proves
depends on the stage it came in. A COMMIT lost in flight is resolved by
:mod:`orca_db.commit_resolution`; whether to run the function again is
decided by :func:`orca_db.decisions.rerun_transaction`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import sys
from typing import Any

from django.db import transaction

from . import decisions, drivers
from .classify import SERVER_CLOSED, Failure, classify, driver_error
from .commit_resolution import (
    LostCommit,
    commit_error,
    drop,
    transaction_id,
    transaction_status,
    unresolved,
)
from .elsewhere import Elsewhere, unseen_sends
from .exceptions import OutcomeUnknown, ScaleEventError, TransactionRolledBack
from .retry import Operation
from .sql import profile

logger = logging.getLogger("orca_db.retry")


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
class _Commit:
    """What a run knows when it sends COMMIT."""

    asked: bool
    xid: str | None
    pid: int | None
    cluster: str | None
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
        # Whether the current run sent a statement that is not a read; and
        # what it sent to the other databases.
        self.wrote = False
        # Whether the current run sent COMMIT as SQL.
        self.committed_along = False
        self.elsewhere = Elsewhere(connection.alias)
        # What the application was handling when it called retry_atomic:
        # chained to every error of the runs, never one of theirs.
        self.handled = sys.exception()

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
            drop(connection)
            self.operation.last_failure = self.operation.last_failure or SERVER_CLOSED
        connection.ensure_connection()
        self.stage = Stage.BODY
        self.driver_connection = connection.connection
        commit = _Commit(False, None, None, None, None, [])
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
                self.wrote = self.committed_along = False
                with contextlib.ExitStack() as watching:
                    watching.enter_context(connection.execute_wrapper(self._watch_own))
                    watching.enter_context(self.elsewhere.watching())
                    unseen = unseen_sends(connection)
                    commit.result = self.call()
                # callproc, COPY, stream(): no execute wrapper saw them.
                self.wrote = self.wrote or unseen_sends(connection) != unseen
                commit.asked = self._resolvable() and (
                    self.options.resolve_commit
                    or (self.options.resolve_commit is None and self.wrote)
                )
                if commit.asked:
                    commit.xid, commit.pid, commit.cluster = transaction_id(connection)
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

    def _watch_own(self, execute, sql, params, many, context):
        # Reads need no resolution: a transaction that only read has nothing
        # to lose with its COMMIT. Anything unrecognised counts as a write.
        if not self.wrote and not profile(sql).maybe_read:
            self.wrote = True
        # COMMIT sent as SQL (Django does not stop it): what came before is
        # committed, whatever becomes of this transaction.
        if not self.committed_along and decisions.may_commit(sql):
            self.committed_along = True
        return execute(sql, params, many, context)

    def _mark_committed(self) -> None:
        self.stage = Stage.COMMITTED

    def _commit_failed(self, error: BaseException, commit: _Commit) -> None:
        """The COMMIT (or what Django did after it failed) raised ``error``."""
        reason = commit_error(error, self.handled)
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
        asked = (commit.xid, commit.pid, commit.cluster, commit.result, commit.hooks)
        self.pending = LostCommit(*asked, driver_error(reason), failure)

    # ----- a lost COMMIT ----------------------------------------------------

    def _settle_lost_commit(self) -> Any:
        pending = self.pending
        assert pending is not None
        if pending.xid is None:
            # No transaction id though one is assigned before COMMIT: the
            # transaction ran on a standby, where nothing it did can have
            # an effect, so whether its COMMIT arrived changes nothing.
            return self._committed(pending)
        self.stage = Stage.RESOLVE
        status = transaction_status(
            self.connection, self.driver_connection, pending, self.operation
        )
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
        raise unresolved(
            self.operation.alias, pending, status, self.operation.settings.errors
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
            if self.committed_along:
                return OutcomeUnknown(
                    f"The function run by retry_atomic on database {self.operation.alias!r} "
                    f"sent COMMIT as SQL, which committed what it had done before; it then "
                    f"failed ({failure.error_type}) and was not run again."
                )
            if self.elsewhere.wrote is None:
                return None
            return TransactionRolledBack(
                f"The transaction on database {self.operation.alias!r} was rolled back "
                f"({failure.error_type}) and not run again: it had written to database "
                f"{self.elsewhere.wrote!r}, which this rollback does not undo."
            )
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
    state = getattr(connection, "orca_state", None)  # the aurora backend's (backends/state.py)
    link = None if state is None else state.link
    if link is None or link.connection is not connection.connection:
        link = drivers.Link(connection.connection)
    return link.server_closed()
