"""The one way a statement is sent a second time after its reply was lost
(rule 3 of docs/retry-safety.md: every replay is guarded), for the
retrying cursor (``cursor.py``): whatever cursor the statement came from, a
read replayed because it is a read runs in a READ ONLY transaction."""

from __future__ import annotations

import contextlib
from typing import Any

from django.db.utils import Error as DjangoError

from .. import decisions, drivers
from ..classify import driver_error
from ..exceptions import OutcomeUnknown

#: SQLSTATE read_only_sql_transaction: a replayed "read" tried to write.
_READ_ONLY_VIOLATION = "25006"


def run_again(wrapper, execute, sql, params, verdict: decisions.Verdict) -> Any:
    """The one way a statement is sent a second time (rule 3 of
    docs/retry-safety.md: every replay is guarded). A read replayed because
    it is a read (``REPLAY_READ_ONLY``) runs in a READ ONLY transaction,
    whatever cursor it comes from: a plain one, or a server-side one
    (``QuerySet.iterator()``), whose query runs when the transaction
    commits (``WITH HOLD``), so that is where the server refuses a write.
    ``REPLAY`` is for a statement proven never applied (or vouched for by
    ``retry_writes``); no other verdict may replay."""
    if verdict is decisions.Verdict.REPLAY_READ_ONLY:
        return _read_only(wrapper, execute, sql, params)
    if verdict is not decisions.Verdict.REPLAY:
        raise AssertionError(f"no replay for a statement judged {verdict.value!r}")
    return execute(sql, params)


def _read_only(wrapper, execute, sql, params) -> Any:
    """Run a replayed read in a READ ONLY transaction: should it write after
    all, the server refuses instead of applying it a second time. The
    transaction is rolled back after a plain cursor's read (its rows are in
    the client by then); only a server-side cursor's commits (WITH HOLD)."""
    db = wrapper.db
    raw = db.connection
    errors = drivers.driver_errors(raw)
    with raw.cursor() as cursor:
        cursor.execute("BEGIN READ ONLY")
    try:
        result = execute(sql, params)
    except DjangoError as error:
        with contextlib.suppress(Exception), raw.cursor() as cursor:
            cursor.execute("ROLLBACK")
        _forget_server_cursor(wrapper)
        _raise_if_it_wrote(db, driver_error(error))
        raise
    if getattr(wrapper.cursor, "name", None) is None:
        # A plain cursor holds every row once the statement has run: the
        # transaction is rolled back, not committed, so that what READ
        # ONLY lets through (a NOTIFY, a setting changed by a function
        # behind a view) is undone instead of happening a second time.
        with raw.cursor() as cursor:
            cursor.execute("ROLLBACK")
        return result
    try:
        # A cursor WITH HOLD runs its whole query here, at COMMIT, and
        # needs it to outlive the transaction.
        with raw.cursor() as cursor:
            cursor.execute("COMMIT")
    except errors:
        raise  # the connection was lost again: judged as any loss
    except Exception as error:
        _forget_server_cursor(wrapper)
        _raise_if_it_wrote(db, error)
        raise
    return result


def _forget_server_cursor(wrapper) -> None:
    """The transaction that declared a server-side cursor rolled back, and
    the cursor with it: the application's ``close()`` (Django's iterator
    closes in a ``finally``) gets a fresh, undeclared one, not an error
    that would hide the one that counts."""
    name = getattr(wrapper.cursor, "name", None)
    connection = wrapper.db.connection
    # A connection lost again is replaced by the next attempt, cursor and all.
    if name and connection is not None and not drivers.is_broken(connection):
        old, wrapper.cursor = wrapper.cursor, wrapper.db.create_cursor(name)
        with contextlib.suppress(Exception):
            old.close()


def _raise_if_it_wrote(db, error: BaseException) -> None:
    if drivers.sqlstate(error) == _READ_ONLY_VIOLATION:
        raise OutcomeUnknown(
            f"A statement on database {db.alias!r} judged a read was replayed after its "
            f"reply was lost, and tried to write: its first run may have been applied."
        ) from error
