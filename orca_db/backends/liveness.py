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
    """Read what the server sent; True when that ended the connection."""
    pgconn = getattr(connection, "pgconn", None)
    if pgconn is not None:  # psycopg 3: raises once the stream has ended
        pgconn.consume_input()
        return pgconn.status != 0  # ConnStatus.OK
    connection.poll()  # psycopg2: takes notifications, raises once closed
    return bool(connection.closed)
