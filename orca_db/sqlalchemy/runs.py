"""The runs of one :func:`orca_db.sqlalchemy.run_transaction` call, and the
judge of their failures: what a failure proves depends on the stage it came
in (:class:`Stage`); every decision is the core's."""

from __future__ import annotations

import contextlib
import contextvars
import enum
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from .. import decisions, drivers
from .. import outcomes as core
from ..classify import Failure, classify, driver_error
from ..commit_resolution import LostCommit, unresolved
from ..retry import Operation
from . import exc
from .resolution import release, resolve, transaction_ids
from .unfollowed import lost_under_fn, not_run_again, refuse_lazy

__all__ = ["Final", "Runs", "Stage", "chained", "driver_error_of", "watching"]


class Final(Exception):
    """Carries an error that settles the call through the retry engine
    unchanged (the engine classifies it as not retryable)."""

    def __init__(self, error: BaseException):
        super().__init__()
        self.error = error


class Stage(enum.Enum):
    """Where the current run is; what a failure there proves."""

    CONNECT = "connect"  # nothing of this run was sent
    BODY = "body"  # fn runs; nothing committed yet
    COMMIT = "commit"  # COMMIT sent
    COMMITTED = "committed"
    RESOLVE = "resolve"  # asking what became of a lost COMMIT: reads only
    ROLLED_BACK = "rolled back"  # proven not committed


#: The run whose statements the engine listeners watch in this context.
watching: contextvars.ContextVar[Runs | None] = contextvars.ContextVar(
    "orca_db_sqlalchemy_run", default=None
)


class Runs:
    """The runs of one run_transaction call and the judge of their failures."""

    def __init__(
        self,
        engine: Engine,
        factory: Callable[[], Any] | None,
        operation: Operation,
        fn: Callable[[Any], Any],
        resolve_commit: bool | None,
    ):
        self.engine = engine
        self.factory = factory
        self.operation = operation
        self.fn = fn
        self.resolve_commit = resolve_commit
        self.stage = Stage.CONNECT
        self.connection: Connection | None = None
        self.driver_connection: Any = None
        self.pending: LostCommit | None = None
        #: Whether the run sent a statement that is not a read, or COMMIT.
        self.wrote = False
        self.committed_along = False
        #: The database of a run_transaction inside fn that committed.
        self.committed_inside: str | None = None
        #: fn committed a write on another connection of the engine (those
        #: it wrote on are listed); its own connection was lost (and fn
        #: caught the error): the listeners in transactions.py set these.
        self.committed_elsewhere = False
        self.wrote_elsewhere: list[Connection] = []
        self.lost_in_body: BaseException | None = None
        #: What fn returned: a lost COMMIT found committed returns it.
        self.result: Any = None
        #: The SQLAlchemy error behind each driver error handed to the engine.
        self.carried: dict[int, BaseException] = {}

    # ----- one attempt -------------------------------------------------------

    def attempt(self) -> Any:
        try:
            if self.pending is None:
                result = self._run_once()
                if self.pending is None:
                    return result
            return self._settle_lost_commit()
        except Exception as error:
            failed = error
        # Raised outside the handler: the driver error keeps its own chain.
        raise self._for_engine(failed)

    def _run_once(self) -> Any:
        self.stage = Stage.CONNECT
        self.wrote = self.committed_along = self.committed_elsewhere = False
        self.committed_inside = self.lost_in_body = None
        self.wrote_elsewhere = []
        self.connection = self.driver_connection = None
        token = watching.set(self)
        try:
            if self.factory is None:
                return self._run_core()
            return self._run_orm(self.factory)
        finally:
            watching.reset(token)

    def _run_core(self) -> Any:
        connection = self._connect()
        try:
            connection.begin()
            self._started(connection)
            self.result = self.fn(connection)
            self._returned()
            # Also a transaction autobegun after fn's own connection.commit().
            if connection.in_transaction():
                self._commit(connection, connection.commit)
            return self.result
        finally:
            release(connection)  # rolls back what was not committed

    def _run_orm(self, factory: Callable[..., Any]) -> Any:
        connection = self._connect()
        # The session joins this connection: it begins the transaction on
        # it and commits it (SQLAlchemy's "join an external connection").
        session = factory(bind=connection)
        try:
            session.begin()
            self._started(connection)
            self.result = self.fn(session)
            self._returned()
            if session.in_transaction():
                session.flush()
                self._commit(connection, session.commit)
            return self.result
        finally:
            with contextlib.suppress(Exception):
                session.close()
            release(connection)

    def _connect(self) -> Connection:
        connection = self.engine.connect()
        if getattr(connection.connection.dbapi_connection, "autocommit", False):
            # An AUTOCOMMIT engine: each statement of fn would commit on its
            # own, and a second run apply the first one's again. This one
            # runs in a transaction (the pool restores autocommit).
            level = self.engine.dialect.default_isolation_level or "READ COMMITTED"
            connection.execution_options(isolation_level=level)
        return connection

    def _started(self, connection: Connection) -> None:
        self.connection = connection
        self.driver_connection = connection.connection.dbapi_connection
        self.stage = Stage.BODY

    def _returned(self) -> None:
        refuse_lazy(self.result, self.fn)
        if self.lost_in_body is not None:
            self.stage = Stage.ROLLED_BACK
            raise lost_under_fn(self.operation.alias, self.lost_in_body)

    def _commit(self, connection: Connection, commit: Callable[[], None]) -> None:
        asked = self._resolvable() and (
            self.resolve_commit or (self.resolve_commit is None and self.wrote)
        )
        xid = pid = cluster = None
        if asked:
            xid, pid, cluster = transaction_ids(connection)
        self.stage = Stage.COMMIT
        try:
            commit()
        except Exception as error:
            self._commit_failed(error, asked, (xid, pid, cluster))

    def _resolvable(self) -> bool:
        """Whether COMMIT will commit anything: an aborted transaction
        ends in a ROLLBACK, and asks nothing."""
        return drivers.transaction_status(self.driver_connection) != drivers.INERROR

    def _commit_failed(self, error: BaseException, asked: bool, ids: tuple) -> None:
        if isinstance(error, exc.TransactionRolledBack):
            # The plugin found the connection closed before COMMIT left.
            self.stage = Stage.ROLLED_BACK
            raise error
        failure = classify(driver_error_of(error))
        if not isinstance(error, exc.OutcomeUnknown) and not failure.retryable:
            # Refused by the server (a deferred constraint, 40001): rolled
            # back; the judge decides whether to run again.
            self.stage = Stage.ROLLED_BACK
            raise error
        self.operation.last_failure = failure
        if not asked:
            why = "off" if self.resolve_commit is False else "not asked for reads"
            raise Final(
                exc.wrap(
                    chained(
                        core.OutcomeUnknown(
                            f"The connection to database {self.operation.alias!r} was lost "
                            f"while COMMIT was in flight ({failure.error_type}); the "
                            f"transaction may or may not have committed (resolve_commit: {why})."
                        ),
                        driver_error_of(error),
                    ),
                    "COMMIT",
                )
            ) from None
        xid, pid, cluster = ids
        cause = driver_error_of(error)
        self.pending = LostCommit(xid, pid, cluster, self.result, [], cause, failure)

    # ----- a lost COMMIT -----------------------------------------------------

    def _settle_lost_commit(self) -> Any:
        pending = self.pending
        assert pending is not None
        if pending.xid is None:
            # No id though one is assigned before COMMIT: the transaction
            # ran on a standby, where nothing it did can have an effect.
            return self._committed()
        self.stage = Stage.RESOLVE
        status = resolve(self.engine, self.driver_connection, pending, self.operation)
        if status == "committed":
            return self._committed()
        self.pending = None
        if status == "aborted":
            self.stage = Stage.ROLLED_BACK
            raise pending.cause  # retryable: the engine runs it all again
        raise unresolved(self.operation.alias, pending, status) from pending.cause

    def _committed(self) -> Any:
        pending = self.pending
        assert pending is not None
        self.pending = None
        self.stage = Stage.COMMITTED
        return pending.result

    # ----- what the retry engine sees ------------------------------------------

    def _for_engine(self, error: BaseException) -> BaseException:
        """The driver error the core judges (``error`` is kept to be raised
        instead), or ``error`` wrapped as final."""
        if isinstance(error, (Final, core.ScaleEventError)):
            return error  # the core's own errors settle the call
        if isinstance(error, exc.ScaleEventError) and not isinstance(
            error, exc.TransactionRolledBack
        ):
            return Final(error)  # OutcomeUnknown, RetriesExhausted: never run again
        inner = driver_error_of(error)
        failure = classify(inner)
        if not (failure.retryable or failure.conflict):
            return Final(error)
        self.carried[id(inner)] = error
        return inner

    def judge(self, error: BaseException, failure: Failure) -> BaseException | None:
        """``None`` when running ``fn`` again cannot apply it twice, else
        the error to raise."""
        ours = self.carried.pop(id(error), error)
        if self.stage in (Stage.CONNECT, Stage.RESOLVE):
            return None if failure.retryable else ours
        committed_nothing = self.stage is Stage.ROLLED_BACK or (
            self.stage is Stage.BODY and (failure.conflict or self._lost())
        )
        if not decisions.rerun_transaction(
            failure, committed_nothing=committed_nothing, settings=self.operation.settings
        ):
            return ours
        return not_run_again(self, failure.error_type)

    def _lost(self) -> bool:
        """The run's own connection was lost: the server rolled its
        transaction back (a failure elsewhere proves nothing of it)."""
        connection = self.connection
        if connection is None or self.driver_connection is None:
            return False
        return connection.invalidated or drivers.is_closed(self.driver_connection)


def driver_error_of(error: BaseException) -> BaseException:
    """The driver error behind a SQLAlchemy error (and behind ours)."""
    if isinstance(error, sa_exc.DBAPIError) and error.orig is not None:
        return driver_error(error.orig)
    return driver_error(error)


def chained(error: BaseException, cause: BaseException) -> BaseException:
    """``error`` with ``cause`` as its ``__cause__``."""
    error.__cause__ = cause
    return error
