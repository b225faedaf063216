"""Whole-transaction retries for SQLAlchemy: :func:`run_transaction`.

What ``orca_db.retry_atomic`` is to Django, for an engine with the
``orca_db`` plugin: a scale event rolls a transaction back as a whole, so
the only correct retry is to run the whole function again, and only when it
is certain that no run committed. Every decision is the core's
(:mod:`orca_db.decisions`, :mod:`orca_db.commit_resolution`, the retry
engine :mod:`orca_db.retry` with its backoff, deadline and one event); this
module only says at which stage of a run a failure came:

- **connect**: nothing of the run was sent: try again;
- **body** (``fn`` runs): a lost connection or a conflict (40001/40P01)
  rolled the transaction back (F1): run ``fn`` again, unless ``fn`` sent
  ``COMMIT`` itself;
- **commit**: the plugin tells a COMMIT that never left (rolled back: run
  again) from one lost in flight; the latter is resolved with
  ``pg_xact_status`` on the id read before COMMIT, on a new connection to
  the same cluster: committed (``fn``'s result is returned, ``fn`` is not
  run again), aborted (run again) or ``OutcomeUnknown``, never a guess.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from .. import decisions, drivers
from .. import exceptions as core
from ..classify import Failure, classify, driver_error
from ..commit_resolution import (
    LostCommit,
    question_failed,
    transaction_id,
    transaction_status,
    unresolved,
)
from ..retry import Operation, report, run
from ..sql import profile
from . import exc
from .plugin import settings_of

__all__ = ["run_transaction"]

logger = logging.getLogger("orca_db.retry")

T = TypeVar("T")


def run_transaction(
    target: Any,
    fn: Callable[[Any], T],
    *,
    deadline: float | None = None,
    resolve_commit: bool | None = None,
    retry_conflicts: bool | None = None,
) -> T:
    """Run ``fn`` in one transaction and commit it; when a scale event (or,
    with ``retry_conflicts``, a serialization failure or deadlock) rolls it
    back, run the whole of ``fn`` again on a new connection.

    ``target`` is an :class:`~sqlalchemy.engine.Engine` created with the
    ``orca_db`` plugin (``fn(connection)`` runs inside
    ``connection.begin()``), or a ``sessionmaker`` bound to one
    (``fn(session)`` runs inside ``session.begin()``; what it added is
    flushed before COMMIT). Returns what ``fn`` returned.

    - ``deadline``: seconds for all the runs together (default: the
      engine's ``aurora["deadline"]``), capped on Lambda; the attempts and
      the backoff are the engine's ``aurora`` settings.
    - ``resolve_commit``: read the transaction id before COMMIT (one round
      trip) so that a COMMIT lost in flight is resolved with
      ``pg_xact_status``. ``None`` (default): when ``fn`` sent a statement
      that is not a read; ``True``: always; ``False``: never. Unresolved,
      a lost COMMIT raises ``OutcomeUnknown``.
    - ``retry_conflicts``: run ``fn`` again after 40001/40P01 (default: the
      engine's ``aurora["retry_conflicts"]``, on).

    Raises ``RetriesExhausted`` when attempts or time ran out with nothing
    committed, ``OutcomeUnknown`` when a COMMIT may have been applied and
    nothing could tell; any other error of ``fn`` surfaces unchanged, its
    transaction rolled back. ``fn`` may run more than once: it must have no
    side effects outside the transaction unless they are idempotent.
    """
    if deadline is not None and not deadline >= 0:
        raise ValueError(f"run_transaction() deadline must be at least 0, got {deadline!r}.")
    if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn):
        raise TypeError(
            f"run_transaction() cannot run {fn!r}: its body would run after the transaction "
            f"ends. Pass a plain function."
        )
    engine, factory = _engine_of(target)
    settings = settings_of(engine)
    if settings is None:
        raise sa_exc.ArgumentError(
            "run_transaction() needs an engine created with the orca_db plugin: "
            "create_engine(url, plugins=['orca_db'], aurora={...}) (docs/sqlalchemy.md)."
        )
    if not settings.enabled:
        return _once(engine, factory, fn)
    if deadline is not None:
        settings = dataclasses.replace(settings, deadline=deadline)
    if retry_conflicts is not None:
        settings = dataclasses.replace(settings, retry_conflicts=retry_conflicts)
    _watch(engine)
    # The name the plugin's hooks give this engine's operations: a connect
    # inside this operation is then one attempt, retried by this one.
    alias = engine.url.database or "default"
    operation = Operation(alias, "transaction", settings)
    runs = _Runs(engine, factory, operation, fn, resolve_commit)
    try:
        result = run(operation, runs.attempt, runs.judge)
    except _Final as final:
        failed: BaseException = final.error
    except Exception as error:
        failed = error
    else:
        if operation.attempts == 1 and operation.last_failure is not None:
            # Resolved within the first run (a lost COMMIT found committed):
            # the engine only reports what it retried.
            report(operation, "recovered")
        _committed_inside(alias)
        return result
    settled = _settled(failed, runs, alias)
    if isinstance(settled, exc.OutcomeUnknown):
        _committed_inside(alias)
    raise settled


def _committed_inside(alias: str) -> None:
    """This call committed (or may have) inside the fn of another: that one
    must not run again (its rollback does not undo this commit)."""
    outer = _watching.get()
    if outer is not None and outer.stage is Stage.BODY:
        outer.committed_inside = outer.committed_inside or alias


def _settled(error: BaseException, runs: _Runs, alias: str) -> BaseException:
    """The error the caller gets: the core's ones as SQLAlchemy's."""
    pending = runs.pending
    if pending is not None:
        if isinstance(error, core.RetriesExhausted):
            error = _chained(
                core.OutcomeUnknown(
                    f"The COMMIT on database {alias!r} was lost in flight and the deadline "
                    f"ran out before the server could say whether it committed."
                ),
                error,
            )
        elif not isinstance(error, (core.OutcomeUnknown, exc.OutcomeUnknown)):
            # Asking failed for good: the error must say that COMMIT was in flight.
            error = _chained(question_failed(alias, pending, error), error)
    if isinstance(error, core.ScaleEventError):
        ours = exc.wrap(error, None)
        ours.__cause__ = error.__cause__
        return ours
    return error


def _chained(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


def _engine_of(target: Any) -> tuple[Engine, Callable[[], Any] | None]:
    if isinstance(target, Engine):
        return target, None
    bind = getattr(target, "kw", {}).get("bind") if callable(target) else None
    if isinstance(bind, Engine):
        return bind, target
    raise TypeError(
        f"run_transaction() takes an Engine or a sessionmaker bound to one engine, "
        f"not {type(target).__name__}."
    )


def _once(engine: Engine, factory: Callable[[], Any] | None, fn: Callable[[Any], T]) -> T:
    """``aurora={"enabled": False}``: one run, as SQLAlchemy runs it."""
    if factory is None:
        with engine.begin() as connection:
            return fn(connection)
    with factory() as session, session.begin():
        return fn(session)


class _Final(Exception):
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


#: Where a pool record keeps its connection's cluster identity.
_CLUSTER_KEY = "orca_db_cluster_identity"

#: The run whose statements the engine listeners watch in this context.
_watching: contextvars.ContextVar[_Runs | None] = contextvars.ContextVar(
    "orca_db_sqlalchemy_run", default=None
)


class _Runs:
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
        self.wrote = self.committed_along = False
        self.committed_inside = None
        self.connection = self.driver_connection = None
        token = _watching.set(self)
        try:
            if self.factory is None:
                return self._run_core()
            return self._run_orm(self.factory)
        finally:
            _watching.reset(token)

    def _run_core(self) -> Any:
        connection = self._connect()
        try:
            transaction = connection.begin()
            self._started(connection)
            self.result = self.fn(connection)
            if transaction.is_active:
                self._commit(connection, transaction.commit)
            return self.result
        finally:
            _release(connection)  # rolls back what was not committed

    def _run_orm(self, factory: Callable[..., Any]) -> Any:
        connection = self._connect()
        # The session joins this connection: it begins the transaction on
        # it and commits it (SQLAlchemy's "join an external connection").
        session = factory(bind=connection)
        try:
            session.begin()
            self._started(connection)
            self.result = self.fn(session)
            if session.in_transaction():
                session.flush()
                self._commit(connection, session.commit)
            return self.result
        finally:
            with contextlib.suppress(Exception):
                session.close()
            _release(connection)

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

    def _commit(self, connection: Connection, commit: Callable[[], None]) -> None:
        asked = self._resolvable() and (
            self.resolve_commit or (self.resolve_commit is None and self.wrote)
        )
        xid = pid = cluster = None
        if asked:
            # The cluster's identity is read once per driver connection (in
            # the round trip that reads the id), kept with its pool record.
            view = _CoreView(connection)
            info = connection.connection.info
            view._orca_cluster_identity = info.get(_CLUSTER_KEY)
            xid, pid, cluster = transaction_id(view)
            info[_CLUSTER_KEY] = view._orca_cluster_identity
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
        failure = classify(_driver_error(error))
        if not isinstance(error, exc.OutcomeUnknown) and not failure.retryable:
            # Refused by the server (a deferred constraint, 40001): rolled
            # back; the judge decides whether to run again.
            self.stage = Stage.ROLLED_BACK
            raise error
        self.operation.last_failure = failure
        if not asked:
            why = "off" if self.resolve_commit is False else "not asked for reads"
            raise _Final(
                exc.wrap(
                    _chained(
                        core.OutcomeUnknown(
                            f"The connection to database {self.operation.alias!r} was lost "
                            f"while COMMIT was in flight ({failure.error_type}); the "
                            f"transaction may or may not have committed (resolve_commit: {why})."
                        ),
                        _driver_error(error),
                    ),
                    "COMMIT",
                )
            ) from None
        xid, pid, cluster = ids
        cause = _driver_error(error)
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
        view = _CoreView(None, self.engine.connect)
        try:
            status = transaction_status(view, self.driver_connection, pending, self.operation)
        finally:
            view.close()
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
        if isinstance(error, (_Final, core.ScaleEventError)):
            return error  # the core's own errors settle the call
        if isinstance(error, exc.ScaleEventError) and not isinstance(
            error, exc.TransactionRolledBack
        ):
            return _Final(error)  # OutcomeUnknown, RetriesExhausted: never run again
        inner = _driver_error(error)
        failure = classify(inner)
        if not (failure.retryable or failure.conflict):
            return _Final(error)
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
        if self.committed_along:
            return core.OutcomeUnknown(
                f"The function run by run_transaction on database {self.operation.alias!r} "
                f"sent COMMIT itself, which committed what it had done before; it then "
                f"failed ({failure.error_type}) and was not run again."
            )
        if self.committed_inside is not None:
            # Not an OperationalError: a decorator re-running the caller
            # would commit that inner transaction a second time.
            return core.OutcomeUnknown(
                f"The transaction on database {self.operation.alias!r} was rolled back "
                f"({failure.error_type}) and not run again: a run_transaction on database "
                f"{self.committed_inside!r} inside it committed, which this rollback does "
                f"not undo."
            )
        return None

    def _lost(self) -> bool:
        """The run's own connection was lost: the server rolled its
        transaction back (a failure elsewhere proves nothing of it)."""
        connection = self.connection
        if connection is None or self.driver_connection is None:
            return False
        return connection.invalidated or drivers.is_closed(self.driver_connection)


def _driver_error(error: BaseException) -> BaseException:
    """The driver error behind a SQLAlchemy error (and behind ours)."""
    if isinstance(error, sa_exc.DBAPIError) and error.orig is not None:
        return driver_error(error.orig)
    return driver_error(error)


class _CoreView:
    """A SQLAlchemy connection as :mod:`orca_db.commit_resolution` reads a
    connection: ``connection`` (the driver's), ``cursor()``,
    ``ensure_connection()``, ``close()``. Its queries go through raw
    cursors: the retry engine of run_transaction judges their failures.

    With an ``opener`` it makes its own connections (to ask what became of
    a lost COMMIT), in autocommit at the driver for the questions only:
    ``pg_stat_activity`` is read afresh each time, and the connection goes
    back to the pool as it came (no isolation level set on it)."""

    def __init__(
        self, connection: Connection | None, opener: Callable[[], Connection] | None = None
    ):
        self._sa = connection
        self._opener = opener
        self._autocommit = False
        self._orca_cluster_identity: Any = None

    @property
    def connection(self) -> Any:
        sa = self._sa
        if sa is None or sa.closed or sa.invalidated:
            return None
        return sa.connection.dbapi_connection

    def ensure_connection(self) -> None:
        if self.connection is None:
            self.close()
            assert self._opener is not None
            self._sa = self._opener()
            driver: Any = self._sa.connection.dbapi_connection
            self._autocommit = driver.autocommit
            driver.autocommit = True

    def cursor(self) -> contextlib.closing:
        return contextlib.closing(self.connection.cursor())

    def close(self) -> None:
        if self._sa is not None and self._opener is not None:
            driver = self.connection
            with contextlib.suppress(Exception):
                if driver is not None and not drivers.is_broken(driver):
                    driver.autocommit = self._autocommit
            _release(self._sa)
            self._sa = None


def _release(connection: Connection) -> None:
    """Close ``connection``; one whose driver connection broke where
    SQLAlchemy did not see it (a raw cursor's query) is invalidated first,
    never handed to the pool."""
    with contextlib.suppress(Exception):
        if not connection.closed and not connection.invalidated:
            driver = connection.connection.dbapi_connection
            if driver is None or drivers.is_broken(driver):
                connection.invalidate()
    with contextlib.suppress(Exception):
        connection.close()


# ----- what fn sends ---------------------------------------------------------------


def _watch(engine: Engine) -> None:
    """Listen once per engine to what the runs send on their connection."""
    if not event.contains(engine, "before_cursor_execute", _seen_statement):
        event.listen(engine, "before_cursor_execute", _seen_statement)
        event.listen(engine, "commit", _seen_commit)


def _seen_statement(
    connection: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> None:
    runs = _watching.get()
    if runs is None or connection is not runs.connection:
        return
    # Reads need no resolution; anything unrecognised counts as a write.
    if not runs.wrote and not profile(statement).maybe_read:
        runs.wrote = True
    # COMMIT sent as SQL: what came before is committed, whatever follows.
    if not runs.committed_along and decisions.may_commit(statement):
        runs.committed_along = True


def _seen_commit(connection: Connection) -> None:
    runs = _watching.get()
    if runs is not None and connection is runs.connection and runs.stage is Stage.BODY:
        runs.committed_along = True  # fn committed (connection.commit()) itself
