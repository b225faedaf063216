"""The statement path: what the retrying cursor does before, around and
after each ``execute``/``executemany``.

The success path is kept to a few attribute reads and one call into the
driver per statement; everything else happens only after a failure, or for
the rare statement that changes session state."""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable
from time import monotonic
from types import MethodType
from typing import Any

from django.db.utils import Error as DjangoError

from .. import cut_off, deadlines, decisions, drivers
from ..classify import SERVER_CLOSED, Failure, classify
from ..elsewhere import counted_methods
from ..exceptions import DJANGO_ERRORS, OutcomeUnknown, ScaleEventError
from ..outcomes import DeadlineExceeded
from ..retry import Operation, active_operation, recover, report
from ..sql import profile
from ..sql.lexical import PROFILES
from .replay import run_again
from .session_check import callproc_method, copy_method, observe
from .watching import watch_call, watched

#: libpq's transaction statuses under which a transaction may be open: all
#: but IDLE. UNKNOWN is a connection that broke outside a statement of ours
#: (a server-side cursor's fetch, the driver used directly): whether a
#: transaction was open on it nobody can tell any more, so it counts as
#: open (rule 4 of docs/retry-safety.md): the statement fails on it, and the
#: connection refuses work until the application ends the transaction.
_OPEN = frozenset({drivers.ACTIVE, drivers.INTRANS, drivers.INERROR, drivers.UNKNOWN})


def _statement_runner(many: bool, parent: Callable[..., Any]) -> Callable[..., Any]:
    """``_execute`` (or ``_executemany``) of the retrying cursor: one body
    for both, made for each method of each class so that the hot path
    pays no extra call; ``parent`` is the wrapper class's own method, called
    as a plain function (cheaper than ``super()`` or a bound method on
    every statement)."""

    def run(wrapper: Any, sql: Any, params: Any, *ignored_wrapper_args: Any) -> Any:
        db = wrapper.db
        state = db.orca_state  # one fetch; its fields are slots
        link = state.link  # None while the connection refuses work
        if link is None or link.connection is not db.connection:
            if state.refusal is not None:
                return db._orca_refused(sql)
            # Retries off, or the cursor's connection was lost or replaced.
            link = relink(db, wrapper)
            if link is None:
                return parent(wrapper, sql, params)  # retries off: Django's own behaviour
        try:
            statement = PROFILES[sql]
        except (KeyError, TypeError):  # a new text, or not a text
            statement = profile(sql)
        session = state.session
        if db.in_atomic_block or link.transaction_status() in _OPEN:
            # Nothing is retried inside a transaction: no clock needed.
            in_transaction, started = True, None
        else:
            started = monotonic()
            in_transaction = not db.autocommit
            if session.pending:
                # The transaction ended through the driver itself: whether
                # its session changes committed is unknown.
                session.transaction_ended(None)
            # Reads are not probed: one lost on the way is replayed anyway.
            probe = in_transaction or not statement.maybe_read
            if probe and link.poll(0) and link.server_closed():
                reconnect_before_send(db, wrapper, sql)
        try:
            if deadlines.open_caps or state.statement_deadline:
                # A deadline applies: the statement is watched (watching.py).
                execute = MethodType(parent, wrapper)
                result = _watched(db, sql, params, execute, in_transaction)
            else:
                result = parent(wrapper, sql, params)
        except DjangoError as error:
            # A replayed statement is observed below like any other: a
            # replayed SET is part of the session to restore. (A statement
            # cut off at its deadline is not replayed: _recover re-raises.)
            execute = MethodType(parent, wrapper)
            result = _recover(wrapper, error, sql, params, many, execute, in_transaction, started)
        if statement.observed and (statement.tracked or session.pending):
            observe(db, wrapper, statement, sql, params, in_transaction, many)
        return result

    run.__name__ = run.__qualname__ = "_executemany" if many else "_execute"
    return run


def _watched(
    db: Any, sql: Any, params: Any, execute: Callable[..., Any], in_transaction: bool
) -> Any:
    """The statement under its watch (``None`` when no deadline applies
    after all): cut off at the deadline, it raises ``DeadlineExceeded``."""
    return watched(
        db,
        watch_call(db.orca_state),
        lambda: _cut_off(db, sql, in_transaction),
        execute,
        sql,
        params,
    )


def retrying_class(cursor_class: type, driver_cursor: type | None = None) -> type:
    """The retrying subclass of a backend's cursor wrapper class (any
    parent's own wrapper is kept: PostgreSQL's debug wrapper adds copy
    methods).

    Retries ``execute``/``executemany`` after their first failure: sits
    below Django's execute wrappers, so each retried call is one call for
    them, and above the driver cursor, which it replaces after a
    reconnect: no dead cursor is carried across. The methods go straight
    into the class, no mixin: Django's ``CursorWrapper`` has a
    ``__getattr__``, so no attribute read on it is specialized, and each
    walks a class list that this keeps at three.

    The methods of ``driver_cursor`` (the driver's cursor class) that send
    SQL around ``execute`` are counted (``sent_unseen``); only those it
    has, so that ``hasattr`` still tells the drivers apart."""
    cls = type(
        f"Retrying{cursor_class.__name__}",
        (cursor_class,),
        {
            "__module__": __name__,
            "_execute": _statement_runner(False, getattr(cursor_class, "_execute")),  # noqa: B009
            "_executemany": _statement_runner(True, getattr(cursor_class, "_executemany")),  # noqa: B009
            "callproc": callproc_method(getattr(cursor_class, "callproc")),  # noqa: B009
            "copy": copy_method("copy", getattr(cursor_class, "copy", None)),
            "copy_expert": copy_method("copy_expert", getattr(cursor_class, "copy_expert", None)),
        },
    )
    # counted_methods wraps what the class's parent has under each name: a
    # throwaway subclass makes that parent ``cls``, whose COPY methods check
    # the session first.
    counted = counted_methods(type("Counted", (cls,), {}), driver_cursor)
    for name, method in counted.items():
        setattr(cls, name, method)
    return cls


def relink(db, wrapper):
    """The cursor's connection was lost (and not replaced yet), or replaced
    behind the backend's back: the cursor goes on on the connection that is
    current now, as a new one would."""
    if not db.orca_state.enabled:
        return None
    if db.connection is None:
        db.ensure_connection()
    link = db._orca_relink()
    if link is not None and getattr(wrapper.cursor, "connection", None) is not db.connection:
        with contextlib.suppress(Exception):
            wrapper.cursor.close()
        wrapper.cursor = db.create_cursor(getattr(wrapper.cursor, "name", None))
    return link


def _cut_off(db, sql, in_transaction: bool) -> DeadlineExceeded:
    """The statement was still running at its deadline and its socket was
    shut: the connection is gone, and with it any transaction (the error,
    the core's: ``orca_db.cut_off``)."""
    if cut_off.transaction_lost(sql, in_transaction):
        db._orca_lose_transaction()
    else:
        db._orca_lose_connection()
    return cut_off.statement(db.alias, sql, in_transaction, DJANGO_ERRORS)


def _recover(wrapper, error, sql, params, many, execute, in_transaction, started):
    db = wrapper.db
    if (
        isinstance(error, ScaleEventError)
        or active_operation(db.alias) is not None
        or drivers.closed_by_caller(wrapper.cursor)
    ):
        raise error
    failure = classify(error)
    if not failure.retryable:
        if in_transaction and (db.connection is None or drivers.is_broken(db.connection)):
            # Whatever the error says, the connection is gone and the
            # server rolls its transaction back: the rest of the
            # transaction must not run on a new one.
            db._orca_lose_transaction()
        raise error
    settings = db.retry_settings
    if started is None:  # inside a transaction, where nothing is retried
        started = monotonic()
    operation = Operation(db.alias, "execute", settings, statement=sql, started=started)
    retry = _StatementRetry(wrapper, sql, params, many, execute, in_transaction, settings)
    return recover(operation, error, retry.attempt, retry.judge)


class _Stage(enum.Enum):
    """Where a statement's retry is, and what a failure there proves."""

    CONNECT = "connect"  # replacing the connection: nothing of this attempt sent
    EXECUTE = "execute"  # the statement was (or may have been) sent


class _StatementRetry:
    """The judge and the attempt of one statement's retries (retry.recover)."""

    def __init__(self, wrapper, sql, params, many, execute, in_transaction, settings):
        self.wrapper, self.db, self.sql, self.params = wrapper, wrapper.db, sql, params
        self.many, self.execute, self.in_transaction = many, execute, in_transaction
        self.settings = settings
        self.name = getattr(wrapper.cursor, "name", None)
        self.stage = _Stage.EXECUTE
        self.verdict = decisions.Verdict.REPLAY  # how judge() let it run again

    def judge(self, error: BaseException, failure: Failure) -> BaseException | None:
        if self.stage is _Stage.CONNECT:
            return None  # nothing was sent on this attempt
        db, sql, in_transaction = self.db, self.sql, self.in_transaction
        verdict = decisions.after_statement_failure(
            failure, sql, many=self.many, in_transaction=in_transaction, settings=self.settings
        )
        if verdict is decisions.Verdict.ROLLED_BACK:
            return db._orca_lose_transaction()
        if verdict is decisions.Verdict.UNKNOWN:
            if in_transaction and not decisions.shown_to_end_transaction(sql):
                db._orca_lose_transaction()  # a composed statement: the rest is refused
            else:
                db._orca_lose_connection()
            return OutcomeUnknown(
                f"The connection to database {db.alias!r} was lost while a write was in "
                f"flight ({failure.error_type}); it may or may not have been applied, and "
                f"was not retried."
            )
        self.verdict = verdict
        return None

    def attempt(self):
        db, wrapper, sql = self.db, self.wrapper, self.sql
        self.stage = _Stage.CONNECT
        db._orca_lose_connection()
        db.ensure_connection()
        with contextlib.suppress(Exception):
            wrapper.cursor.close()
        wrapper.cursor = db.create_cursor(self.name)
        self.stage = _Stage.EXECUTE
        watch = watch_call(db.orca_state)  # after a failure: no fast path needed
        return watched(
            db,
            watch,
            lambda: _cut_off(db, sql, False),
            run_again,
            wrapper,
            self.execute,
            sql,
            self.params,
            self.verdict,
        )


def reconnect_before_send(db, wrapper, sql) -> None:
    """Before a statement with no transaction open: replace a connection
    the server has already closed, so the statement is sent once, on a live
    one, instead of failing with an outcome nobody can know."""
    operation = Operation(db.alias, "execute", db.retry_settings, statement=sql)
    operation.last_failure = SERVER_CLOSED
    db._orca_lose_connection()
    try:
        db.ensure_connection()
    except BaseException:
        report(operation, "raised")
        raise
    wrapper.cursor = db.create_cursor(getattr(wrapper.cursor, "name", None))
    report(operation, "recovered")
