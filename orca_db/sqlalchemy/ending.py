"""The plugin's hooks at a transaction's end (the dialect's ``do_commit`` and
``do_rollback``, which no event reports), and how every hook hands SQLAlchemy
an error it judged (:func:`lose`): the ``Connection`` invalidated, as
SQLAlchemy's own disconnect handling does, then the plugin's error
(``orca_db.sqlalchemy.exc``) raised.

No ``handle_error`` listener does it: any dialect event makes SQLAlchemy
iterate the dialect's (empty) ``do_execute`` dispatch before every
statement, about 1,200 instructions for nothing (docs/performance.md)."""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, NoReturn

from sqlalchemy.engine import Connection
from sqlalchemy.pool import PoolProxiedConnection

from .. import deadlines, decisions, drivers
from ..classify import SERVER_CLOSED, Failure, classify
from ..options import RetrySettings
from . import sessions, watching
from .exc import core_error, wrap
from .pooling import LINK


def lose(
    connection: Connection | None, core: BaseException, error: BaseException, statement: str | None
) -> NoReturn:
    """Raise ``core`` (the core's judgement of the driver's ``error``) as
    the plugin's error, once ``connection`` is invalidated as SQLAlchemy
    invalidates it after an error its dialect calls a disconnect. First
    every connection the pool made before now is marked to be replaced at
    its next checkout (what lost this one took the others too), then this
    one. SQLAlchemy then re-raises the error as it is (not a driver error:
    nothing to wrap), runs no ROLLBACK on the lost connection, and the next
    use of the ``Connection`` takes a new one (after ``rollback()``, as
    after any disconnect)."""
    core.__cause__ = error
    if connection is not None and not connection.closed and not connection.invalidated:
        connection.engine.pool._invalidate(connection.connection, error)
        connection.invalidate(error)
    raise wrap(core, statement) from error


#: The Connection methods that call ``do_commit`` and ``do_rollback``.
_ENDING_METHODS = frozenset({"_commit_impl", "_rollback_impl"})


def _ending_connection() -> Connection | None:
    """The ``Connection`` whose COMMIT or ROLLBACK is failing: SQLAlchemy
    hands ``do_commit`` and ``do_rollback`` only the pool's proxy, so it is
    found as the ``self`` of the ``Connection._commit_impl`` or
    ``_rollback_impl`` that called them (a walk of a few frames, on this
    error path only). ``None`` when neither did: the pool's reset-on-return,
    which invalidates its entry itself when the ROLLBACK raises."""
    frame = sys._getframe(1)
    for _ in range(6):
        if frame.f_code.co_name in _ENDING_METHODS:
            owner = frame.f_locals.get("self")
            if isinstance(owner, Connection):
                return owner
        if frame.f_back is None:
            break
        frame = frame.f_back
    return None


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
            self._report("transaction", "COMMIT", failure)
            lose(_ending_connection(), watching.commit_cut_off(self.alias), error, "COMMIT")
        if closed_before:
            failure = SERVER_CLOSED
        elif not failure.retryable:
            raise error
        verdict = decisions.commit_lost(failure)
        rolled_back = verdict is decisions.Verdict.ROLLED_BACK
        name = "TransactionRolledBack" if rolled_back else "OutcomeUnknown"
        self._report("transaction", "COMMIT", failure)
        lose(_ending_connection(), core_error(name, self.alias, failure), error, "COMMIT")

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
                    self._report("transaction", "ROLLBACK", classify(error))
                    lose(
                        _ending_connection(),
                        watching.rollback_cut_off(self.alias),
                        error,
                        "ROLLBACK",
                    )
                raise
            watching.ended(watch)
        if self.sessions_seen:
            sessions.transaction_ended(dbapi_connection, False)

    # ----- reporting --------------------------------------------------------------

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
