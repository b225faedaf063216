"""The watchdog of :mod:`orca_db.deadlines`: one daemon thread, started on
first use, that sleeps until the earliest registered deadline and then
shuts that watch's socket down. A **held** watch (:func:`hold`) covers a
connection for as long as a deadline cap is open, a plain one a single
call."""

from __future__ import annotations

import contextvars
import heapq
import itertools
import os
import threading
import time

#: The held watches armed within the innermost deadline_cap block of this
#: context: disarmed when the block closes.
held_in_cap: contextvars.ContextVar[list[Watch] | None] = contextvars.ContextVar(
    "orca_db_held_watches", default=None
)


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


class _Watchdog:
    def __init__(self) -> None:
        # A plain lock, taken by every call (its ``with`` runs in C), and
        # the thread's condition over that same lock. The heap holds
        # ``(at, key, watch)``: compared in C, never by a method of Watch.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, Watch]] = []
        self._live: dict[int, Watch] = {}
        self._keys = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, fd: int, at: float, inode: int | None = None) -> Watch:
        key = next(self._keys)
        entry = Watch(at, fd, key, inode)
        with self._lock:
            self._live[key] = entry
            heapq.heappush(self._heap, (at, key, entry))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="orca-db-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is entry:
                self._wake.notify()
        return entry

    def release(self, entry: Watch) -> None:
        """The call returned: its socket must not be touched any more (the
        descriptor may be closed and its number reused). A held watch stays
        armed for the next call on its connection."""
        if not entry.held and self._live.pop(entry.key, None) is not None:
            # Taken back before the thread took it (one atomic pop, which
            # the thread makes too): it will never cut this one. The usual
            # case, without the lock.
            return
        with self._lock:  # the thread took it: its cut under way is over (``cut`` set)
            pass

    def disarm(self, entry: Watch) -> None:
        """Whatever the kind of watch: its socket is left alone from now."""
        with self._lock:
            self._live.pop(entry.key, None)

    def armed(self, entry: Watch) -> bool:
        return entry.key in self._live

    def _run(self) -> None:
        from .drivers import cut_socket

        with self._wake:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                entry = heapq.heappop(self._heap)[2]
                if self._live.pop(entry.key, None) is None:
                    continue  # released just now (release() pops without the lock)
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


def hold(fd: int, at: float) -> Watch | None:
    """A held watch on socket ``fd`` until ``at``, disarmed when the
    innermost :func:`deadline_cap` block closes (``None`` outside one, or
    when ``fd`` is not a socket any more)."""
    held = held_in_cap.get()
    if held is None:
        return None
    try:
        inode = os.fstat(fd).st_ino
    except OSError:
        return None
    entry = watchdog.watch(fd, at, inode)
    held.append(entry)
    return entry
