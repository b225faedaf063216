"""What a ``retry_atomic`` run sent through the other databases of
``DATABASES``: a write there is not undone by this database's rollback, so
after one the function must not run again.

Two ways a statement reaches another database: ``execute``/``executemany``,
seen by an execute wrapper (only what may be replayed as a read is taken
for a read: ``SELECT f()`` may be a read to the lexer, and ``f()`` write),
and the cursor methods that send SQL around them (``callproc``, COPY,
psycopg 3's ``stream()``), counted by the retrying cursor
(:func:`sent_unseen`): each counts as a write."""

from __future__ import annotations

import contextlib

from django.db import connections

from .sql import is_replayable_read


class Elsewhere:
    """Watches the other databases while a run's function runs."""

    def __init__(self, alias: str):
        self.alias = alias
        #: The first other database a write was sent to (``None``: none).
        self.wrote: str | None = None

    @contextlib.contextmanager
    def watching(self):
        self.wrote = None
        others = _other_databases(self.alias)
        before = _unseen(others)
        try:
            with contextlib.ExitStack() as stack:
                for other in others:
                    stack.enter_context(other.execute_wrapper(self._watch))
                yield
        finally:
            if self.wrote is None:
                for other, count, now in zip(others, before, _unseen(others), strict=True):
                    if now != count:
                        self.wrote = other.alias
                        break

    def _watch(self, execute, sql, params, many, context):
        if self.wrote is None and (many or not is_replayable_read(sql)):
            self.wrote = context["connection"].alias
        return execute(sql, params, many, context)


def _other_databases(alias: str) -> list:
    """This thread's connection objects of every other alias (made now if
    need be: an alias first used inside the function must be watched too;
    no connection is opened). One whose backend cannot even load is left
    out: the function cannot write through it either."""
    others = []
    for name in connections:
        if name != alias:
            try:
                others.append(connections[name])
            except Exception:  # reported when the function uses it
                continue
    return others


def _unseen(others: list) -> list[int]:
    return [unseen_sends(other) for other in others]


def unseen_sends(connection) -> int:
    """How many calls ``connection`` sent around ``execute`` so far."""
    return getattr(connection, "_orca_unseen_sends", 0)


#: The driver cursor methods that send SQL around ``execute``.
_UNSEEN_SENDS = ("copy", "stream", "copy_expert", "copy_from", "copy_to")


def sent_unseen(db) -> None:
    """Count a call that sent SQL no execute wrapper saw (the retrying
    cursor's ``callproc`` and the methods of :func:`counted_methods`)."""
    db._orca_unseen_sends = getattr(db, "_orca_unseen_sends", 0) + 1


def counted_methods(cls: type, driver_cursor: type | None) -> dict:
    """Methods for the retrying cursor wrapper class ``cls`` that count each
    call of the driver's methods that send SQL around ``execute``: only
    those ``driver_cursor`` has, so that ``hasattr`` still tells the drivers
    apart. Each calls what ``cls`` had under its name (the session check's,
    the debug wrapper's logging COPY), or else the driver's."""
    return {
        name: _counted(name, getattr(super(cls, cls), name, None))
        for name in _UNSEEN_SENDS
        if driver_cursor is not None and hasattr(driver_cursor, name)
    }


def _counted(name: str, parent):
    def method(self, *args, **kwargs):
        sent_unseen(self.db)
        if parent is not None:
            return parent(self, *args, **kwargs)
        return getattr(self.cursor, name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method
