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
import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.db import OperationalError

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
#: The held watches armed within the innermost deadline_cap block of this
#: context: disarmed when the block closes.
_held: contextvars.ContextVar[list[Watch] | None] = contextvars.ContextVar(
    "orca_db_held_watches", default=None
)


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
    held_token = _held.set(held)
    with _open_caps_lock:
        open_caps += 1
    try:
        if hold_open:
            for hook in on_open:
                hook(at)
        yield
    finally:
        with _open_caps_lock:
            open_caps -= 1
        _held.reset(held_token)
        _cap.reset(token)
        for entry in held:
            watchdog.disarm(entry)


def cap() -> float | None:
    """The instant set by the innermost :func:`deadline_cap`, or ``None``."""
    return _cap.get()


class Watch:
    """One call (or, held, one connection) under watch; ``cut`` tells
    whether its socket was shut at the deadline."""

    __slots__ = ("at", "cut", "fd", "held", "inode", "key")

    def __init__(self, at: float, fd: int, key: int, inode: int | None = None):
        self.at = at
        self.fd = fd
        self.key = key
        self.cut = False
        #: Held watches stay armed after each call (``release`` leaves them
        #: alone) until ``disarm``: the cap closes or the connection does.
        self.held = inode is not None
        self.inode = inode

    def __lt__(self, other: Watch) -> bool:
        return self.at < other.at


class _Watchdog:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[Watch] = []
        self._live: dict[int, Watch] = {}
        self._keys = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, fd: int, at: float, inode: int | None = None) -> Watch:
        entry = Watch(at, fd, next(self._keys), inode)
        with self._lock:
            self._live[entry.key] = entry
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="orca-db-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0] is entry:
                self._lock.notify()
        return entry

    def release(self, entry: Watch) -> None:
        """The call returned: its socket must not be touched any more (the
        descriptor may be closed and its number reused). A held watch stays
        armed for the next call on its connection."""
        with self._lock:  # also held: a cut under way is over (and ``cut`` set)
            if not entry.held:
                self._live.pop(entry.key, None)

    def disarm(self, entry: Watch) -> None:
        """Whatever the kind of watch: its socket is left alone from now."""
        with self._lock:
            self._live.pop(entry.key, None)

    def armed(self, entry: Watch) -> bool:
        return entry.key in self._live

    def _run(self) -> None:
        from .drivers import cut_socket

        with self._lock:
            while True:
                while self._heap and self._heap[0].key not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._lock.wait()
                    continue
                wait = self._heap[0].at - time.monotonic()
                if wait > 0:
                    self._lock.wait(wait)
                    continue
                entry = heapq.heappop(self._heap)
                del self._live[entry.key]
                # Under the lock: release() cannot return (and the caller
                # close the descriptor) while the socket is being shut down.
                entry.cut = True  # before the shutdown wakes the caller up
                if not cut_socket(entry.fd, entry.inode):
                    entry.cut = False  # not its socket any more


watchdog = _Watchdog()


def _after_fork() -> None:
    # The watchdog thread does not survive a fork (a pre-forking server that
    # connected in its master): the child starts its own on first use, and
    # never cuts the sockets it inherited (shutting one down would cut the
    # parent's connection too).
    watchdog.__init__()  # type: ignore[misc]


os.register_at_fork(after_in_child=_after_fork)


def watch_statement(fd: int, statement_deadline: float | None) -> Watch | None:
    """Watch the statement about to run on socket ``fd`` until the cap or
    ``statement_deadline`` seconds from now, whichever comes first (``None``
    when neither applies). The caller releases the watch when it returns."""
    at = _cap.get()
    if statement_deadline:
        own = time.monotonic() + statement_deadline
        at = own if at is None else min(at, own)
    return None if at is None else watchdog.watch(fd, at)


def hold(fd: int, at: float) -> Watch | None:
    """A held watch on socket ``fd`` until ``at``, disarmed when the
    innermost :func:`deadline_cap` block closes (``None`` outside one, or
    when ``fd`` is not a socket any more)."""
    held = _held.get()
    if held is None:
        return None
    try:
        inode = os.fstat(fd).st_ino
    except OSError:
        return None
    entry = watchdog.watch(fd, at, inode)
    held.append(entry)
    return entry


#: Seconds a connection pool may wait for a free connection in this
#: context (:func:`pool_wait_bounded`), or ``None``.
_pool_wait: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "orca_db_pool_wait", default=None
)


def pool_wait(own: float) -> float:
    """The wait a bounded pool allows, its own timeout being ``own``."""
    wait = _pool_wait.get()
    return own if wait is None else min(own, wait)


_BOUNDED_POOLS: dict[tuple[type, str], type] = {}


def _bounded_pool_class(cls: type, attribute: str) -> type:
    """``cls`` whose ``attribute`` (the timeout its wait for a free
    connection reads) is capped by :func:`pool_wait`."""
    made = _BOUNDED_POOLS.get((cls, attribute))
    if made is None:

        def get(pool: Any) -> float:
            return pool_wait(pool.__dict__[attribute])

        def set_(pool: Any, value: float) -> None:
            pool.__dict__[attribute] = value

        made = _BOUNDED_POOLS.setdefault(
            (cls, attribute),
            type(f"Bounded{cls.__name__}", (cls,), {attribute: property(get, set_)}),
        )
    return made


@contextlib.contextmanager
def pool_wait_bounded(pool: Any, seconds: float, attribute: str = "timeout") -> Iterator[None]:
    """Within the block, ``pool`` (psycopg's, or SQLAlchemy's with
    ``attribute="_timeout"``) waits for a free connection ``seconds`` at
    most; a wait cut short by that raises :class:`ConnectTimeout`. The
    pool's class is made a subclass whose timeout reads this bound: the
    pool is shared by threads, its own attribute is left alone."""
    if pool is None or attribute not in getattr(pool, "__dict__", {}):
        yield
        return
    cls = type(pool)
    if cls not in {made for made in _BOUNDED_POOLS.values()}:
        pool.__class__ = _bounded_pool_class(cls, attribute)
    own = pool.__dict__[attribute]
    token = _pool_wait.set(max(seconds, 0.0))
    try:
        yield
    except Exception as error:
        if seconds < own and _is_pool_timeout(error):
            raise ConnectTimeout() from error
        raise
    finally:
        _pool_wait.reset(token)


def _is_pool_timeout(error: BaseException) -> bool:
    # psycopg_pool.PoolTimeout (wrapped by Django as an OperationalError),
    # SQLAlchemy's TimeoutError.
    seen = {id(error)}
    while error is not None:
        name = type(error).__name__
        module = type(error).__module__
        if name == "PoolTimeout" or (name == "TimeoutError" and module.startswith("sqlalchemy")):
            return True
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
        if error is not None and id(error) in seen:
            return False
        if error is not None:
            seen.add(id(error))
    return False


class ConnectTimeout(OperationalError):
    """A connect attempt bounded by the caller ran out of time. Classified
    like libpq's own "timeout expired": retryable, nothing was applied."""

    def __init__(self, detail: str = "the attempt was bounded by the operation's deadline") -> None:
        super().__init__(f"timeout expired ({detail})")


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
