"""The backoff schedule (orca_db.backoff), with the clock and the random
generator passed in: a plain unit test, no database."""

from __future__ import annotations

import random

import pytest

from orca_db.backoff import Attempts, Backoff
from orca_db.conf import parse_retry_settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ordinary_failures_double_up_to_the_maximum():
    backoff = Backoff(initial=0.05, maximum=0.1, storm_maximum=2.0)
    assert [backoff.ceiling(n) for n in range(1, 5)] == [0.05, 0.1, 0.1, 0.1]


def test_storms_start_above_the_ordinary_maximum_and_double_up_to_their_own():
    backoff = Backoff(initial=0.05, maximum=0.1, storm_maximum=2.0)
    assert [backoff.ceiling(n, storm=True) for n in range(1, 7)] == [
        0.2, 0.4, 0.8, 1.6, 2.0, 2.0,
    ]  # fmt: skip


def test_ordinary_waits_are_jittered_in_the_upper_half():
    backoff = Backoff(initial=0.05, maximum=0.1)
    rng = random.Random(1)
    waits = [backoff.delay(5, rng=rng) for _ in range(1000)]
    assert min(waits) >= 0.05 and max(waits) <= 0.1
    # A recovered server is found within the maximum: no wait goes past it.
    assert max(waits) > 0.095 and min(waits) < 0.055


def test_storm_waits_are_full_jitter():
    backoff = Backoff(initial=0.05, maximum=0.1, storm_maximum=2.0)
    rng = random.Random(2)
    waits = [backoff.delay(6, storm=True, rng=rng) for _ in range(2000)]
    assert min(waits) >= 0 and max(waits) <= 2.0
    # Spread over the whole range: a fleet does not come back in step.
    assert min(waits) < 0.05 and max(waits) > 1.9
    assert 0.9 < sum(waits) / len(waits) < 1.1


def test_attempts_stop_before_the_deadline():
    clock = Clock()
    attempts = Attempts(
        Backoff(initial=0.05, maximum=0.1), deadline_at=0.3, clock=clock, rng=random.Random(3)
    )
    delays = []
    while (delay := attempts.next_delay()) is not None:
        delays.append(delay)
        clock.now += delay
    # Never a wait that would end past the deadline.
    assert clock.now < 0.3
    assert attempts.failed == len(delays) + 1
    assert 3 <= len(delays) <= 6


def test_settings_give_the_backoff():
    settings = parse_retry_settings({"backoff_initial": 0.01, "backoff_max": 0.2,
                                     "backoff_storm_max": 5})  # fmt: skip
    assert settings.backoff() == Backoff(0.01, 0.2, 5)


@pytest.mark.parametrize("key", ["backoff_max", "backoff_storm_max"])
def test_a_maximum_below_the_initial_wait_is_refused(key):
    from django.core.exceptions import ImproperlyConfigured

    options = {"backoff_initial": 1.0, "backoff_max": 1.0, "backoff_storm_max": 1.0, key: 0.5}
    with pytest.raises(ImproperlyConfigured, match=key):
        parse_retry_settings(options)
