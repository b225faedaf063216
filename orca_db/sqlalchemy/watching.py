"""Rule 2 of docs/retry-safety.md on the SQLAlchemy plugin: a statement, a
COMMIT or a ROLLBACK still waiting for the server at its deadline
(``aurora={"statement_deadline": s}``, or the Lambda cap,
:func:`orca_db.deadlines.deadline_cap`) is cut off by the core's watchdog,
which shuts its socket down; the driver's error then becomes
``DeadlineExceeded`` (nothing applied: a read, or a transaction the server
rolls back) or ``WriteDeadlineExceeded`` (an ``OutcomeUnknown``: a write or
a COMMIT that may have been applied). Nothing is armed while no deadline
applies: one global read per statement."""

from __future__ import annotations

from typing import Any

from .. import deadlines, decisions


def socket_of(dbapi_connection: Any) -> int:
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is not None:
        return pgconn.socket
    return dbapi_connection.fileno()


def watch(dbapi_connection: Any, statement_deadline: float | None) -> deadlines.Watch | None:
    """The watch over one blocking call (``None``: no deadline applies);
    the caller releases it with :func:`ended` when the call returns."""
    if not (deadlines.open_caps or statement_deadline):
        return None
    try:
        fd = socket_of(dbapi_connection)
    except Exception:
        return None  # closed already: the call fails at once
    return deadlines.watch_statement(fd, statement_deadline)


def ended(entry: deadlines.Watch | None) -> bool:
    """The call returned (either way); True when it was cut off."""
    if entry is None:
        return False
    deadlines.watchdog.release(entry)
    return entry.cut


def statement_cut_off(alias: str, statement: str, in_transaction: bool) -> BaseException:
    """The core error for a statement cut off at its deadline (the Django
    host's rule, ``orca_db.backends.cursor``)."""
    from ..outcomes import DeadlineExceeded, WriteDeadlineExceeded

    if in_transaction and not decisions.shown_to_end_transaction(statement):
        if decisions.may_commit(statement):
            return WriteDeadlineExceeded(
                f"A statement on database {alias!r} was still running at its deadline and "
                f"was cut off; it may have committed its transaction, or the server rolls "
                f"it back."
            )
        return DeadlineExceeded(
            f"A statement on database {alias!r} was still running at its deadline; it was "
            f"cut off, and the server rolls its transaction back."
        )
    from ..sql import is_replayable_read

    if is_replayable_read(statement):
        return DeadlineExceeded(
            f"A read on database {alias!r} was still running at its deadline and was cut off."
        )
    return WriteDeadlineExceeded(
        f"A write on database {alias!r} was still running at its deadline and was cut off; "
        f"it may or may not have been applied."
    )


def commit_cut_off(alias: str) -> BaseException:
    from ..outcomes import WriteDeadlineExceeded

    return WriteDeadlineExceeded(
        f"COMMIT on database {alias!r} was still waiting for the server at its deadline and "
        f"was cut off; the transaction may or may not have been committed."
    )


def rollback_cut_off(alias: str) -> BaseException:
    from ..outcomes import DeadlineExceeded

    return DeadlineExceeded(
        f"ROLLBACK on database {alias!r} was still waiting for the server at its deadline "
        f"and was cut off: its connection was closed. Nothing of the transaction was "
        f"committed: the server rolls it back when it sees the connection end."
    )
