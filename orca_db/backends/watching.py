"""Every blocking call on an aurora connection ends by its deadline (rule 2
of docs/retry-safety.md): the watches over the wrapper's state object.

Within a :func:`~orca_db.deadlines.deadline_cap` block the connection's
socket is **held** under one watch from the block's start (or the
connection's connect or first use) until the block or the connection
closes: whatever blocks on it (a statement, ``ROLLBACK``, a fetch from a
server-side cursor, Django's set-up, a session restore, a close, a call
nobody listed) ends at the cap. ``statement_deadline``, a bound per call,
arms a watch per call where calls block: statements (cursor.py),
``COMMIT`` and ``ROLLBACK`` (ending.py), fetches (fetching.py) and the
set-up (here). Nothing is armed while neither applies: the check is one
module counter and one slot (:func:`watch_if_due`). Every bounded call runs
through :func:`watched`, which asks the watch whether it was cut
(``watch.cut``) and raises the caller's ``DeadlineExceeded`` instead of a
lost-connection error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from django.db.utils import Error as DjangoError

from .. import cut_off, deadlines
from ..classify import driver_error
from ..cut_off import ended, socket_of
from ..deadlines import ConnectTimeout, Watch, watchdog
from ..exceptions import DJANGO_ERRORS
from ..outcomes import DeadlineExceeded
from .state import ConnectionState

if TYPE_CHECKING:
    from .lost import LostConnectionMixin

T = TypeVar("T")
#: Makes the error a call cut off at its deadline raises.
CutOff = Callable[[], BaseException]


def watched(
    db: LostConnectionMixin,
    watch: Watch | None,
    cut_off: CutOff,
    call: Callable[..., T],
    /,
    *args: Any,
    **kwargs: Any,
) -> T:
    """``call(*args)`` under ``watch`` (``None``: as it is), released when
    the call returns: a driver error after the watch cut the socket becomes
    ``cut_off()``; an answer that came as the socket was cut loses the
    connection (the socket is shut). The one sequence of every bounded call
    (statements, replays, COMMIT, ROLLBACK, fetches)."""
    if watch is None:
        return call(*args, **kwargs)
    try:
        result = call(*args, **kwargs)
    except DjangoError as error:
        watchdog.release(watch)
        if watch.cut:
            raise cut_off() from driver_error(error)
        raise
    except BaseException:
        # Not a database error (a driver's IndexError for a missing
        # parameter, a signal's exception): the watch must not outlive the
        # call, or it would cut whatever socket holds its file descriptor
        # number at the deadline.
        watchdog.release(watch)
        raise
    watchdog.release(watch)
    if watch.cut:
        db._orca_lose_connection()  # the answer came, the socket is shut
    return result


def watch_if_due(db: LostConnectionMixin) -> Watch | None:
    """:func:`watch_call`, after the check that costs nothing while no
    deadline cap is open and the database has no ``statement_deadline``."""
    if deadlines.open_caps or db.orca_state.statement_deadline:
        return watch_call(db.orca_state)
    return None


# ----- arming -------------------------------------------------------------


def hold(state: ConnectionState, fd: int, at: float) -> Watch | None:
    """The held watch on socket ``fd`` until the cap ``at``: the one armed
    already, or a new one."""
    held = state.held_watch
    if held is not None and held.fd == fd and held.at <= at and watchdog.armed(held):
        return held
    held = deadlines.hold(fd, at)
    if held is not None:
        state.held_watch = held
        state.held_watches = (*(w for w in state.held_watches if watchdog.armed(w)), held)
    return held


def watch_call(state: ConnectionState) -> Watch | None:
    """The watch over one blocking call on the current connection: the held
    one under a cap, or one of its own for ``statement_deadline`` when that
    ends first; ``None`` when no deadline applies. The caller releases it
    when the call returns (a held watch stays armed)."""
    link = state.link
    if link is None:
        return None
    fd = link.fd
    at = deadlines.cap()
    watch = None
    if at is not None:
        watch = hold(state, fd, at) or watchdog.watch(fd, at)
    statement_deadline = state.statement_deadline
    if statement_deadline:
        own = time.monotonic() + statement_deadline
        if watch is None or own < watch.at:
            return watchdog.watch(fd, own)
    return watch


def disarm(state: ConnectionState) -> None:
    """The connection is closed or given back: its socket is left alone."""
    for watch in state.held_watches:
        watchdog.disarm(watch)
    state.held_watches = ()
    state.held_watch = None
    setup, state.setup_watch = state.setup_watch, None
    if setup is not None:
        watchdog.disarm(setup)


# ----- connection set-up and session restore --------------------------------


def watch_setup(
    state: ConnectionState, connection: Any, until: float | None, fd: int | None = None
) -> None:
    """Right after the socket is made: Django's set-up
    (``init_connection_state``) and the session's restore run until the cap
    (a held watch, kept after), or until ``until`` (the deadline of the
    operation connecting) or ``statement_deadline`` if that ends first.
    ``fd``: the connection's socket, when the caller knows it already."""
    statement_deadline = state.statement_deadline
    if not (deadlines.open_caps or until is not None or statement_deadline):
        return
    if fd is None:
        try:
            fd = socket_of(connection)
        except Exception:
            return
    at = deadlines.cap()
    watch = None if at is None else hold(state, fd, at)
    own = until  # the earlier of the two ends (no min() with a keyword: per connect)
    if statement_deadline:
        ends = time.monotonic() + statement_deadline
        if own is None or ends < own:
            own = ends
    if own is not None and (watch is None or own < watch.at):
        watch = watchdog.watch(fd, own)
    state.setup_watch = watch


def setup_ended(state: ConnectionState) -> bool:
    """The set-up is over (either way); True when it was cut off."""
    watch, state.setup_watch = state.setup_watch, None
    return watch is not None and ended(watch)  # no call while nothing was armed


def setup_cut_off() -> ConnectTimeout:
    # A connect that did not finish in time: retried within what is left
    # of the operation's deadline, then RetriesExhausted.
    return ConnectTimeout(
        "the new connection's set-up (Django's session settings, or the session "
        "restored after a reconnect) was still waiting for the server at its deadline "
        "and was cut off; no statement of the application's ran on it"
    )


# ----- ROLLBACK -------------------------------------------------------------


def rollback_cut_off(db: LostConnectionMixin) -> DeadlineExceeded:
    """A ``ROLLBACK`` cut off at its deadline: the connection and the
    transaction are gone, the session comes back on the next connection."""
    state = db.orca_state
    state.session.lost = True
    state.session.transaction_ended(False)
    if state.autocommit_wish is None:
        # set_autocommit(False) of the application's holds on the next
        # connection (unless atomic() turned it off: see close()).
        state.autocommit_wish = db.autocommit
    db._discard_connection()
    # Leaving atomic() must not reconnect at once (into the network that
    # just went silent, past the deadline), and the close() atomic() makes
    # after a failed rollback is part of the loss: the session comes back
    # on the next connection. (The application's own close() still starts
    # a clean session.)
    db.closed_in_transaction = True
    state.rollback_cut = True
    return cut_off.rollback(db.alias, DJANGO_ERRORS)


def _hold_open_connections(at: float) -> None:
    """A deadline cap opens: the aurora connections already open in this
    context are held from now on, whatever call comes first."""
    from django.db import connections

    for db in connections.all(initialized_only=True):
        state = getattr(db, "orca_state", None)
        if isinstance(state, ConnectionState) and db.connection is not None:
            link = state.link
            if link is not None:
                hold(state, link.fd, at)


deadlines.on_open.append(_hold_open_connections)
