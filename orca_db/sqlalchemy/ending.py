"""The plugin's hooks at a transaction's end (the dialect's ``do_commit`` and
``do_rollback``, which no event reports) and SQLAlchemy's ``handle_error``,
which turns what a hook judged into the plugin's errors
(``orca_db.sqlalchemy.exc``) once SQLAlchemy has marked the connection
invalid."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy.pool import PoolProxiedConnection

from .. import deadlines, decisions, drivers
from ..classify import SERVER_CLOSED, Failure, classify
from ..options import RetrySettings
from . import sessions, watching
from .exc import core_error, wrap
from .pooling import LINK

#: The attribute carrying the core's error from a hook to handle_error.
RAISE_ATTRIBUTE = "_orca_db_raise"


class EndingHooks:
    """Mixed into ``orca_db.sqlalchemy.hooks.Host``."""

    alias: str
    settings: RetrySettings
    dialect: Any
    statement_deadline: float | None
    commit: Callable[[Any], None]
    rollback: Callable[[Any], None]
    #: Set by the statement hook once a statement may have changed a session.
    sessions_seen: bool
    #: No session followed, no statement deadline (``hooks.Host``).
    plain: bool

    # ----- COMMIT -----------------------------------------------------------------

    def do_commit(self, dbapi_connection: Any) -> None:
        # The common case: no session followed, no deadline, and the
        # socket has nothing to read (the server has not closed it).
        if self.plain and not deadlines.open_caps:
            try:
                link = dbapi_connection._connection_record.info.get(LINK)
                raw = dbapi_connection.dbapi_connection
            except AttributeError:  # a driver connection itself
                link = None
            if link is not None and link.connection is raw and not link.poll(0):
                try:
                    self.commit(dbapi_connection)
                except Exception as error:
                    self._commit_failed(error, False, None)
                return
        self._commit(dbapi_connection)

    def _commit(self, dbapi_connection: Any) -> None:
        # Found closed before sending: the COMMIT never left (fact 1 of
        # orca_db.decisions), the transaction is rolled back.
        # SQLAlchemy passes the pool's proxy: asked directly, each attribute
        # the driver connection lacks (the pool's __getattr__) would raise
        # and format an AttributeError; its driver connection answers.
        raw: Any = (
            dbapi_connection.dbapi_connection
            if isinstance(dbapi_connection, PoolProxiedConnection)
            else dbapi_connection
        )
        closed_before = _closed_in_transaction(dbapi_connection, raw)
        watch = None
        if deadlines.open_caps or self.statement_deadline:  # else nothing is armed
            watch = watching.watch(dbapi_connection, self.statement_deadline)
        try:
            self.commit(dbapi_connection)
        except Exception as error:
            self._commit_failed(error, closed_before, watch)
        if watch is not None:
            watching.ended(watch)
        if self.sessions_seen:
            sessions.transaction_ended(dbapi_connection, True)

    def _commit_failed(self, error: Exception, closed_before: bool, watch: Any) -> None:
        """The COMMIT raised ``error`` (called while it is handled)."""
        failure = classify(error)
        if watching.ended(watch) and not closed_before:
            setattr(error, RAISE_ATTRIBUTE, watching.commit_cut_off(self.alias))
            self._report("transaction", "COMMIT", failure)
            raise error
        if closed_before:
            failure = SERVER_CLOSED
        elif not failure.retryable:
            raise error
        verdict = decisions.commit_lost(failure)
        rolled_back = verdict is decisions.Verdict.ROLLED_BACK
        name = "TransactionRolledBack" if rolled_back else "OutcomeUnknown"
        setattr(error, RAISE_ATTRIBUTE, core_error(name, self.alias, failure))
        self._report("transaction", "COMMIT", failure)
        raise error

    def watch_rollbacks(self) -> None:
        """From now on every ROLLBACK on this engine goes through
        :meth:`do_rollback` (a session followed, a cap opened)."""
        self.dialect.do_rollback = self.do_rollback
        with _lock:
            _unwatched.discard(self)

    def do_rollback(self, dbapi_connection: Any) -> None:
        # Installed on the dialect once it has something to do (see
        # plugin.install): the pool's reset-on-return calls it on every
        # return, where it would otherwise cost a call for nothing.
        if not (deadlines.open_caps or self.statement_deadline):
            self.rollback(dbapi_connection)
        else:
            watch = watching.watch(dbapi_connection, self.statement_deadline)
            try:
                self.rollback(dbapi_connection)
            except Exception as error:
                if watching.ended(watch):
                    setattr(error, RAISE_ATTRIBUTE, watching.rollback_cut_off(self.alias))
                    self._report("transaction", "ROLLBACK", classify(error))
                raise
            watching.ended(watch)
        if self.sessions_seen:
            sessions.transaction_ended(dbapi_connection, False)

    # ----- errors -----------------------------------------------------------------

    def handle_error(self, context: Any) -> BaseException | None:
        core = getattr(context.original_exception, RAISE_ATTRIBUTE, None)
        if core is None:
            return None
        context.is_disconnect = True  # SQLAlchemy invalidates the connection
        core.__cause__ = context.original_exception
        return wrap(core, context.statement)

    def _report(self, phase: str, statement: str, failure: Failure) -> None:
        from ..retry import Operation, active_operation, report

        if active_operation(self.alias) is not None:
            return  # run_transaction's operation reports how it settled
        operation = Operation(self.alias, phase, self.settings, statement=statement)
        operation.last_failure = failure
        report(operation, "raised")


#: The hooks whose ROLLBACK is not watched yet (no session followed, no
#: statement deadline, no cap opened since they were made).
_unwatched: weakref.WeakSet[EndingHooks] = weakref.WeakSet()
_lock = threading.Lock()


def leave_rollbacks_unwatched(hooks: EndingHooks) -> None:
    """Leave the dialect's own ``do_rollback`` in place on ``hooks``' engine
    until a cap opens or a session is followed. An engine made inside a
    cap (a Lambda handler's first invocation) is watched at once: the cap's
    ``on_any_open`` ran before it existed. (Added, then asked, under the
    lock that ``_watch_all_rollbacks`` takes: a cap opening meanwhile in
    another thread either finds it added or is counted here.)"""
    with _lock:
        _unwatched.add(hooks)
        watch_now = bool(deadlines.open_caps)
    if watch_now:
        hooks.watch_rollbacks()


def _watch_all_rollbacks() -> None:
    with _lock:
        waiting = list(_unwatched)
    for hooks in waiting:
        hooks.watch_rollbacks()


deadlines.on_any_open.append(_watch_all_rollbacks)


def _closed_in_transaction(dbapi_connection: Any, raw: Any) -> bool:
    """A transaction is open on ``raw`` and the server has closed it; asked
    on the Link the pool record keeps (made at checkout), not a new one per
    COMMIT. Its socket is polled first: nothing to read, nothing closed."""
    try:
        if raw is dbapi_connection:
            link = drivers.Link(raw)
        else:
            # The pool record's info (the proxy's own ``info`` is a property
            # made once per checkout, two calls more).
            record = getattr(dbapi_connection, "_connection_record", None)
            info = dbapi_connection.info if record is None else record.info
            link = info.get(LINK)
            if link is None or link.connection is not raw:
                link = info[LINK] = drivers.Link(raw)
        return bool(
            link.poll(0)
            and not raw.autocommit
            and drivers.transaction_open(link.transaction_status())
            and link.server_closed()
        )
    except Exception:
        return False
