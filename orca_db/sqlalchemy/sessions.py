"""Rule 1 of docs/retry-safety.md on the SQLAlchemy plugin: the session
state of one SQLAlchemy ``Connection``, under the core's allowlist
(:class:`orca_db.session.SessionState`, the Django host's record).

A SQLAlchemy ``Connection`` is the application's session: it may lose its
driver connection (a scale event) and get another one from the pool, either
through the plugin (a replayed read, a connection found closed before a
statement) or through SQLAlchemy itself (the statement after
``rollback()`` that followed ``TransactionRolledBack``). On that new driver
connection, before anything of the application's runs:

- the settings it followed (``SET``/``RESET``/``SET ROLE``/
  ``set_config(..., false)``, as committed) are applied again, in order;
- anything else the session held (temporary tables, ``PREPARE``, ``LISTEN``,
  advisory locks, cursors ``WITH HOLD``, a function nobody can see inside,
  a change that could not be followed) raises ``SessionStateLost``, and the
  ``Connection`` refuses every statement after that until it is closed.

The record lives on the ``Connection`` (its ``__dict__``) and, while a driver
connection serves it, in that connection's pool record ``info`` (the
dialect's ``do_commit``/``do_rollback`` are handed the pool's proxy, not the
``Connection``). When the ``Connection`` returns its driver connection to
the pool (the pool's checkin), a changed session is cleaned for the next
borrower: ``RESET SESSION AUTHORIZATION; RESET ALL`` when only settings were
changed, closed for good otherwise (the pool opens a fresh one).

Nothing is recorded, and nothing costs more than a dict lookup per
statement, until a statement may change the session. The clean-up is
arranged on the pool entry when its first record is made, as SQLAlchemy's
own dialect arranges the reset of an isolation level it changed (the
entry's ``finalize_callback``, run at checkin): a connection whose session
never changed returns to the pool through no code of ours.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

from .. import drivers
from ..classify import classify
from ..session import SessionState
from . import watching

#: Where the record is kept: the Connection's ``__dict__``, the pool
#: record's ``info``.
KEY = "orca_db_session"

#: Where the plugin keeps the engine's checkin clean-up (``checkin_for``):
#: the dialect instance's ``__dict__``.
CLEAN_UP = "orca_db_clean_up"

#: Every setting back to the connection's defaults (RESET ALL leaves the
#: role and the session authorization alone).
_RESET_SETTINGS = "RESET SESSION AUTHORIZATION; RESET ALL"


class Tracked:
    """The session record of one SQLAlchemy ``Connection``."""

    __slots__ = ("on", "refusal", "state")

    def __init__(self, dbapi_connection: Any) -> None:
        self.state = SessionState()
        #: The driver connection the session lives on now.
        self.on = dbapi_connection
        #: Why the Connection refuses work (a core SessionStateLost), or None.
        self.refusal: BaseException | None = None


def observe(
    root: Any,
    dbapi_connection: Any,
    cursor: Any,
    statement: str,
    parameters: Any,
    found: Any,
    in_transaction: bool,
    many: bool,
) -> None:
    """A statement that may change the session (``found``: its profile)
    succeeded on ``root`` (the SQLAlchemy Connection)."""
    tracked = root.__dict__.get(KEY)
    if tracked is None:
        if not found.tracked:
            return  # transaction control, with nothing followed yet
        tracked = root.__dict__[KEY] = Tracked(dbapi_connection)
        _attach(root, tracked)
    state = tracked.state
    control = found.control
    if found.session and control is None:
        if many:
            state.unfollowed(statement)
        else:
            state.observe(statement, parameters, in_transaction)
    if found.calls:
        from ..sql.calls import hidden_calls

        if hidden_calls(statement):
            # No fingerprint is taken on this host: what such a function
            # did to the session stays unknown, and a reconnect refuses.
            state.hidden_call(in_transaction)
    if control == "commit":
        # COMMIT of a failed transaction answers ROLLBACK, no error.
        status = getattr(cursor, "statusmessage", None) or ""
        state.transaction_ended(status.startswith("COMMIT"))
    elif control == "rollback":
        state.transaction_ended(False)
    elif control in ("prepare_transaction", "mixed"):
        state.transaction_ended(None)
    elif control == "savepoint":
        state.savepoint(found.savepoint_name)
    elif control == "release":
        state.savepoint_released(found.savepoint_name)
    elif control == "rollback_to":
        state.rolled_back_to(found.savepoint_name)


def transaction_ended(pool_proxy: Any, committed: bool) -> None:
    """The dialect's ``do_commit``/``do_rollback`` succeeded on
    ``pool_proxy`` (the pool's proxy of a driver connection)."""
    try:
        tracked = pool_proxy.info.get(KEY)
    except Exception:
        return
    if tracked is not None and tracked.state.pending:
        tracked.state.transaction_ended(committed)


def resume(root: Any, tracked: Tracked, dbapi_connection: Any, alias: str) -> None:
    """``root`` runs a statement on ``dbapi_connection``, not the driver
    connection its session lives on (the other one was lost): its session
    as it was, or ``SessionStateLost`` (raised now and for every statement
    after, until the Connection is closed)."""
    from ..outcomes import SessionStateLost

    if tracked.refusal is not None:
        raise tracked.refusal
    state = tracked.state
    # What was waiting on the lost connection's transaction died with it.
    state.transaction_ended(False)
    lost = state.lost_items()
    if lost:
        message = (
            f"The connection to database {alias!r} was replaced after a scale event, and "
            f"its session held {', '.join(lost)}, which a new session does not have; close "
            f"the Connection and start over."
        )
        tracked.refusal = SessionStateLost(message, lost)
        raise tracked.refusal
    # Arranged before the first SET is applied again: one applied and a
    # later one refused (in AUTOCOMMIT each stays) is cleaned at checkin
    # (closed: the refusal) instead of reaching the next borrower.
    _attach(root, tracked)
    if not state.empty:
        try:
            _restore(state, dbapi_connection)
        except Exception as error:
            if classify(error).retryable:
                raise  # lost again: judged like the statement would be
            message = (
                f"The connection to database {alias!r} was replaced after a scale event and "
                f"the session's settings could not be applied again ({type(error).__name__})."
            )
            tracked.refusal = SessionStateLost(message, ("session settings",))
            raise tracked.refusal from error
    tracked.on = dbapi_connection


def _restore(state: SessionState, dbapi_connection: Any) -> None:
    with contextlib.closing(dbapi_connection.cursor()) as cursor:
        state.restore(cursor.execute)
    if drivers.transaction_status(dbapi_connection) != drivers.IDLE:
        dbapi_connection.commit()  # not in autocommit: the SETs opened one


def checkin_for(engine: Any, statement_deadline: float | None = None) -> Callable[[Any, Any], None]:
    """The clean-up at checkin for ``engine`` (called with the driver
    connection and its pool entry): the next borrower gets the session as
    the pool made it.

    ``RESET ALL`` goes back to the server's defaults, which is the session
    the pool made only when nothing SET anything while making it: the
    ``connect`` listeners are the ones ``create_engine`` registered (not an
    application's, such as SQLAlchemy's ``search_path`` recipe; SQLAlchemy
    does not run them again on a pooled connection) and psycopg2 was given
    no ``client_encoding`` (the dialect's ``set_client_encoding()`` is a
    ``SET`` the driver would no longer agree with). Otherwise a changed
    session is closed for good: the pool makes a new one. The ``RESET`` is
    watched like a statement (``statement_deadline``, the Lambda cap)."""
    own = tuple(engine.pool.dispatch.connect)
    dialect = engine.dialect
    encoding_set = (
        getattr(dialect, "client_encoding", None) is not None and dialect.driver == "psycopg2"
    )

    def as_made_by_reset() -> bool:
        dispatch = engine.pool.dispatch
        if encoding_set or len(dispatch.first_connect):
            return False
        return all(any(fn is known for known in own) for fn in dispatch.connect)

    def listener(dbapi_connection: Any, record: Any) -> None:
        checkin(dbapi_connection, record, as_made_by_reset, statement_deadline)

    return listener


def checkin(
    dbapi_connection: Any,
    record: Any,
    resettable: Callable[[], bool] = lambda: False,
    statement_deadline: float | None = None,
) -> None:
    """The pool's ``checkin``: the next borrower gets a clean session
    (``resettable``: whether ``RESET ALL`` gives the pool's own session)."""
    tracked = record.info.pop(KEY, None)
    if tracked is None or dbapi_connection is None or not tracked.state.changed:
        return
    if tracked.state.settings_only and tracked.refusal is None and resettable():
        try:
            if drivers.transaction_status(dbapi_connection) == drivers.IDLE:
                watch = watching.watch(dbapi_connection, statement_deadline)
                try:
                    with contextlib.closing(dbapi_connection.cursor()) as cursor:
                        cursor.execute(_RESET_SETTINGS)
                    if drivers.transaction_status(dbapi_connection) != drivers.IDLE:
                        dbapi_connection.commit()
                finally:
                    cut = watching.ended(watch)
                if not cut:
                    return
        except Exception:
            pass  # closed for good below
    record.invalidate()


def refused_by(root: Any) -> BaseException | None:
    tracked = root.__dict__.get(KEY)
    return None if tracked is None else tracked.refusal


def _attach(root: Any, tracked: Tracked) -> None:
    """Keep ``tracked`` in the pool entry of the driver connection serving
    ``root`` now, and have that entry cleaned when it goes back to the pool."""
    try:
        proxy = root.connection
        info = proxy.info
    except Exception:
        return  # SQLAlchemy's first connect: no pool entry yet
    clean_up = root.dialect.__dict__.get(CLEAN_UP)
    # No entry after detach(): the connection never goes back to the pool.
    entry = None if clean_up is None else proxy._connection_record
    if entry is not None:
        # Asked of the entry's callbacks, not of its info: an invalidated
        # entry drops its callbacks, and may keep its info until it reconnects.
        finalizers = entry.finalize_callback
        if not any(getattr(f, "func", None) is clean_up for f in finalizers):
            finalizers.append(functools.partial(clean_up, record=entry))
    info[KEY] = tracked


def finalizers_supported() -> bool:
    """Whether this SQLAlchemy has the pool entries' ``finalize_callback``
    (2.0 and 2.1 have; its dialects use it): else the plugin listens to
    every checkin instead."""
    from sqlalchemy.pool import base

    return "finalize_callback" in getattr(
        base._ConnectionRecord, "__slots__", ()
    ) and "_connection_record" in getattr(base._ConnectionFairy, "__slots__", ())


__all__ = [
    "CLEAN_UP",
    "KEY",
    "Tracked",
    "checkin",
    "checkin_for",
    "finalizers_supported",
    "observe",
    "resume",
    "transaction_ended",
]
