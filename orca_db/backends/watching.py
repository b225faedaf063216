"""Every blocking call on an aurora connection ends by its deadline (rule 2
of docs/retry-safety.md), for the aurora backend's mixin.

Within a :func:`~orca_db.deadlines.deadline_cap` block the connection's
socket is **held** under one watch from the block's start (or the
connection's connect or first use) until the block or the connection
closes: whatever blocks on it (a statement, ``ROLLBACK``, a fetch from a
server-side cursor, Django's set-up, a session restore, a close, a call
nobody listed) ends at the cap. ``statement_deadline``, a bound per call,
arms a watch per call where calls block: statements and ``COMMIT``
(cursor.py, ending.py), ``ROLLBACK``, fetches and set-up (here). Nothing is
armed while neither applies. The code that catches a driver's error asks
the watch whether it was cut (``watch.cut``) and raises ``DeadlineExceeded``
instead of a lost-connection error.
"""

from __future__ import annotations

import time
from typing import Any

from django.db.utils import Error as DjangoError

from .. import deadlines, drivers
from ..classify import driver_error
from ..deadlines import ConnectTimeout, Watch, watchdog
from ..exceptions import DeadlineExceeded


def socket_of(connection: Any) -> int:
    """The descriptor of a driver connection's socket (psycopg 3 or 2, also
    through a pool's proxy)."""
    pgconn = getattr(connection, "pgconn", None)
    if pgconn is not None:
        return pgconn.socket
    return connection.fileno()


class ConnectionWatchMixin:
    """Held watches, and the calls bounded here; mixed into
    ``AuroraRetryMixin``."""

    _orca_held_watch: Watch | None = None
    _orca_held_watches: tuple[Watch, ...] = ()
    _orca_setup_watch: Watch | None = None
    #: A failed ROLLBACK dropped the connection: Django's close() that
    #: follows (leaving atomic()) is part of that loss, not a fresh start.
    _orca_dropped = False

    # ----- arming -------------------------------------------------------------

    def _orca_hold(self, fd: int, at: float) -> Watch | None:
        """The held watch on socket ``fd`` until the cap ``at``: the one
        armed already, or a new one."""
        held = self._orca_held_watch
        if held is not None and held.fd == fd and held.at <= at and watchdog.armed(held):
            return held
        held = deadlines.hold(fd, at)
        if held is not None:
            self._orca_held_watch = held
            self._orca_held_watches = (
                *(w for w in self._orca_held_watches if watchdog.armed(w)),
                held,
            )
        return held

    def _orca_watch_call(self) -> Watch | None:
        """The watch over one blocking call on the current connection: the
        held one under a cap, or one of its own for ``statement_deadline``
        when that ends first; ``None`` when no deadline applies. The caller
        releases it when the call returns (a held watch stays armed)."""
        link = self._orca_link  # type: ignore[attr-defined]
        if link is None:
            return None
        fd = link.fd
        at = deadlines.cap()
        watch = None
        if at is not None:
            watch = self._orca_hold(fd, at) or watchdog.watch(fd, at)
        statement_deadline = self._orca_statement_deadline  # type: ignore[attr-defined]
        if statement_deadline:
            own = time.monotonic() + statement_deadline
            if watch is None or own < watch.at:
                return watchdog.watch(fd, own)
        return watch

    def _orca_disarm(self) -> None:
        """The connection is closed or given back: its socket is left alone."""
        for watch in self._orca_held_watches:
            watchdog.disarm(watch)
        self._orca_held_watches = ()
        self._orca_held_watch = None
        setup, self._orca_setup_watch = self._orca_setup_watch, None
        if setup is not None:
            watchdog.disarm(setup)

    # ----- connection set-up and session restore --------------------------------

    def _orca_watch_setup(self, connection: Any, until: float | None) -> None:
        """Right after the socket is made: Django's set-up
        (``init_connection_state``) and the session's restore run until the
        cap (a held watch, kept after), or until ``until`` (the deadline of
        the operation connecting) or ``statement_deadline`` if that ends
        first."""
        statement_deadline = self._orca_statement_deadline  # type: ignore[attr-defined]
        if not (deadlines.open_caps or until is not None or statement_deadline):
            return
        try:
            fd = socket_of(connection)
        except Exception:
            return
        now = time.monotonic()
        at = deadlines.cap()
        watch = None if at is None else self._orca_hold(fd, at)
        ends = [] if until is None else [until]
        if statement_deadline:
            ends.append(now + statement_deadline)
        own = min(ends, default=None)
        if own is not None and (watch is None or own < watch.at):
            watch = watchdog.watch(fd, own)
        self._orca_setup_watch = watch

    def _orca_setup_ended(self) -> bool:
        """The set-up is over (either way); True when it was cut off."""
        watch, self._orca_setup_watch = self._orca_setup_watch, None
        if watch is None:
            return False
        watchdog.release(watch)
        return watch.cut

    def _orca_setup_cut_off(self) -> ConnectTimeout:
        # A connect that did not finish in time: retried within what is left
        # of the operation's deadline, then RetriesExhausted.
        return ConnectTimeout(
            "the new connection's set-up (Django's session settings, or the session "
            "restored after a reconnect) was still waiting for the server at its deadline "
            "and was cut off; no statement of the application's ran on it"
        )

    # ----- ROLLBACK -------------------------------------------------------------

    def _orca_bounded_rollback(self, rollback) -> Any:
        watch = self._orca_watch_call()
        if watch is None:
            return rollback()
        try:
            result = rollback()
        except DjangoError as error:
            watchdog.release(watch)
            if watch.cut:
                raise self._orca_rollback_cut_off() from driver_error(error)
            raise
        except BaseException:
            watchdog.release(watch)
            raise
        watchdog.release(watch)
        if watch.cut:
            self._orca_lose_connection()  # type: ignore[attr-defined]  # the answer came, the socket is shut
        return result

    def _orca_rollback_cut_off(self) -> DeadlineExceeded:
        session = self._orca_session  # type: ignore[attr-defined]
        session.lost = True
        session.transaction_ended(False)
        if self._orca_autocommit_wish is None:  # type: ignore[has-type]
            # set_autocommit(False) of the application's holds on the next
            # connection (unless atomic() turned it off: see close()).
            self._orca_autocommit_wish = self.autocommit  # type: ignore[attr-defined]
        self._discard_connection()  # type: ignore[attr-defined]
        # Leaving atomic() must not reconnect at once (into the network that
        # just went silent, past the deadline), and the close() atomic() makes
        # after a failed rollback is part of the loss: the session comes back
        # on the next connection. (The application's own close() still
        # starts a clean session.)
        self.closed_in_transaction = True
        self._orca_dropped = True
        return DeadlineExceeded(
            f"ROLLBACK on database {self.alias!r} was still waiting for the server at its "  # type: ignore[attr-defined]
            f"deadline and was cut off: its connection was closed. Nothing of the transaction "
            f"was committed: the server rolls it back when it sees the connection end (at "
            f"once if the network carries the close; otherwise when its own TCP keepalive or "
            f"client_connection_check_interval notices, its locks held until then)."
        )

    # ----- fetches from server-side cursors -------------------------------------

    def chunked_cursor(self):
        cursor = super().chunked_cursor()
        if getattr(cursor, "db", None) is self and getattr(cursor.cursor, "name", None):
            cursor.__class__ = _fetching(type(cursor))
        return cursor


def _hold_open_connections(at: float) -> None:
    """A deadline cap opens: the aurora connections already open in this
    context are held from now on, whatever call comes first."""
    from django.db import connections

    for db in connections.all(initialized_only=True):
        if isinstance(db, ConnectionWatchMixin) and db.connection is not None:
            link = db._orca_link  # type: ignore[attr-defined]
            if link is not None:
                db._orca_hold(link.fd, at)


deadlines.on_open.append(_hold_open_connections)

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


def _fetch_method(name: str):
    def fetch(wrapper, *args: Any, **kwargs: Any) -> Any:
        db = wrapper.db
        method = wrapper.__getattr__(name)  # Django's, with its error wrapping
        if not (deadlines.open_caps or db._orca_statement_deadline) or db.connection is None:
            return method(*args, **kwargs)
        watch = db._orca_watch_call()
        if watch is None:
            return method(*args, **kwargs)
        in_transaction = db.in_atomic_block or not db.autocommit
        try:
            result = method(*args, **kwargs)
        except DjangoError as error:
            watchdog.release(watch)
            if watch.cut:
                raise _fetch_cut_off(db, in_transaction) from driver_error(error)
            raise
        except BaseException:
            watchdog.release(watch)
            raise
        watchdog.release(watch)
        if watch.cut:
            db._orca_lose_connection()
        return result

    fetch.__name__ = fetch.__qualname__ = name
    return fetch


def _close(wrapper) -> None:
    """Close the server-side cursor (psycopg2 sends CLOSE): bounded like a
    fetch; on a connection that is gone (a fetch was cut off) the cursor
    went with it, and there is nothing to report."""
    db = wrapper.db
    cursor = wrapper.cursor
    watch = None
    if (deadlines.open_caps or db._orca_statement_deadline) and db.connection is not None:
        watch = db._orca_watch_call()
    try:
        cursor.close()
    except Exception:
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


def _fetch_cut_off(db, in_transaction: bool) -> DeadlineExceeded:
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
