"""The simulator's counters: what happened so far, readable and waitable
from any thread (``AuroraSimulator.stats`` and ``wait_for``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

STAT_NAMES = (
    "connections",  # client connections accepted
    "active",  # client connections open now
    "held",  # connections held by a pause (total)
    "holding",  # connections held right now
    "rejected",  # startups rejected past the scale point
    "storm_failed",  # connections failed fast during a resume storm
    "terminated",  # sessions ended by scale events
    "dropped",  # connections cut by drop_connections()
    "cancel_requests",  # CancelRequests passed on to the server
    "limited",  # connections refused by the connection limit (53300)
    "refused_starting_up",  # connections refused while "starting up" (57P03)
    "backends",  # sessions holding a server connection now (what the limit counts)
    "silenced",  # sessions that went silent (total)
    "silent",  # sessions silent right now
    "lost_replies",  # queries whose reply was lost (run on the server, never answered)
)


class Counters:
    """Named integer counters behind one condition variable: the loop
    thread adds, any thread reads or waits."""

    def __init__(self) -> None:
        self._values = dict.fromkeys(STAT_NAMES, 0)
        self._changed = threading.Condition()

    def add(self, name: str, delta: int = 1) -> None:
        with self._changed:
            self._values[name] += delta
            self._changed.notify_all()

    def snapshot(self) -> dict[str, int]:
        with self._changed:
            return dict(self._values)

    def wait_for(self, predicate: Callable[[dict[str, int]], bool], timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(dict(self._values)), timeout):
                raise TimeoutError(f"simulator stats never matched: {self._values}")
