"""The retry loop (orca_db.retry.run / recover / report) without a database.

The attempts are plain functions raising real driver errors
(tests/driver_errors.py); the judge is a function of the test. Backoff is
set to zero so that no test sleeps on the real clock.

The loop reads the clock, sleeps and draws its backoff through what the
``Operation`` is given (``clock``, ``sleep``, ``rng``): the tests that need
time to pass give it a fake clock, whose sleep moves it, and a seeded
generator; the others use the real clock with margins of minutes.
"""

from __future__ import annotations

import datetime
import logging
import random
import time

import pytest
from django.db.utils import OperationalError as DjangoOperationalError

from orca_db.classify import Failure, classify
from orca_db.conf import RetrySettings
from orca_db.deadlines import deadline_cap
from orca_db.exceptions import OutcomeUnknown, RetriesExhausted, ScaleEventError
from orca_db.retry import Operation, active_operation, recover, remaining_time, report, run
from tests.driver_errors import Database, lost_reply, server_error

#: An alias outside DATABASES: orca_db_app stores no event of it (no
#: database is touched), receivers of retry_event still get them.
ALIAS = "unit"
STATEMENT = "SELECT name FROM testapp_item WHERE id = 7"
SECRET = "hunter2"


def scale_event() -> BaseException:
    return server_error(
        "AdminShutdown", "57P01", "terminating connection due to serverless scale event timeout"
    )


def too_many_clients() -> BaseException:
    return server_error("TooManyConnections", "53300", "sorry, too many clients already")


def unique_violation() -> BaseException:
    return server_error(
        "UniqueViolation", "23505", 'duplicate key value violates unique constraint "t_pkey"'
    )


def settings(**options) -> RetrySettings:
    """No backoff: no test sleeps."""
    return RetrySettings(
        **{"backoff_initial": 0.0, "backoff_max": 0.0, "backoff_storm_max": 0.0, **options}
    )


class FakeClock:
    """A monotonic clock that moves only when the test or a sleep moves it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def operation(
    started: float | None = None,
    *,
    clock: FakeClock | None = None,
    rng: random.Random | None = None,
    **options,
) -> Operation:
    """With ``clock``, the operation starts at its ``now`` and runs on it."""
    timing: dict = {}
    if clock is not None:
        timing = {"clock": clock.monotonic, "sleep": clock.sleep}
        started = clock.now if started is None else started
    if rng is not None:
        timing["rng"] = rng
    return Operation(
        ALIAS,
        "execute",
        settings(**options),
        statement=STATEMENT,
        started=time.monotonic() if started is None else started,
        **timing,
    )


class Attempts:
    """An attempt function: each call takes the next outcome (an exception
    raised, or a value returned), after moving ``clock`` by ``takes``."""

    def __init__(self, *outcomes, clock: FakeClock | None = None, takes: float = 0.0):
        self.outcomes = list(outcomes)
        self.clock = clock
        self.takes = takes
        self.calls = 0
        self.active: list[Operation | None] = []

    def __call__(self):
        self.calls += 1
        self.active.append(active_operation())
        if self.clock is not None:
            self.clock.now += self.takes
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class Judge:
    """Records what it was asked; answers None (retry) unless told."""

    def __init__(self, *answers, operation: Operation | None = None):
        self.answers = list(answers)
        self.operation = operation
        self.seen: list[tuple[BaseException, Failure]] = []
        self.streaks: list[int] = []

    def __call__(self, error: BaseException, failure: Failure) -> BaseException | None:
        self.seen.append((error, failure))
        if self.operation is not None:
            self.streaks.append(self.operation.storm_streak)
        return self.answers.pop(0) if self.answers else None


# ----- attempts ----------------------------------------------------------------


def test_a_first_attempt_that_succeeds_is_not_retried(events):
    op = operation()
    attempt = Attempts("rows")
    judge = Judge()
    assert run(op, attempt, judge) == "rows"
    assert (attempt.calls, op.attempts, judge.seen, events) == (1, 1, [], [])


def test_the_first_attempt_runs_inside_the_operation():
    """Database calls nested in the first attempt (a connect's own queries)
    see the operation and leave the retrying to it."""
    op = operation()
    seen = []

    def attempt():
        seen.append((active_operation(), active_operation(ALIAS), active_operation("other")))
        return 1

    run(op, attempt, Judge())
    assert seen == [(op, op, None)]
    assert active_operation() is None


def test_retryable_failures_are_retried_until_one_succeeds(events):
    op = operation()
    errors = [scale_event(), lost_reply()]
    attempt = Attempts(errors[0], errors[1], "rows")
    judge = Judge()
    assert run(op, attempt, judge) == "rows"
    assert attempt.calls == 3 and op.attempts == 3
    # every failure is judged, with what classify() makes of it
    assert [error for error, _ in judge.seen] == errors
    assert [failure for _, failure in judge.seen] == [classify(e) for e in errors]
    # every retry runs inside the operation; none is left behind it
    assert attempt.active == [op, op, op]
    assert active_operation() is None
    assert [(e.outcome, e.attempts, e.error_type) for e in events] == [
        ("recovered", 3, "OperationalError")
    ]


def test_recover_takes_the_first_failure_from_the_caller():
    """recover() is for callers that tried once on their own: the first
    failure counts as attempt 1 and is judged; the attempt runs for the rest."""
    op = operation()
    first = scale_event()
    attempt = Attempts("rows")
    judge = Judge()
    assert recover(op, first, attempt, judge) == "rows"
    assert attempt.calls == 1 and op.attempts == 2
    assert judge.seen[0][0] is first


def test_max_attempts_counts_the_first(events):
    op = operation(max_attempts=3)
    errors = [scale_event() for _ in range(5)]
    attempt = Attempts(*errors)
    with pytest.raises(RetriesExhausted) as caught:
        run(op, attempt, Judge())
    assert attempt.calls == 3 and op.attempts == 3
    assert caught.value.__cause__ is errors[2]
    assert "within 3 attempt(s)" in str(caught.value)
    assert [(e.outcome, e.attempts) for e in events] == [("exhausted", 3)]


def test_one_attempt_allowed_makes_a_retryable_failure_exhausted():
    op = operation(max_attempts=1)
    first = scale_event()
    judge = Judge()
    with pytest.raises(RetriesExhausted) as caught:
        recover(op, first, Attempts(), judge)
    assert caught.value.__cause__ is first
    assert len(judge.seen) == 1  # judged, then stopped


# ----- the deadline ------------------------------------------------------------


def test_the_deadline_stops_the_retries(clock, events):
    """Deadline 10 s, each attempt takes 4 s: attempts start at 0, 4 and 8 s;
    the third ends at 12 s, past the deadline: no fourth."""
    op = operation(clock=clock, deadline=10.0)
    attempt = Attempts(*[scale_event() for _ in range(10)], clock=clock, takes=4.0)
    with pytest.raises(RetriesExhausted) as caught:
        run(op, attempt, Judge())
    assert attempt.calls == 3 and op.attempts == 3
    assert str(caught.value) == (
        f"Database {ALIAS!r} did not recover from AdminShutdown within 3 attempt(s) and "
        "12.0 s: terminating connection due to serverless scale event timeout"
    )
    assert [(e.outcome, e.attempts, e.elapsed_ms) for e in events] == [("exhausted", 3, 12000.0)]


def test_the_first_attempt_counts_against_the_deadline(clock):
    """The deadline runs from the start of the first attempt, which the
    caller made before recover()."""
    op = operation(clock=clock, deadline=10.0)
    clock.now += 11.0  # the first attempt took 11 s
    attempt = Attempts("rows")
    with pytest.raises(RetriesExhausted):
        recover(op, scale_event(), attempt, Judge())
    assert attempt.calls == 0


def test_no_retry_starts_when_its_backoff_would_end_past_the_deadline(clock):
    """0.01 s left, the first backoff is at least 0.025 s: no sleep, no retry."""
    op = operation(clock=clock, deadline=10.0, backoff_initial=0.05, backoff_max=0.1)
    clock.now += 9.99
    attempt = Attempts("rows")
    with pytest.raises(RetriesExhausted):
        recover(op, scale_event(), attempt, Judge())
    assert attempt.calls == 0
    assert clock.sleeps == []  # it did not sleep first


def test_remaining_time_inside_an_attempt(clock):
    op = operation(clock=clock, deadline=10.0)
    clock.now += 3.0
    seen = []

    def attempt():
        seen.append(remaining_time())
        return 1

    recover(op, scale_event(), attempt, Judge())
    assert seen == [7.0]
    assert op.remaining() == 7.0 and op.elapsed_ms() == 3000.0


def test_a_deadline_cap_around_the_operation_bounds_it():
    """deadline_cap (the Lambda function's remaining time) wins over a
    longer deadline of the operation (real clock: the cap is already due)."""
    op = operation(deadline=600.0)
    attempt = Attempts("rows")
    with deadline_cap(0.0):
        with pytest.raises(RetriesExhausted):
            recover(op, scale_event(), attempt, Judge())
    assert attempt.calls == 0


# ----- backoff on a fake clock and a seeded generator ----------------------------


def schedule(seed: int, *draws: tuple[int, bool], **options) -> list[float]:
    """The waits ``backoff.Backoff`` draws from ``random.Random(seed)``:
    one ``(attempt, storm)`` a wait."""
    backoff = settings(**options).backoff()
    rng = random.Random(seed)
    return [backoff.delay(n, storm=storm, rng=rng) for n, storm in draws]


BACKOFF = {"backoff_initial": 0.05, "backoff_max": 0.4, "backoff_storm_max": 2.0}


def test_the_waits_between_attempts_are_the_backoff_schedule(clock, events):
    """Exponential from backoff_initial, each wait drawn between half the
    ceiling and the ceiling: the loop sleeps exactly what Backoff draws from
    the generator it is given, once between two attempts."""
    op = operation(clock=clock, rng=random.Random(7), **BACKOFF)
    attempt = Attempts(scale_event(), lost_reply(), scale_event(), "rows")
    assert recover(op, lost_reply(), attempt, Judge()) == "rows"
    expected = schedule(7, (1, False), (2, False), (3, False), (4, False), **BACKOFF)
    assert clock.sleeps == expected
    assert all(c / 2 <= d <= c for d, c in zip(clock.sleeps, [0.05, 0.1, 0.2, 0.4], strict=True))
    assert op.attempts == 5 and attempt.calls == 4
    ((attempts, elapsed_ms),) = [(e.attempts, e.elapsed_ms) for e in events]
    assert attempts == 5 and elapsed_ms == pytest.approx(sum(expected) * 1000)


def test_the_same_seed_draws_the_same_waits(clock):
    def waits(seed: int) -> list[float]:
        fake = FakeClock()
        op = operation(clock=fake, rng=random.Random(seed), **BACKOFF)
        recover(op, scale_event(), Attempts(scale_event(), scale_event(), "rows"), Judge())
        return fake.sleeps

    assert waits(11) == waits(11) != waits(12)


def test_storm_waits_grow_with_storm_failures_in_a_row(clock):
    """A full server: full jitter from zero, the ceiling from twice
    backoff_max, doubling with each storm failure in a row; an ordinary
    failure between them goes back to the ordinary shape and starts the
    count again."""
    op = operation(clock=clock, rng=random.Random(3), **BACKOFF)
    attempt = Attempts(too_many_clients(), scale_event(), too_many_clients(), "rows")
    recover(op, too_many_clients(), attempt, Judge())
    assert clock.sleeps == schedule(3, (1, True), (2, True), (3, False), (1, True), **BACKOFF)


def test_the_deadline_stops_before_a_wait_that_would_end_past_it(clock, events):
    """Deadline 1 s, attempts that take nothing, waits up to 0.4 s: the loop
    sleeps while a wait ends before the deadline, and stops (exhausted, the
    last failure its cause) at the first wait that would not."""
    op = operation(clock=clock, rng=random.Random(5), deadline=1.0, **BACKOFF)
    errors = [scale_event() for _ in range(50)]
    with pytest.raises(RetriesExhausted) as caught:
        recover(op, lost_reply(), Attempts(*errors), Judge())
    drawn = schedule(5, *[(n, False) for n in range(1, 40)], **BACKOFF)
    slept = len(clock.sleeps)
    assert clock.sleeps == drawn[:slept]
    assert op.started + sum(drawn[:slept]) < op.deadline_at  # every sleep ended in time
    assert op.started + sum(drawn[: slept + 1]) >= op.deadline_at  # the next would not
    assert op.attempts == slept + 1
    assert caught.value.__cause__ is errors[slept - 1]
    assert [(e.outcome, e.attempts) for e in events] == [("exhausted", slept + 1)]
    assert clock.now < op.deadline_at


def test_max_attempts_sleeps_between_attempts_only(clock):
    op = operation(clock=clock, rng=random.Random(1), max_attempts=3, **BACKOFF)
    with pytest.raises(RetriesExhausted):
        recover(op, scale_event(), Attempts(scale_event(), scale_event(), "rows"), Judge())
    assert clock.sleeps == schedule(1, (1, False), (2, False), **BACKOFF)
    assert op.attempts == 3


def test_a_failure_no_retry_can_cure_after_waits_is_raised_unchanged(clock, events):
    op = operation(clock=clock, rng=random.Random(2), **BACKOFF)
    error = unique_violation()
    judge = Judge()
    with pytest.raises(type(error)) as caught:
        recover(op, scale_event(), Attempts(lost_reply(), error, "rows"), judge)
    assert caught.value is error and caught.value.__cause__ is None
    assert len(judge.seen) == 2 and len(clock.sleeps) == 2
    assert [(e.outcome, e.attempts) for e in events] == [("raised", 3)]


def test_an_interrupted_wait_goes_up_unchanged(clock, events):
    """KeyboardInterrupt in the backoff sleep: no further attempt, the
    interrupt itself goes up, the operation is over."""
    interrupt = KeyboardInterrupt()

    def sleep(seconds: float) -> None:
        raise interrupt

    op = Operation(ALIAS, "execute", settings(), clock=clock.monotonic, sleep=sleep)
    attempt = Attempts("rows")
    with pytest.raises(KeyboardInterrupt) as caught:
        recover(op, scale_event(), attempt, Judge())
    assert caught.value is interrupt and attempt.calls == 0
    assert active_operation() is None
    assert [e.outcome for e in events] == ["raised"]


# ----- the judge -----------------------------------------------------------------


def test_the_judges_exception_is_raised_from_the_driver_error(events):
    op = operation()
    error = lost_reply()
    refusal = OutcomeUnknown("may or may not have been applied")
    attempt = Attempts("rows")
    with pytest.raises(OutcomeUnknown) as caught:
        recover(op, error, attempt, Judge(refusal))
    assert caught.value is refusal and refusal.__cause__ is error
    assert attempt.calls == 0
    assert [(e.outcome, e.attempts) for e in events] == [("raised", 1)]


def test_the_cause_is_the_driver_error_behind_djangos_wrapper():
    inner = scale_event()
    try:
        raise DjangoOperationalError(str(inner)) from inner
    except DjangoOperationalError as wrapped:
        error = wrapped
    refusal = OutcomeUnknown("x")
    with pytest.raises(OutcomeUnknown):
        recover(operation(), error, Attempts(), Judge(refusal))
    assert refusal.__cause__ is inner


def test_the_judge_may_surface_the_error_unchanged(events):
    op = operation()
    error = lost_reply()
    with pytest.raises(Database.OperationalError) as caught:
        recover(op, error, Attempts(), Judge(error))
    assert caught.value is error
    assert caught.value.__cause__ is None  # not chained to itself
    assert [e.outcome for e in events] == ["raised"]


def test_the_judge_refuses_a_later_failure():
    op = operation()
    later = lost_reply()
    refusal = OutcomeUnknown("x")
    attempt = Attempts(later, "rows")
    judge = Judge(None, refusal)
    with pytest.raises(OutcomeUnknown):
        recover(op, scale_event(), attempt, judge)
    assert attempt.calls == 1 and op.attempts == 2
    assert refusal.__cause__ is later


def test_a_failure_no_retry_can_cure_is_raised_as_it_is_without_asking_the_judge(events):
    op = operation()
    error = unique_violation()
    judge = Judge()
    with pytest.raises(type(error)) as caught:
        run(op, Attempts(error), judge)
    assert caught.value is error and judge.seen == []
    assert events == []  # nothing retryable happened: not an event


def test_a_failure_no_retry_can_cure_on_a_retry_ends_it(events):
    op = operation()
    error = unique_violation()
    attempt = Attempts(error, "rows")
    judge = Judge()
    with pytest.raises(type(error)) as caught:
        recover(op, scale_event(), attempt, judge)
    assert caught.value is error and len(judge.seen) == 1
    # the event names the retryable failure that started it all
    assert [(e.outcome, e.attempts, e.error_type) for e in events] == [
        ("raised", 2, "AdminShutdown")
    ]


def test_an_error_settled_by_a_nested_operation_goes_up_unjudged():
    """A ScaleEventError comes from a nested operation that already decided."""
    op = operation()
    nested = RetriesExhausted("the reconnect inside did not succeed")
    judge = Judge()
    with pytest.raises(RetriesExhausted) as caught:
        recover(op, scale_event(), Attempts(nested), judge)
    assert caught.value is nested and len(judge.seen) == 1
    assert isinstance(nested, ScaleEventError)


def test_a_conflict_is_judged():
    """40001/40P01 are not retryable alone, but the loop asks the judge
    (retry_atomic's runs the whole transaction again for them)."""
    op = operation()
    conflict = server_error("SerializationFailure", "40001", "could not serialize access")
    judge = Judge()
    assert recover(op, conflict, Attempts("rows"), judge) == "rows"
    assert judge.seen[0][1].conflict


def test_a_judge_that_fails_ends_the_operation():
    op = operation()
    broken = RuntimeError("the judge failed")

    def judge(error, failure):
        raise broken

    with pytest.raises(RuntimeError) as caught:
        recover(op, scale_event(), Attempts("rows"), judge)
    assert caught.value is broken
    assert active_operation() is None


def test_keyboard_interrupt_in_an_attempt_goes_up_unchanged(events):
    op = operation()
    interrupt = KeyboardInterrupt()
    judge = Judge()
    with pytest.raises(KeyboardInterrupt) as caught:
        recover(op, scale_event(), Attempts(interrupt), judge)
    assert caught.value is interrupt and len(judge.seen) == 1
    assert [e.outcome for e in events] == ["raised"]
    assert active_operation() is None


def test_keyboard_interrupt_between_attempts_goes_up_unchanged(events):
    """Something the judge never saw (here raised while the retry is logged,
    just before the backoff sleep) goes up as it is."""
    interrupt = KeyboardInterrupt()

    class Interrupting(logging.Handler):
        def emit(self, record):
            if getattr(record, "orca_db", {}).get("kind") == "retry":
                raise interrupt

    handler = Interrupting()
    logger = logging.getLogger("orca_db.retry")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(KeyboardInterrupt) as caught:
            recover(operation(), scale_event(), Attempts("rows"), Judge())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert caught.value is interrupt
    assert [e.outcome for e in events] == ["raised"]


def test_storm_failures_in_a_row_are_counted():
    """The storm backoff grows with storm failures in a row; an ordinary
    failure starts the count again."""
    op = operation()
    judge = Judge(operation=op)
    attempt = Attempts(too_many_clients(), scale_event(), too_many_clients(), "rows")
    recover(op, too_many_clients(), attempt, judge)
    assert judge.streaks == [1, 2, 0, 1]


# ----- what is reported ---------------------------------------------------------------


def test_each_retry_is_logged_without_the_message(caplog):
    caplog.set_level(logging.INFO, logger="orca_db.retry")
    op = operation()
    recover(op, scale_event(), Attempts(lost_reply(), "rows"), Judge())
    retries = [r.orca_db for r in caplog.records if r.name == "orca_db.retry"]
    assert [(r["kind"], r["attempt"], r["error_type"], r["sqlstate"]) for r in retries] == [
        ("retry", 1, "AdminShutdown", "57P01"),
        ("retry", 2, "OperationalError", None),
    ]
    assert all(r["database"] == ALIAS and r["phase"] == "execute" for r in retries)


def test_the_event_of_a_settled_operation(clock, events):
    op = operation(clock=clock)
    attempt = Attempts(scale_event(), "rows", clock=clock, takes=0.25)
    recover(op, lost_reply(), attempt, Judge())
    (event,) = events
    assert event.database == ALIAS and event.phase == "execute"
    assert event.occurred_at == op.started_at
    assert (event.outcome, event.attempts, event.elapsed_ms) == ("recovered", 3, 500.0)
    # the last retryable failure
    assert (event.error_type, event.sqlstate) == ("AdminShutdown", "57P01")
    assert event.message == "terminating connection due to serverless scale event timeout"
    assert event.statement == "SELECT name FROM testapp_item WHERE id = 7"


def test_the_event_occurred_when_the_first_attempt_started(events):
    """A statement ran 30 s before its connection was lost (a silent network
    cut by statement_deadline): the operation started 30 s ago."""
    op = operation(started=time.monotonic() - 30.0)
    recover(op, lost_reply(), Attempts("rows"), Judge())
    (event,) = events
    now = datetime.datetime.now(datetime.UTC)
    assert now - event.occurred_at >= datetime.timedelta(seconds=29)
    assert event.elapsed_ms >= 30000


def test_report_without_a_retryable_failure_sends_nothing(events):
    report(operation(), "recovered")
    assert events == []


def test_receivers_of_the_event_run_outside_the_operation(events):
    """What they do (store the event) gets no share of its retries."""
    from orca_db.signals import retry_event

    seen = []

    def receiver(sender, event, **kwargs):
        seen.append(active_operation())

    retry_event.connect(receiver)
    try:
        recover(operation(), scale_event(), Attempts("rows"), Judge())
        with pytest.raises(RetriesExhausted):
            recover(operation(max_attempts=1), scale_event(), Attempts(), Judge())
    finally:
        retry_event.disconnect(receiver)
    assert seen == [None, None]


def test_no_secret_in_the_error_the_event_or_the_logs(caplog, events):
    """Whatever the driver's message or the statement carries (a password in
    a DSN, a literal), RetriesExhausted, the event and the log lines do not
    repeat it. Parameters never reach the operation at all."""
    caplog.set_level(logging.DEBUG)
    message = (
        "could not connect to server: Connection refused "
        f"(postgresql://orca:{SECRET}@db.example:5432/app password={SECRET})"
    )
    op = Operation(
        ALIAS,
        "execute",
        settings(max_attempts=2),
        statement=f"SELECT * FROM users WHERE token = '{SECRET}'",
    )
    with pytest.raises(RetriesExhausted) as caught:
        recover(op, lost_reply(message), Attempts(lost_reply(message)), Judge())
    assert SECRET not in str(caught.value)
    assert "Connection refused" in str(caught.value)
    (event,) = events
    assert SECRET not in repr(event.as_dict())
    assert event.statement == "SELECT * FROM users WHERE token = ?"
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(vars(record))
