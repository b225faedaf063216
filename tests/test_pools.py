"""A scale event through each pool option: Django's native psycopg pool
(``OPTIONS["pool"]`` on the aurora engine) and the aurora_pool engine
(django-db-connection-pool). Reads survive it, and afterwards the pool
hands out only live connections and keeps its size."""

from __future__ import annotations

import pytest
from django.db import connections

from orca_db.backends.mixins import AuroraRetryMixin
from tests import driver
from tests.pooled import (
    ROWS,
    backend_count,
    database_alias,
    raw_select_one,
    read_count,
    recorded_events,
    scratch_database,
    server_settings,
    terminate_backends,
    write_through_scale_event,
)

POOL_SIZE = 2


def django_pool(dbname: str) -> dict:
    return {
        "ENGINE": "orca_db.backends.aurora",
        "NAME": dbname,
        **server_settings(),
        # A short timeout: a pool that leaked its slots fails fast.
        "OPTIONS": {"pool": {"min_size": 0, "max_size": POOL_SIZE, "timeout": 5}},
    }


def aurora_pool(dbname: str) -> dict:
    return {
        "ENGINE": "orca_db.backends.aurora_pool",
        "NAME": dbname,
        **server_settings(),
        "POOL_OPTIONS": {"POOL_SIZE": POOL_SIZE, "MAX_OVERFLOW": 0, "TIMEOUT": 5},
    }


POOLS = {"django_pool": django_pool, "aurora_pool": aurora_pool}


@pytest.fixture(scope="module")
def dbname(django_db_blocker):
    with django_db_blocker.unblock(), scratch_database() as name:
        yield name


@pytest.fixture(params=sorted(POOLS))
def pooled(request, dbname, django_db_blocker):
    """The alias of a pooled connection to the scratch database."""
    if request.param == "django_pool" and driver.DRIVER == "psycopg2":
        pytest.skip("Django's connection pool needs psycopg 3")
    alias = f"pooled_{request.param}"
    with django_db_blocker.unblock(), database_alias(alias, POOLS[request.param](dbname)):
        yield alias


def wrappers(alias: str, count: int) -> list:
    """``count`` connection wrappers sharing the alias's pool (as threads
    of one process would)."""
    first = connections[alias]
    return [first] + [type(first)(first.settings_dict, alias) for _ in range(count - 1)]


def test_engines_carry_the_retry_layer(pooled):
    assert isinstance(connections[pooled], AuroraRetryMixin)


def test_read_survives_scale_event(pooled, dbname):
    assert read_count(pooled) == ROWS
    assert terminate_backends(dbname) >= 1
    with recorded_events() as events:
        assert read_count(pooled) == ROWS
    assert [(e.phase, e.outcome) for e in events] == [("execute", "recovered")]


def test_no_broken_connection_handed_out_after_scale_event(pooled, dbname):
    # Fill the pool with idle connections, then kill every one of them.
    held = wrappers(pooled, POOL_SIZE)
    for wrapper in held:
        raw_select_one(wrapper)
    for wrapper in held:
        wrapper.close()  # back to the pool
    assert terminate_backends(dbname) == POOL_SIZE
    # Each checkout must be a live connection: used below the retry layer,
    # a dead one would fail at once.
    for _ in range(2):
        for wrapper in held:
            raw_select_one(wrapper)
        for wrapper in held:
            wrapper.close()


def test_repeated_scale_events_do_not_exhaust_the_pool(pooled, dbname):
    # Each event makes the retry layer discard the connection it holds; a
    # discarded connection that still counted against the pool would leave
    # it empty after POOL_SIZE events (getconn would time out).
    for _ in range(POOL_SIZE + 2):
        assert read_count(pooled) == ROWS
        terminate_backends(dbname)
        assert read_count(pooled) == ROWS
    connections[pooled].close()
    assert backend_count(dbname) <= POOL_SIZE


def test_retry_atomic_survives_scale_event(pooled, dbname):
    assert write_through_scale_event(pooled, dbname) == 2
    for wrapper in wrappers(pooled, POOL_SIZE):
        raw_select_one(wrapper)


def test_lost_commits_do_not_exhaust_the_pool(aurora_simulator, dbname, django_db_blocker):
    """A COMMIT whose reply is lost leaves a dead connection behind: it must
    go back to Django's pool as gone, or after max_size of them every
    checkout waits out the pool's timeout (on main: PoolTimeout)."""
    if driver.DRIVER == "psycopg2":
        pytest.skip("Django's connection pool needs psycopg 3")
    from django.db import transaction

    from orca_db.exceptions import OutcomeUnknown

    settings = aurora_simulator.django_settings(django_pool(dbname))
    settings["OPTIONS"] = {"pool": {"min_size": 0, "max_size": POOL_SIZE, "timeout": 2}}
    with django_db_blocker.unblock(), database_alias("pooled_lossy", settings) as alias:
        for _ in range(POOL_SIZE + 1):
            aurora_simulator.lose_replies(1, contains="COMMIT")
            with pytest.raises(OutcomeUnknown), transaction.atomic(using=alias):
                raw_select_one(connections[alias])
        assert read_count(alias) == ROWS


def test_the_wait_for_a_pooled_connection_ends_at_the_cap(pooled):
    """Every slot is lent out: the pool would wait its own 5 s for one, but
    inside a 2.5 s deadline cap (a Lambda invocation's) it waits no longer
    than the cap allows. (Below 2 s the connect runs in a worker thread that
    is abandoned at the bound: that case was bounded already.)"""
    import time

    from orca_db.deadlines import deadline_cap
    from orca_db.exceptions import DeadlineExceeded, RetriesExhausted

    first = connections[pooled]
    holders = [type(first)(first.settings_dict, pooled) for _ in range(POOL_SIZE)]
    waiter = type(first)(first.settings_dict, pooled)
    error = None
    try:
        for holder in holders:
            holder.ensure_connection()
        started = time.monotonic()
        try:
            with deadline_cap(2.5):
                waiter.ensure_connection()
        except Exception as raised:
            error = raised
        elapsed = time.monotonic() - started
    finally:
        for wrapper in [*holders, waiter]:
            wrapper.close()
    print(f"{pooled}: the wait for a pooled connection under a 2.5 s cap: {elapsed:.2f} s")
    assert isinstance(error, (RetriesExhausted, DeadlineExceeded)), error
    assert elapsed < 3.5
