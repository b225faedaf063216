"""What other code asks of a psycopg connection, answered for a Data API
one, psycopg2's way (``orca_db.drivers`` tells the drivers apart by
``pgconn``, which this connection has not): ``retry_atomic`` asks for the
transaction status and a socket to poll, ``django.contrib.postgres``
registers types on each new connection. ``orca_db.drivers`` asks these
as it asks psycopg2's connection, and learns this connection's errors from
``orca_disconnect_errors``."""

from __future__ import annotations

import os
from typing import Any

from . import errors

#: libpq's PGTransactionStatusType, as psycopg2's get_transaction_status().
IDLE, ACTIVE, INTRANS, INERROR, UNKNOWN = range(5)


class PsycopgShims:
    closed: bool
    broken: bool
    aborted: bool
    transaction_id: str | None
    lost: Any
    _adapters: Any = None
    #: What ``orca_db.drivers`` asks of a connection of another kind: the
    #: errors it raises once it is gone (psycopg2's OperationalError and
    #: InterfaceError, for psycopg2's connection).
    orca_disconnect_errors = (errors.OperationalError, errors.InterfaceError)

    def fileno(self) -> int:
        """A descriptor that never becomes readable: a server cannot close
        a Data API connection while it is idle, there is none
        (``orca_db.drivers.Link.server_closed`` polls it before each run of
        ``retry_atomic``)."""
        if self.closed:
            raise errors.InterfaceError("connection already closed")
        return _never_readable()

    def get_transaction_status(self) -> int:
        """The transaction's state, as libpq reports a session's: IDLE
        before the first statement (a transaction begins with it), INTRANS,
        INERROR after a failed statement, UNKNOWN once it is lost."""
        if self.closed or self.lost is not None:
            return UNKNOWN
        if self.transaction_id is None:
            return IDLE
        return INERROR if self.aborted else INTRANS

    @property
    def adapters(self) -> Any:
        """A psycopg 3 adapters map, for code that registers types on a
        connection (``django.contrib.postgres`` registers hstore and citext
        on each new one): accepted and unused, values are decoded here."""
        if self._adapters is None:
            from psycopg import adapt, postgres

            self._adapters = adapt.AdaptersMap(postgres.adapters)
        return self._adapters


_pipe: tuple[int, int] | None = None


def _never_readable() -> int:
    global _pipe
    if _pipe is None:
        _pipe = os.pipe()  # nothing is ever written to it
    return _pipe[0]
