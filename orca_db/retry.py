"""The retry engine: one place decides whether, when and how often to retry.

Callers try their operation once on their own (the hot path costs a
``try``), and hand the first failure to :func:`recover`, which runs the
remaining attempts with tenacity under one deadline and delivers one
:class:`~orca_db.events.SettledEvent` when the operation settles.

tenacity is used as designed: a ``Retrying`` whose stop, wait, before_sleep,
sleep and retry_error_callback are methods of one object (``_Loop``) over
the :class:`Operation`. The caller's attempt is attempt 1; the judge's
answer is raised by the attempt itself: ``tenacity.TryAgain`` when a retry
is safe, else the exception to surface. Clock, sleep and random generator
are the Operation's (``time.monotonic``, ``time.sleep`` and
:mod:`orca_db.backoff`'s generator unless given).
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

from .backoff import RANDOM
from .classify import Failure, classify, driver_error
from .deadlines import cap, cap_left, deadline_cap
from .events import SettledEvent, deliver
from .options import RetrySettings
from .outcomes import RetriesExhausted, ScaleEventError

if TYPE_CHECKING:
    import tenacity

__all__ = ["Operation", "active_operation", "deadline_cap", "recover", "remaining_time", "run"]

logger = logging.getLogger("orca_db.retry")

T = TypeVar("T")

#: The operation being retried in this context: nested database calls (the
#: reconnect inside a statement's retry) make single attempts and leave the
#: retrying, the deadline and the event to it.
_active: contextvars.ContextVar[Operation | None] = contextvars.ContextVar(
    "orca_db_active_operation", default=None
)


def active_operation(alias: str | None = None) -> Operation | None:
    """The operation being retried in this context; with ``alias``, only if
    it is that database's: a call on another database (retry_atomic on one,
    a write on another inside it) is judged by its own rules."""
    operation = _active.get()
    if alias is not None and operation is not None and operation.alias != alias:
        return None
    return operation


@dataclasses.dataclass(slots=True)
class Operation:
    """One database operation and what its attempts met."""

    alias: str
    phase: str
    settings: RetrySettings
    statement: object = None
    #: When the first attempt started (``time.monotonic()``): a caller that
    #: tried once before making the Operation passes that attempt's start.
    started: float = dataclasses.field(default_factory=time.monotonic)
    #: The same moment on the wall clock: the event's ``occurred_at``
    #: (``started_at``) is made from it only when an event is made.
    started_wall: float = dataclasses.field(init=False, repr=False)
    attempts: int = 1
    last_failure: Failure | None = None
    #: Failures in a row that said the server is full or starting: the
    #: storm backoff grows with these, not with the attempts before them
    #: (a restart refuses connections, then says "starting up" briefly).
    storm_streak: int = 0
    #: The clock ``started`` and the deadline are read on, the sleep between
    #: attempts, the generator of their waits (a unit test fakes them).
    clock: Callable[[], float] = dataclasses.field(default=time.monotonic, kw_only=True)
    sleep: Callable[[float], None] = dataclasses.field(default=time.sleep, kw_only=True)
    rng: random.Random = dataclasses.field(default=RANDOM, kw_only=True)

    def __post_init__(self) -> None:
        self.started_wall = time.time() - (self.clock() - self.started)

    @property
    def started_at(self) -> datetime.datetime:
        """When the first attempt started, on the wall clock (UTC)."""
        return datetime.datetime.fromtimestamp(self.started_wall, datetime.UTC)

    @property
    def deadline_at(self) -> float:
        """From the start of the first attempt (``started``), capped by any
        :func:`deadline_cap` around the operation."""
        own = self.started + self.settings.deadline
        capped = cap()
        return own if capped is None else min(own, capped)

    def remaining(self) -> float:
        return self.deadline_at - self.clock()

    def elapsed_ms(self) -> float:
        return (self.clock() - self.started) * 1000


def remaining_time() -> float | None:
    """Seconds left to the deadline of the operation retried now (or of the
    Lambda cap), ``None`` when nothing bounds it."""
    operation = _active.get()
    if operation is not None:
        return operation.remaining()
    return cap_left()


Judge = Callable[[BaseException, Failure], BaseException | None]


def run(operation: Operation, attempt: Callable[[], T], judge: Judge) -> T:
    """Run ``attempt`` as ``operation``, retrying it through :func:`recover`.

    The first attempt already counts as inside the operation, so database
    calls nested in it (a connect's own queries) do not retry on their own."""
    token = _active.set(operation)
    try:
        return attempt()
    except Exception as error:
        first_error = error
    finally:
        _active.reset(token)
    return recover(operation, first_error, attempt, judge)


def recover(
    operation: Operation,
    first_error: BaseException,
    attempt: Callable[[], T],
    judge: Judge,
) -> T:
    """Retry ``attempt`` after ``first_error`` until it succeeds, the judge
    refuses a failure, or the budget is spent.

    ``judge(error, failure)`` returns ``None`` when a retry is safe, else the
    exception to raise instead (``error`` itself to surface it unchanged).
    """
    # Imported here, not with the module: only a failure needs it, and its
    # import is a third of what the aurora engine adds to a cold start.
    import tenacity

    loop = _Loop(operation, judge)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_never,  # the loop decides: TryAgain (see _Loop.judged)
        stop=loop.stop,
        wait=loop.wait,
        before_sleep=loop.before_sleep,
        sleep=operation.sleep,
        retry_error_callback=loop.exhausted,
    )
    token = _active.set(operation)
    try:
        error = first_error
        for step in retrying:
            with step:
                # Attempt 1 is the caller's, and ``first_error`` its outcome.
                if step.retry_state.attempt_number > 1:
                    operation.attempts += 1
                    try:
                        result = attempt()
                    except Exception as failed:
                        error = failed
                    else:
                        break
                loop.judged(error)
    except BaseException as raised:
        # The operation is over: what receivers of the event do (storing it)
        # is not part of it and gets no share of its retries.
        _active.reset(token)
        report(operation, "exhausted" if isinstance(raised, RetriesExhausted) else "raised")
        raise
    _active.reset(token)
    report(operation, "recovered")
    return result


class _Loop:
    """tenacity's callbacks for one :func:`recover`: what a failure means
    (``judged``), how long to wait, when to stop, what to say."""

    def __init__(self, operation: Operation, judge: Judge):
        self.operation = operation
        self.judge = judge
        self.backoff = operation.settings.backoff()

    def judged(self, error: BaseException) -> NoReturn:
        """Raise what ``error`` comes to: ``tenacity.TryAgain`` (from
        ``error``) when a retry is safe; else ``error`` itself, or the
        judge's exception in its place (from the driver error)."""
        if isinstance(error, ScaleEventError):
            raise error  # settled by a nested operation
        failure = classify(error)
        if not failure.retryable and not failure.conflict:
            raise error
        operation = self.operation
        operation.last_failure = failure
        operation.storm_streak = operation.storm_streak + 1 if failure.storm else 0
        verdict = self.judge(error, failure)
        if verdict is error:
            raise error
        if verdict is not None:
            raise verdict from driver_error(error)
        import tenacity

        raise tenacity.TryAgain from error

    def wait(self, state: tenacity.RetryCallState) -> float:
        operation = self.operation
        if operation.storm_streak:
            return self.backoff.delay(operation.storm_streak, storm=True, rng=operation.rng)
        return self.backoff.delay(state.attempt_number, rng=operation.rng)

    def stop(self, state: tenacity.RetryCallState) -> bool:
        """After attempt ``max_attempts``, or when the next attempt would
        start at or past the deadline."""
        operation = self.operation
        max_attempts = operation.settings.max_attempts
        if max_attempts is not None and state.attempt_number >= max_attempts:
            return True
        return operation.clock() + state.upcoming_sleep >= operation.deadline_at

    def exhausted(self, state: tenacity.RetryCallState) -> NoReturn:
        """The last failure was retryable, and the budget is spent."""
        assert state.outcome is not None
        try_again = state.outcome.exception()
        assert try_again is not None and try_again.__cause__ is not None
        raise _exhausted(self.operation) from driver_error(try_again.__cause__)

    def before_sleep(self, state: tenacity.RetryCallState) -> None:
        operation = self.operation
        failure = operation.last_failure
        assert failure is not None
        logger.info(
            "retrying %s on database %r after %s (attempt %d, sleeping %.3f s)",
            operation.phase,
            operation.alias,
            failure.error_type,
            state.attempt_number,
            state.upcoming_sleep,
            extra={
                "orca_db": {
                    "kind": "retry",
                    "database": operation.alias,
                    "phase": operation.phase,
                    "error_type": failure.error_type,
                    "sqlstate": failure.sqlstate,
                    "attempt": state.attempt_number,
                    "delay_ms": round(state.upcoming_sleep * 1000, 1),
                    "elapsed_ms": round(operation.elapsed_ms(), 1),
                }
            },
        )


def _exhausted(operation: Operation) -> RetriesExhausted:
    from .sql import scrub_message

    failure = operation.last_failure
    assert failure is not None
    return operation.settings.errors.of(RetriesExhausted)(
        f"Database {operation.alias!r} did not recover from {failure.error_type} "
        f"within {operation.attempts} attempt(s) and "
        f"{operation.elapsed_ms() / 1000:.1f} s: {scrub_message(failure.message)}"
    )


def report(operation: Operation, outcome: str) -> None:
    """Deliver the event of a settled operation that met a retryable failure."""
    failure = operation.last_failure
    if failure is None:
        return  # nothing retryable happened: not an event
    from .sql import scrub_message, scrub_sql  # loaded with the first event

    deliver(
        SettledEvent(
            database=operation.alias,
            phase=operation.phase,
            occurred_at=operation.started_at,
            error_type=failure.error_type,
            sqlstate=failure.sqlstate,
            message=scrub_message(failure.message),
            attempts=operation.attempts,
            outcome=outcome,
            elapsed_ms=operation.elapsed_ms(),
            statement=scrub_sql(operation.statement) if operation.statement else "",
        )
    )
