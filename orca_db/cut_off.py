"""A call cut off at its deadline (rule 2 of docs/retry-safety.md): what it
proves and what it raises, the same for every host.

The watchdog (:mod:`orca_db.deadlines`) shuts the socket of a statement,
``COMMIT`` or ``ROLLBACK`` still waiting for the server at its deadline
(``statement_deadline``, the Lambda cap); the driver then fails with a
lost-connection error, which the host replaces with the error made here:

- ``DeadlineExceeded`` (nothing applied): a read, a statement inside a
  transaction (the server rolls the transaction back), a ``ROLLBACK``;
- ``WriteDeadlineExceeded`` (an ``OutcomeUnknown``: it may have been
  applied): a write outside a transaction, a ``COMMIT``, a statement that
  may have committed the transaction it ran in.

Each is raised as the class of the host's :class:`~orca_db.outcomes.ErrorTable`
(Django's ``orca_db.exceptions``; the core's own for the SQLAlchemy plugin,
which wraps it in ``orca_db.sqlalchemy.exc``). What the host does to its
connection (lose it, or lose the transaction and refuse the rest of it) and
how it raises the error stay with the host; nothing here runs unless a
watch was armed and cut.
"""

from __future__ import annotations

from typing import Any

from .decisions import may_commit, shown_to_end_transaction
from .outcomes import CORE_ERRORS, DeadlineExceeded, ErrorTable, WriteDeadlineExceeded
from .watches import Watch, watchdog

__all__ = ["commit", "ended", "rollback", "socket_of", "statement", "transaction_lost"]


def socket_of(connection: Any) -> int:
    """The descriptor of a driver connection's socket (psycopg 3 or 2, also
    through a pool's proxy): what a watch shuts."""
    pgconn = getattr(connection, "pgconn", None)
    if pgconn is not None:
        return pgconn.socket
    return connection.fileno()


def ended(watch: Watch | None) -> bool:
    """The call under ``watch`` (``None``: none was armed) returned, either
    way: the watch is released; True when it cut the call off."""
    if watch is None:
        return False
    watchdog.release(watch)
    return watch.cut


def transaction_lost(sql: object, in_transaction: bool) -> bool:
    """Whether a statement cut off took an open transaction with it, whose
    rest must be refused (F7 of ``orca_db.decisions``): it ran inside one
    and its text does not show it ended it. Otherwise only the connection
    is lost."""
    return in_transaction and not shown_to_end_transaction(sql)


def statement(
    alias: str, sql: object, in_transaction: bool, errors: ErrorTable = CORE_ERRORS
) -> DeadlineExceeded:
    """The error of a statement cut off at its deadline on database
    ``alias`` (``in_transaction``: a transaction was open, or opened by the
    statement)."""
    if transaction_lost(sql, in_transaction):
        if may_commit(sql):  # composed: it may have been a COMMIT
            return errors.of(WriteDeadlineExceeded)(
                f"A statement on database {alias!r} was still running at its deadline "
                f"and was cut off; it may have committed its transaction, or the server "
                f"rolls it back."
            )
        return errors.of(DeadlineExceeded)(
            f"A statement on database {alias!r} was still running at its deadline; it "
            f"was cut off, and the server rolls its transaction back."
        )
    from .sql import is_replayable_read

    if is_replayable_read(sql):
        return errors.of(DeadlineExceeded)(
            f"A read on database {alias!r} was still running at its deadline and was cut off."
        )
    return errors.of(WriteDeadlineExceeded)(
        f"A write on database {alias!r} was still running at its deadline and was cut "
        f"off; it may or may not have been applied."
    )


def commit(alias: str, errors: ErrorTable = CORE_ERRORS) -> WriteDeadlineExceeded:
    """The error of a ``COMMIT`` cut off at its deadline."""
    return errors.of(WriteDeadlineExceeded)(
        f"COMMIT on database {alias!r} was still running at its deadline and was "
        f"cut off; the transaction may or may not have committed."
    )


def rollback(alias: str, errors: ErrorTable = CORE_ERRORS) -> DeadlineExceeded:
    """The error of a ``ROLLBACK`` cut off at its deadline: its connection
    is closed, and the server rolls the transaction back."""
    return errors.of(DeadlineExceeded)(
        f"ROLLBACK on database {alias!r} was still waiting for the server at its "
        f"deadline and was cut off: its connection was closed. Nothing of the transaction "
        f"was committed: the server rolls it back when it sees the connection end (at "
        f"once if the network carries the close; otherwise when its own TCP keepalive or "
        f"client_connection_check_interval notices, its locks held until then)."
    )
