"""The retry engine: one place decides whether, when and how often to retry.

Callers try their operation once on their own (the hot path costs a
``try``), and hand the first failure to :func:`recover`, which runs the
remaining attempts with tenacity under one wall-clock deadline and delivers
one :class:`~orca_db.events.SettledEvent` when the operation settles.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .classify import Failure, classify, driver_error
from .deadlines import cap, deadline_cap
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


@dataclasses.dataclass
class Operation:
    """One database operation and what its attempts met."""

    alias: str
    phase: str
    settings: RetrySettings
    statement: object = None
    #: When the first attempt started (``time.monotonic()``): a caller that
    #: tried once before making the Operation passes that attempt's start.
    started: float = dataclasses.field(default_factory=time.monotonic)
    #: The same moment on the wall clock (the event's ``occurred_at``),
    #: derived from ``started``.
    started_at: datetime.datetime = dataclasses.field(init=False)
    attempts: int = 1
    last_failure: Failure | None = None
    #: Failures in a row that said the server is full or starting: the
    #: storm backoff grows with these, not with the attempts before them
    #: (a restart refuses connections, then says "starting up" briefly).
    storm_streak: int = 0

    def __post_init__(self) -> None:
        ago = time.monotonic() - self.started
        self.started_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=ago)

    @property
    def deadline_at(self) -> float:
        """From the start of the first attempt (``started``), capped by any
        :func:`deadline_cap` around the operation."""
        own = self.started + self.settings.deadline
        capped = cap()
        return own if capped is None else min(own, capped)

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000


def remaining_time() -> float | None:
    """Seconds left to the deadline of the operation retried now (or of the
    Lambda cap), ``None`` when nothing bounds it."""
    operation = _active.get()
    if operation is not None:
        return operation.remaining()
    capped = cap()
    return None if capped is None else capped - time.monotonic()


def _backoff(operation: Operation) -> Callable[[tenacity.RetryCallState], float]:
    backoff = operation.settings.backoff()

    def wait(state: tenacity.RetryCallState) -> float:
        if operation.storm_streak:
            return backoff.delay(operation.storm_streak, storm=True)
        return backoff.delay(state.attempt_number)

    return wait


def _stop(operation: Operation) -> Callable[[tenacity.RetryCallState], bool]:
    max_attempts = operation.settings.max_attempts

    def stop(state: tenacity.RetryCallState) -> bool:
        if max_attempts is not None and state.attempt_number >= max_attempts:
            return True
        return time.monotonic() + state.upcoming_sleep >= operation.deadline_at

    return stop


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
    pending: list[BaseException] = [first_error]
    # What to do with the error tenacity re-raises when it stops: the judge's
    # verdict, or RetriesExhausted when it was retryable and time ran out.
    verdicts: dict[int, BaseException] = {}

    def call() -> T:
        if pending:
            raise pending.pop()
        operation.attempts += 1
        return attempt()

    def may_retry(error: BaseException) -> bool:
        if isinstance(error, ScaleEventError):
            verdicts[id(error)] = error  # settled by a nested operation
            return False
        failure = classify(error)
        if not failure.retryable and not failure.conflict:
            verdicts[id(error)] = error
            return False
        operation.last_failure = failure
        operation.storm_streak = operation.storm_streak + 1 if failure.storm else 0
        verdict = judge(error, failure)
        verdicts[id(error)] = verdict or _exhausted(operation)
        return verdict is None

    def before_sleep(state: tenacity.RetryCallState) -> None:
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

    # Imported here, not with the module: only a failure needs it, and its
    # import is a third of what the aurora engine adds to a cold start.
    import tenacity

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(may_retry),
        stop=_stop(operation),
        wait=_backoff(operation),
        before_sleep=before_sleep,
        reraise=True,
    )
    token = _active.set(operation)
    try:
        result = retrying(call)
    except BaseException as error:
        # The operation is over: what receivers of the event do (storing it)
        # is not part of it and gets no share of its retries.
        _active.reset(token)
        # Anything the judge never saw (KeyboardInterrupt in a backoff sleep)
        # goes up unchanged.
        verdict = verdicts.get(id(error), error)
        report(operation, "exhausted" if isinstance(verdict, RetriesExhausted) else "raised")
        if verdict is error:
            raise
        raise verdict from driver_error(error)
    _active.reset(token)
    report(operation, "recovered")
    return result


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
