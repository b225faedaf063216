"""Rule 1 of docs/retry-safety.md where the statement text does not show
what changes the session: a function of the application's (or any outside
the side-effect-free allowlist), ``callproc``, ``COPY``, ``executemany``.

Once the application has called such a function, its session is checked
against the server: after each change the server's fingerprint of the
session (``FINGERPRINT``, one round trip) is kept, and a
replacement connection must show the same fingerprint after the restore,
or it refuses with ``SessionStateLost``. Until the first such call nothing
here runs: an application that calls none pays nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import deadlines, drivers
from ..classify import classify
from ..elsewhere import sent_unseen
from ..sql import profile
from ..sql.facts import Profile

if TYPE_CHECKING:
    from .lost import LostConnectionMixin


#: The session as the server sees it, as one hash (no value is kept or
#: logged): who runs, every setting the session changed (the transaction_*
#: ones are the transaction's), and every object that lives only in the
#: session. One round trip, asked only once the application has called a
#: function the tracker cannot see inside.
FINGERPRINT = """
    SELECT encode(sha256(convert_to(concat_ws('|', current_user, session_user,
        (SELECT string_agg(name || '=' || setting, ',' ORDER BY name)
           FROM pg_settings WHERE source = 'session' AND name NOT LIKE 'transaction%'),
        (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()),
        (SELECT count(*) FROM pg_prepared_statements WHERE from_sql),
        (SELECT count(*) FROM pg_cursors WHERE is_holdable),
        (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
        (SELECT count(*) FROM pg_listening_channels())), 'UTF8')), 'hex')
"""

#: Transaction control after which the tracker's picture may have changed.
_ENDS = frozenset({"commit", "rollback", "rollback_to", "prepare_transaction", "mixed"})


def hidden_calls(text: object) -> bool:
    from ..sql.calls import hidden_calls

    return hidden_calls(text)


def statement_text(sql: object, connection) -> object:
    """The text of a statement: a psycopg ``sql.Composed`` (or ``SQL``) as
    the driver will send it; anything else as it is."""
    if isinstance(sql, str | bytes) or connection is None:
        return sql
    try:
        return sql.as_string(connection)  # type: ignore[attr-defined]
    except Exception:
        return sql  # not text: followed as unknown


def observe(
    db: LostConnectionMixin,
    wrapper: Any,
    statement: Profile,
    sql: object,
    params: Any,
    in_transaction: bool,
    many: bool = False,
) -> None:
    """After a statement that may change the session, or end or mark a
    transaction while changes wait on one: what the session record makes
    of it."""
    session = db.orca_state.session
    text = statement_text(sql, db.connection)
    control = statement.control
    changed = False
    if statement.session and control is None:
        if many:
            session.unfollowed(text)  # which parameters were last? not followed
        else:
            session.observe(sql, params, in_transaction, text)
        changed = True
    calls = statement.calls or (text is not sql and profile(text).calls)
    if calls and hidden_calls(text):
        session.hidden_call(in_transaction)
        changed = True
    if control == "commit":
        # COMMIT of a failed transaction answers ROLLBACK, no error.
        status = getattr(wrapper.cursor, "statusmessage", None) or ""
        session.transaction_ended(status.startswith("COMMIT"))
    elif control == "rollback":
        session.transaction_ended(False)
    elif control in ("prepare_transaction", "mixed"):
        session.transaction_ended(None)
    elif control == "savepoint":
        session.savepoint(statement.savepoint_name)
    elif control == "release":
        session.savepoint_released(statement.savepoint_name)
    elif control == "rollback_to":
        session.rolled_back_to(statement.savepoint_name)
    if session.verifying and (changed or control in _ENDS):
        fingerprint(db)


def called(db: LostConnectionMixin, function: str) -> None:
    """``cursor.callproc(function)`` succeeded."""
    from ..sql.calls import function_is_known

    if not function_is_known(str(function)):
        db.orca_state.session.hidden_call()
        fingerprint(db)


def unfollowed(db: LostConnectionMixin, statement: object) -> None:
    """A statement is sent past ``execute`` (COPY): whatever its text may
    change in the session is not followed."""
    session = db.orca_state.session
    text = statement_text(statement, db.connection)
    found = profile(text)
    if found.session:
        session.unfollowed(text)
    if found.calls and hidden_calls(text):
        session.hidden_call()
        session.unfollowed(None)


def fingerprint(db: LostConnectionMixin) -> None:
    """Once the application has called a function the tracker cannot see
    inside, the session is checked against the server: its fingerprint
    now, after a change, compared with the new session's after a
    reconnect. Not inside a transaction (what it shows may still roll
    back): the session is then unverified until the next change outside
    one, or the transaction's end."""
    state = db.orca_state
    session = state.session
    connection = db.connection
    if connection is None or drivers.transaction_status(connection) != drivers.IDLE:
        session.verified(None)
        return
    session.verified(None)  # until the answer comes
    link = state.link
    watch = None
    if link is not None and (deadlines.open_caps or state.statement_deadline):
        watch = deadlines.watch_statement(link.fd, state.statement_deadline)
    try:
        with connection.cursor() as cursor:
            cursor.execute(FINGERPRINT)
            found = cursor.fetchone()[0]
        if drivers.transaction_status(connection) != drivers.IDLE:
            connection.rollback()  # autocommit off: the query opened one
        session.verified(found)
    except Exception:
        pass  # unverified: the next reconnect refuses
    finally:
        if watch is not None:
            deadlines.watchdog.release(watch)
            if watch.cut:
                session.verified(None)


def _session_matches(db: LostConnectionMixin) -> bool:
    """On a new connection, after the restore: is the session the one the
    server had (same fingerprint)?"""
    connection = db.connection
    with connection.cursor() as cursor:
        cursor.execute(FINGERPRINT)
        found = cursor.fetchone()[0]
    if drivers.transaction_status(connection) != drivers.IDLE:
        connection.rollback()  # AUTOCOMMIT=False in settings
    return found == db.orca_state.session.expected


def session_differs(db: LostConnectionMixin) -> str | None:
    """On a new connection, after the restore, for a session that is
    checked: why it is not the one the server had (None: it is)."""
    try:
        matches = _session_matches(db)
    except Exception as error:
        if classify(error).retryable:
            raise  # lost again: the connect is retried
        matches = False
    return None if matches else "a session change made inside a function"


def copy_method(name: str, parent: Callable[..., Any] | None) -> Callable[..., Any]:
    """The retrying cursor's ``copy`` (psycopg 3) or ``copy_expert``
    (psycopg2): COPY goes to the driver's cursor, past ``execute()``, so
    what its text may change in the session is counted before it runs (a
    COPY is never a plain SET, so nothing of it can be restored). Calls
    ``parent`` (the wrapper class's own: PostgreSQL's debug wrapper logs
    COPY), or else the driver's."""

    def method(wrapper: Any, statement: object, *args: Any, **kwargs: Any) -> Any:
        db = wrapper.db
        refusal = db.orca_state.refusal
        if refusal is not None:
            raise refusal.error()
        unfollowed(db, statement)
        if parent is not None:
            return parent(wrapper, statement, *args, **kwargs)
        return getattr(wrapper.cursor, name)(statement, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


def callproc_method(parent: Callable[..., Any]) -> Callable[..., Any]:
    """The retrying cursor's ``callproc``: refused while the connection
    refuses work; counted as sent where no execute wrapper sees it; and a
    function the tracker cannot see inside checks the session."""

    def callproc(wrapper: Any, procname: str, params: Any = None, kparams: Any = None) -> Any:
        db = wrapper.db
        refusal = db.orca_state.refusal
        if refusal is not None:
            raise refusal.error()
        sent_unseen(db)
        result = parent(wrapper, procname, params, kparams)
        called(db, procname)
        return result

    return callproc
