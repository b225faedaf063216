"""Fetches from server-side cursors (``QuerySet.iterator()``) end by their
deadline, like statements: each fetch is a round trip (rule 2 of
docs/retry-safety.md; the watches are in ``watching.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import drivers
from ..deadlines import watchdog
from ..exceptions import DeadlineExceeded
from .watching import watch_if_due, watched

if TYPE_CHECKING:
    from .lost import LostConnectionMixin


def fetching(db: LostConnectionMixin, cursor: Any) -> Any:
    """``chunked_cursor()``'s wrapper: a server-side cursor's fetches are
    bounded like statements."""
    if getattr(cursor, "db", None) is db and getattr(cursor.cursor, "name", None):
        cursor.__class__ = _fetching(type(cursor))
    return cursor


_FETCHING: dict[type, type] = {}


def _fetching(cursor_class: type) -> type:
    """The wrapper class of a server-side cursor: each fetch is a round trip,
    bounded like a statement."""
    made = _FETCHING.get(cursor_class)
    if made is None:
        made = _FETCHING.setdefault(
            cursor_class,
            type(
                f"Fetching{cursor_class.__name__}",
                (cursor_class,),
                {
                    "__module__": __name__,
                    "fetchone": _fetch_method("fetchone"),
                    "fetchmany": _fetch_method("fetchmany"),
                    "fetchall": _fetch_method("fetchall"),
                    "close": _close,
                },
            ),
        )
    return made


def _fetch_method(name: str) -> Callable[..., Any]:
    def fetch(wrapper: Any, *args: Any, **kwargs: Any) -> Any:
        db = wrapper.db
        method = wrapper.__getattr__(name)  # Django's, with its error wrapping
        if db.connection is None:
            return method(*args, **kwargs)
        watch = watch_if_due(db)
        if watch is None:
            return method(*args, **kwargs)
        in_transaction = db.in_atomic_block or not db.autocommit
        return watched(
            db, watch, lambda: _fetch_cut_off(db, in_transaction), method, *args, **kwargs
        )

    fetch.__name__ = fetch.__qualname__ = name
    return fetch


def _close(wrapper: Any) -> None:
    """Close the server-side cursor (psycopg2 sends CLOSE): bounded like a
    fetch; on a connection that is gone (a fetch was cut off) the cursor
    went with it, and there is nothing to report."""
    db = wrapper.db
    cursor = wrapper.cursor
    watch = None if db.connection is None else watch_if_due(db)
    try:
        cursor.close()
    except Exception:
        # The driver's own error (not wrapped by Django): watched() does
        # not apply.
        if watch is not None:
            watchdog.release(watch)
            if watch.cut:
                db._orca_lose_connection()
                return
        if drivers.is_closed(cursor.connection):
            return
        raise
    if watch is not None:
        watchdog.release(watch)
        if watch.cut:
            db._orca_lose_connection()


def _fetch_cut_off(db: LostConnectionMixin, in_transaction: bool) -> DeadlineExceeded:
    if in_transaction:
        db._orca_lose_transaction()
        return DeadlineExceeded(
            f"A fetch from a server-side cursor on database {db.alias!r} was still waiting "
            f"at its deadline; it was cut off, and the server rolls its transaction back."
        )
    db._orca_lose_connection()
    return DeadlineExceeded(
        f"A fetch from a server-side cursor on database {db.alias!r} was still waiting at "
        f"its deadline and was cut off (a read: nothing was applied)."
    )
