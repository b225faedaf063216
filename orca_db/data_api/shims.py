"""What other code asks of a psycopg connection, answered for a Data API
one: ``orca_db.backends.liveness`` (through ``retry_atomic``) asks for a
socket to poll, ``django.contrib.postgres`` registers types on each new
connection. Shims until orca-db's retry core asks a driver seam instead."""

from __future__ import annotations

import os
from typing import Any

from . import errors


class PsycopgShims:
    closed: bool
    broken: bool
    _adapters: Any = None

    def fileno(self) -> int:
        """A descriptor that never becomes readable while the connection is
        usable: ``orca_db.backends.liveness.server_closed`` (which
        ``retry_atomic`` asks before each run) then sees an open
        connection, and a broken one raises, reading as closed. A server
        cannot close a Data API connection while it is idle: there is none."""
        if self.closed or self.broken:
            raise errors.InterfaceError("connection closed")
        return _never_readable()

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
