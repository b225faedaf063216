"""How long to wait between attempts: one schedule for the retry engine and
for every command that waits for a database.

Two shapes, chosen by what the last failure says about the server:

- an ordinary failure (a connection cut by a scale event, a refused
  connect while the server restarts): exponential from ``initial`` to
  ``maximum``, each wait drawn between half the ceiling and the ceiling. The
  first retry comes within tens of milliseconds and a recovered server is
  found within ``maximum``;
- a storm (``53300 too_many_connections``, ``57P03`` starting up, a full
  PgBouncer): the server is busy with everyone's connects, so the ceiling
  starts at twice ``maximum`` and doubles with each storm failure in a row
  up to ``storm_maximum``, and each wait is drawn from zero to the ceiling
  ("full jitter"): a fleet of clients spreads out instead of retrying in
  step several times a second, which is what keeps a resuming server
  saturated.

Both take the random generator as an argument, and :class:`Attempts` the
clock, so a schedule is a plain unit test.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable

#: The generator every schedule draws from unless given one.
RANDOM = random.Random()


@dataclasses.dataclass(frozen=True)
class Backoff:
    initial: float = 0.05
    maximum: float = 0.1
    storm_maximum: float = 2.0

    def ceiling(self, attempt: int, *, storm: bool = False) -> float:
        """The longest wait after failed attempt number ``attempt`` (from 1;
        for a storm, the number of storm failures in a row)."""
        if storm:
            return min(self.storm_maximum, max(self.maximum, self.initial) * 2**attempt)
        return min(self.maximum, self.initial * 2 ** (attempt - 1))

    def delay(self, attempt: int, *, storm: bool = False, rng: random.Random = RANDOM) -> float:
        ceiling = self.ceiling(attempt, storm=storm)
        if storm:
            return rng.uniform(0.0, ceiling)
        return rng.uniform(ceiling / 2, ceiling)


class Attempts:
    """The attempts at one operation under a deadline, for loops that wait
    themselves (the management commands): how long to sleep before the next
    attempt, or ``None`` when it could not start before the deadline."""

    def __init__(
        self,
        backoff: Backoff,
        deadline_at: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random = RANDOM,
    ):
        self.backoff = backoff
        self.deadline_at = deadline_at
        self.clock = clock
        self.rng = rng
        self.failed = 0

    def remaining(self) -> float:
        return self.deadline_at - self.clock()

    def next_delay(self, *, storm: bool = False) -> float | None:
        """Count a failed attempt; the wait before the next one, or ``None``
        when the deadline would pass first."""
        self.failed += 1
        delay = self.backoff.delay(self.failed, storm=storm, rng=self.rng)
        if self.clock() + delay >= self.deadline_at:
            return None
        return delay
