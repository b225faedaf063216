"""Every question orca-db asks a database driver, answered for psycopg 3 and
psycopg2 in one place (as Django keeps its own in ``psycopg_any.py``): the
SQLSTATE of an error, the transaction status libpq reports, the socket, the
backend pid, how to cut a connection from another thread and how to give a
pooled one back. No other module touches a driver's private attributes.

Connections are told apart by duck typing (psycopg 3 has ``pgconn``) so
that importing this module imports no driver.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import socket
from collections.abc import Callable
from typing import Any, Final

# libpq's PGTransactionStatusType, the same numbers in both drivers.
IDLE, ACTIVE, INTRANS, INERROR, UNKNOWN = range(5)

# PG_DIAG_SEVERITY_NONLOCALIZED: the severity, never translated.
_SEVERITY_NONLOCALIZED = ord("V")
#: TCP settings libpq gets unless the application gives its own (both hosts):
#: a peer that goes silent is noticed within about ``keepalives_idle +
#: tcp_user_timeout`` (35 s) instead of the kernel's 15 minutes
#: (docs/backend.md).
TCP_DEFAULTS: Final = {
    "keepalives": 1,
    "keepalives_idle": 15,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20000,
}
_READABLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | select.POLLNVAL


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a driver error (psycopg 3 ``sqlstate``, psycopg2
    ``pgcode``), ``None`` when the server sent none."""
    return getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)


def is_psycopg3(connection: Any) -> bool:
    return hasattr(connection, "pgconn")


def backend_pid(connection: Any) -> int:
    if is_psycopg3(connection):
        return connection.info.backend_pid
    return connection.get_backend_pid()


def transaction_status(connection: Any) -> int:
    """libpq's view of the session: IDLE (no transaction open), INTRANS,
    INERROR, ACTIVE, or UNKNOWN once the connection is bad."""
    if is_psycopg3(connection):
        return connection.pgconn.transaction_status
    return connection.get_transaction_status()


def transaction_open(status: int) -> bool:
    """A transaction is open (UNKNOWN: the connection is already bad and
    holds nothing any more)."""
    return status in (ACTIVE, INTRANS, INERROR)


def is_closed(connection: Any) -> bool:
    return bool(connection.closed) or bool(getattr(connection, "broken", False))


def is_broken(connection: Any) -> bool:
    """Closed, or libpq knows it is bad (its transaction status UNKNOWN):
    whatever the error that said so, nothing of a session survives."""
    return is_closed(connection) or transaction_status(connection) == UNKNOWN


def closed_by_caller(cursor: Any) -> bool:
    """The code closed this cursor itself while its connection is open:
    using it is the caller's error (Django expects InterfaceError), not a
    lost connection, though psycopg2 words both "cursor already closed"."""
    connection = getattr(cursor, "connection", None)
    return bool(getattr(cursor, "closed", False)) and not getattr(connection, "closed", True)


def driver_errors(connection: Any) -> tuple[type[BaseException], ...]:
    """The errors a driver raises for a connection that is gone. A
    connection of another kind (the Data API engine's) names its own in
    ``orca_disconnect_errors``: the core asks, it does not import it."""
    own = getattr(connection, "orca_disconnect_errors", None)
    if own is not None:
        return tuple(own)
    if is_psycopg3(connection):
        import psycopg

        return (psycopg.OperationalError, psycopg.InterfaceError)
    import psycopg2

    return (psycopg2.OperationalError, psycopg2.InterfaceError)


class Link:
    """One driver connection, with the questions the backend asks before
    every statement made cheap: each is a single call into C.

    Built once per connection (``get_new_connection``); ``transaction_status``
    reads libpq's state without a round trip, ``server_closed`` asks the
    socket with ``poll`` (any descriptor number; ``select`` fails from 1024)."""

    __slots__ = ("_poll", "connection", "fd", "poll", "transaction_status")

    def __init__(self, connection: Any):
        self.connection = connection
        if is_psycopg3(connection):
            self.transaction_status: Callable[[], int] = functools.partial(
                getattr, connection.pgconn, "transaction_status"
            )
            self.fd = connection.pgconn.socket
        else:
            self.transaction_status = connection.get_transaction_status
            self.fd = connection.fileno()
        self._poll = select.poll()
        self._poll.register(self.fd, _READABLE)
        #: ``poll(0)``: a non-empty list when the socket has something to
        #: read (or is closed); one system call, for the hot path.
        self.poll = self._poll.poll

    def server_closed(self) -> bool:
        """True when the server has already closed this idle connection.

        While a session is idle the server sends nothing but notifications,
        notices and parameter changes; a FATAL (scale event,
        ``pg_terminate_backend``, idle timeout) or the end of the stream
        makes the socket readable, and asking the driver to read what is
        there tells which it was, without a round trip. psycopg2 reports such
        a death only as a bare "server closed the connection unexpectedly",
        which proves nothing about a write sent on it; found before sending,
        it proves the write was never sent."""
        try:
            # A FATAL and the end of the stream may arrive as two reads.
            for _ in range(3):
                if not self._poll.poll(0):
                    return False
                if _consume(self.connection):
                    return True
        except Exception as error:
            # Which errors say so is asked only then (not per connect).
            if isinstance(error, driver_errors(self.connection)):
                return True  # the driver found the stream ended
            raise
        return False

    def cut(self) -> None:
        """Shut the socket down from another thread: a statement blocked on
        it returns at once with a lost-connection error. The descriptor is
        duplicated, never closed under libpq's feet."""
        cut_socket(self.fd)


def cut_socket(fd: int, inode: int | None = None) -> bool:
    """Shut socket ``fd`` down both ways (only if it is still the socket
    with ``inode``, when given: the number may have been reused); False
    when it is not that socket any more."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return inode is None
    try:
        if inode is not None and os.fstat(sock.fileno()).st_ino != inode:
            return False
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        return True
    finally:
        sock.close()


def _consume(connection: Any) -> bool:
    """Read what the server sent; True when that ended the connection.

    The server's FATAL can arrive before the end of the stream. libpq hands
    an error received while idle to the notice processor, so it is looked
    for among the notices: once consumed here it would be missing from the
    error a write on this connection raises, and with it the proof that the
    write never ran."""
    pgconn = getattr(connection, "pgconn", None)
    if pgconn is not None:
        return _consume_psycopg(pgconn)
    return _consume_psycopg2(connection)


def _consume_psycopg(pgconn: Any) -> bool:
    fatal: list[bytes] = []
    original = pgconn.notice_handler

    def capture(result: Any) -> None:
        if result.error_field(_SEVERITY_NONLOCALIZED) == b"FATAL":
            fatal.append(b"FATAL")
        if original is not None:
            original(result)

    pgconn.notice_handler = capture
    try:
        pgconn.consume_input()  # raises once the stream has ended
        pgconn.is_busy()  # parses what was read: notices reach `capture`
    finally:
        pgconn.notice_handler = original
    return bool(fatal) or pgconn.status != 0  # ConnStatus.OK


def _consume_psycopg2(connection: Any) -> bool:
    last = connection.notices[-1] if connection.notices else None
    connection.poll()  # takes notices and notifications; raises once closed
    if connection.closed:
        return True
    notices = connection.notices
    return bool(notices) and notices[-1] is not last and notices[-1].startswith("FATAL:")


def close_broken(connection: Any) -> None:
    """Close a connection that must never be used again. One from psycopg's
    pool (Django's ``OPTIONS["pool"]``) also goes back to its pool, closed:
    the pool then counts it gone and opens a replacement, where a plain
    close would leak its slot until the pool ran dry."""
    connection.close()
    # psycopg_pool marks the connections it hands out with their pool.
    pool = getattr(connection, "_pool", None)
    if pool is not None:
        pool.putconn(connection)
