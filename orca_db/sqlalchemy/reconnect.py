"""Replacing a statement's lost driver connection under SQLAlchemy's
``Connection``, and running a replayed read ``READ ONLY``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from .. import drivers

#: SQLSTATE read_only_sql_transaction: a replayed "read" tried to write.
READ_ONLY_VIOLATION = "25006"


def link_of(context: Any, dbapi_connection: Any) -> drivers.Link | None:
    """The connection's Link, kept in its pool record's ``info``; ``None``
    for the connection SQLAlchemy's first connect inspects the server with
    (it has no ``info``, and was made a moment ago)."""
    try:
        info = context.root_connection.connection.info
    except NotImplementedError:
        return None
    link = info.get("orca_db_link")
    if link is None or link.connection is not dbapi_connection:
        link = info["orca_db_link"] = drivers.Link(dbapi_connection)
    return link


def reconnect(context: Any) -> Any:
    """Give the statement's Connection a new driver connection, in
    autocommit as the lost one was, and the context a cursor on it: the
    recipe of SQLAlchemy's FAQ ("How do I retry a statement execution
    automatically?")."""
    connection = context.root_connection
    if not connection.invalidated:
        connection.invalidate()
    # SQLAlchemy reconnects only once its (autocommit, nominal)
    # transaction is ended.
    connection.rollback()
    fairy = connection.connection
    connection.dialect.set_connection_execution_options(
        connection, {"isolation_level": "AUTOCOMMIT"}
    )
    context.cursor = fairy.cursor()
    return context.cursor


def run_read_only(
    dbapi_connection: Any, cursor: Any, run: Callable[[Any], Any], alias: str
) -> None:
    """Run a replayed read in a READ ONLY transaction: should it write after
    all, the server refuses instead of applying it a second time."""
    with contextlib.closing(dbapi_connection.cursor()) as control:
        control.execute("BEGIN READ ONLY")
    try:
        run(cursor)
    except Exception as error:
        with contextlib.suppress(Exception), contextlib.closing(dbapi_connection.cursor()) as c:
            c.execute("ROLLBACK")
        if drivers.sqlstate(error) == READ_ONLY_VIOLATION:
            from .. import outcomes

            raise outcomes.OutcomeUnknown(
                f"A statement on database {alias!r} judged a read was replayed after its "
                f"reply was lost, and tried to write: its first run may have been applied."
            ) from error
        raise
    with contextlib.closing(dbapi_connection.cursor()) as control:
        control.execute("COMMIT")
