"""Finding a connection the server already closed, before sending on it.

While a session is idle the server sends nothing but notifications, notices
and parameter changes; a FATAL (scale event, ``pg_terminate_backend``, idle
timeout) or the end of the stream makes the socket readable. Asking the
driver to consume what is there tells which it was, without a round trip.
psycopg2 reports such a death only as a bare "server closed the connection
unexpectedly", which proves nothing about a write sent on it; found before
sending, it proves the write was never sent.
"""

from __future__ import annotations

import select
from typing import Any


def server_closed(connection: Any) -> bool:
    """True when the idle ``connection`` (psycopg2 or psycopg 3) is known
    to be closed by the server. Costs one ``select`` when it is alive."""
    try:
        fd = connection.fileno()
        # A FATAL and the end of the stream may arrive as two reads.
        for _ in range(3):
            readable, _, _ = select.select([fd], [], [], 0)
            if not readable:
                return False
            if _consume(connection):
                return True
    except Exception:
        return True
    return False


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


# PG_DIAG_SEVERITY_NONLOCALIZED: the severity, never translated.
_SEVERITY_NONLOCALIZED = ord("V")
