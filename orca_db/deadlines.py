"""Time bounds that hold even when the network goes silent.

A statement blocked on a connection whose server or network stopped
answering (nothing closed, nothing sent) waits for the kernel's TCP timeout,
15 minutes or more; in AWS Lambda the function is killed first, mid-flight.
Two bounds end such waits on time:

- :func:`deadline_cap` (used by ``orca_db.aws_lambda`` with the function's
  remaining time, and by the management commands with their own timeout):
  within the block no retry is attempted past the cap, no connect attempt
  is started that could end after it, and a statement still running at the
  cap is cut off;
- ``OPTIONS["aurora"]["statement_deadline"]``: the same cut for every
  statement of a database, outside Lambda.

A blocking call is cut off by shutting its socket down from a watchdog
thread: the driver, blocked in ``recv``, sees the stream end at once and
raises a lost-connection error, which the backend turns into
``DeadlineExceeded``. (A cancel request would travel over the same silent
network.) The watchdog is one daemon thread, started on first use, that
sleeps until the earliest registered deadline; nothing runs when no
deadline applies.

Two kinds of watch:

- a **held** watch (:func:`hold`) covers a connection's socket from the
  moment the backend first uses it inside a :func:`deadline_cap` block until
  the block closes (or the connection does): every blocking call on that
  socket, whoever makes it (a statement, ``ROLLBACK``, a fetch from a
  server-side cursor, Django's connection set-up, a session restore, a
  close), ends at the cap, including calls nobody thought of;
- a **call** watch (:meth:`_Watchdog.watch`) covers one call, for
  ``statement_deadline`` (a bound per call, not an instant) and for a
  connection's set-up within an operation's deadline.

A held watch outlives the calls it covers, so the descriptor number it
holds may be closed and reused meanwhile: it remembers the socket's inode
and cuts nothing that is not that same socket.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .outcomes import ConnectTimeout
from .watches import Watch, held_in_cap, hold, watchdog

__all__ = [
    "ConnectTimeout",
    "TimedOut",
    "Watch",
    "bounded_connect",
    "cap",
    "deadline_cap",
    "hold",
    "run_within",
    "watch_statement",
    "watchdog",
]

#: Absolute ``time.monotonic()`` instant past which nothing may run in this
#: context, or ``None``.
_cap: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "orca_db_deadline_cap", default=None
)
#: How many deadline_cap blocks are open in the process: while none is and
#: a database has no statement_deadline, statements skip the watchdog.
open_caps = 0
_open_caps_lock = threading.Lock()
#: Called with the cap's instant when a deadline_cap block opens: the aurora
#: backend holds the connections already open in this context.
on_open: list[Callable[[float], None]] = []
#: Called (no argument) whenever a deadline_cap block opens, held or not,
#: before anything runs in it: a host that leaves a call unwatched while no
#: cap is open (the SQLAlchemy plugin's ROLLBACK) arms it from then on.
on_any_open: list[Callable[[], None]] = []


@contextlib.contextmanager
def deadline_cap(seconds: float, *, hold_open: bool = True) -> Iterator[None]:
    """Within this block nothing (retries, connect attempts, statements)
    runs more than ``seconds`` from now.

    With ``hold_open`` (the default) the connections already open in this
    context are held from the start; without, only those used or made in
    the block (a bound on some work of orca-db's own, such as storing
    events, that must not cut the application's connections)."""
    global open_caps
    at = time.monotonic() + seconds
    outer = _cap.get()
    if outer is not None:
        at = min(at, outer)
    token = _cap.set(at)
    held: list[Watch] = []
    held_token = held_in_cap.set(held)
    with _open_caps_lock:
        open_caps += 1
    try:
        for arm in on_any_open:
            arm()
        if hold_open:
            for hook in on_open:
                hook(at)
        yield
    finally:
        with _open_caps_lock:
            open_caps -= 1
        held_in_cap.reset(held_token)
        _cap.reset(token)
        for entry in held:
            watchdog.disarm(entry)


def cap() -> float | None:
    """The instant set by the innermost :func:`deadline_cap`, or ``None``."""
    return _cap.get()


def cap_left() -> float | None:
    """Seconds left to the innermost :func:`deadline_cap`, or ``None``."""
    at = _cap.get()
    return None if at is None else at - time.monotonic()


def watch_statement(fd: int, statement_deadline: float | None) -> Watch | None:
    """Watch the statement about to run on socket ``fd`` until the cap or
    ``statement_deadline`` seconds from now, whichever comes first (``None``
    when neither applies). The caller releases the watch when it returns."""
    at = _cap.get()
    if statement_deadline:
        own = time.monotonic() + statement_deadline
        at = own if at is None else min(at, own)
    return None if at is None else watchdog.watch(fd, at)


# libpq (and psycopg 3, which mimics it) round a connect_timeout below 2 s
# up to 2 s.
LIBPQ_MIN_CONNECT_TIMEOUT = 2


def bounded_connect(
    connect: Callable[[dict[str, Any]], Any],
    params: dict[str, Any],
    remaining: float | None,
    close: Callable[[Any], None],
) -> Any:
    """``connect(params)`` finished within ``remaining`` seconds.

    The application's own ``connect_timeout`` is capped by what is left.
    Below libpq's 2 s minimum libpq cannot keep the bound, so the attempt
    runs in a worker thread that the caller stops waiting for at the bound;
    the worker closes whatever connection it gets too late. An attempt with
    no time left is not started."""
    if remaining is None:
        return connect(params)
    if remaining <= 0:
        raise ConnectTimeout()
    own = _seconds(params.get("connect_timeout"))
    budget = remaining if own is None else min(own, remaining)
    if budget >= LIBPQ_MIN_CONNECT_TIMEOUT:
        # Whole seconds, rounded down: libpq's bound then ends within ours.
        return connect({**params, "connect_timeout": int(budget)})
    slow = {**params, "connect_timeout": LIBPQ_MIN_CONNECT_TIMEOUT}
    try:
        return run_within(budget, connect, slow, late=close)
    except TimedOut:
        raise ConnectTimeout() from None


class TimedOut(Exception):
    """:func:`run_within` stopped waiting at its bound."""


def run_within(seconds: float, function: Callable[..., Any], *args: Any, late=None) -> Any:
    """``function(*args)``, waited for at most ``seconds``: it runs in a
    worker thread that the caller stops waiting for at the bound
    (:class:`TimedOut`); ``late(result)`` disposes of a result that comes
    after that (a connection to close). For calls nothing else can bound: a
    connect below libpq's 2 s minimum, an HTTPS call of the Data API."""
    return _Worker(function, args, late).result(seconds)


class _Worker:
    """A call in a thread of its own, abandoned past a bound."""

    def __init__(self, function: Callable[..., Any], args: tuple, late) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._outcome: tuple[bool, Any] | None = None
        self._abandoned = False
        self._late = late
        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run, args=(self._attempt, function, args), daemon=True
        )
        thread.name = "orca-db-bounded"
        thread.start()

    def _attempt(self, function: Callable[..., Any], args: tuple) -> None:
        try:
            outcome = (True, function(*args))
        except BaseException as error:
            outcome = (False, error)
        with self._lock:
            if self._abandoned:
                if outcome[0] and self._late is not None:
                    with contextlib.suppress(Exception):
                        self._late(outcome[1])
                return
            self._outcome = outcome
        self._done.set()

    def result(self, timeout: float) -> Any:
        self._done.wait(timeout)
        with self._lock:
            if self._outcome is None:
                self._abandoned = True
                raise TimedOut()
            succeeded, value = self._outcome
        if succeeded:
            return value
        raise value


def _seconds(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None  # libpq will say what is wrong with it
    return seconds if seconds > 0 else None
