"""Rule 2 of docs/retry-safety.md on the SQLAlchemy plugin, from the
outside: a statement, COMMIT or ROLLBACK met by a silent network (the
simulator holds every byte, closes nothing) is cut off at
``statement_deadline`` or at the Lambda cap (``deadline_cap``)."""

from __future__ import annotations

import time

import pytest

import orca_db.outcomes as core
from orca_db.deadlines import deadline_cap
from tests import cut_off_messages as cut
from tests import sqlalchemy_helpers

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import text  # noqa: E402

from orca_db import sqlalchemy as orca  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=False)

BOUND = sqlalchemy_helpers.SILENCE_BOUND

# Shared fixtures (tests/sqlalchemy_helpers.py); the tests here may leave
# the simulator silent.
table = sqlalchemy_helpers.table
engines = sqlalchemy_helpers.engines
sim = sqlalchemy_helpers.silenced_sim


class Clock:
    def __enter__(self):
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.took = time.monotonic() - self.started


def test_silent_read_cut_at_the_statement_deadline(sim, engines, events):
    e = engines(sim, isolation_level="AUTOCOMMIT", aurora={"statement_deadline": 1})
    with e.connect() as connection:
        connection.execute(text("SELECT 1"))
        sim.silence(new_connections=False)
        with Clock() as clock, pytest.raises(orca.DeadlineExceeded) as error:
            connection.execute(text("SELECT 2"))
    assert 0.9 <= clock.took < BOUND, clock.took
    assert isinstance(error.value, sqlalchemy.exc.OperationalError)  # nothing applied
    assert isinstance(error.value.orig, core.DeadlineExceeded)
    assert not isinstance(error.value, orca.OutcomeUnknown)
    assert str(error.value.orig) == cut.READ.format(alias=e.url.database)
    assert [e.outcome for e in events] == ["raised"]


def test_silent_write_cut_is_an_unknown_outcome(sim, engines, table):
    e = engines(sim, isolation_level="AUTOCOMMIT", aurora={"statement_deadline": 1})
    with e.connect() as connection:
        connection.execute(text("SELECT 1"))
        sim.silence(new_connections=False)
        with Clock() as clock, pytest.raises(orca.WriteDeadlineExceeded) as error:
            connection.execute(table.insert, {"v": "a"})
    assert clock.took < BOUND
    assert isinstance(error.value, orca.OutcomeUnknown)
    assert not isinstance(error.value, sqlalchemy.exc.OperationalError)
    assert isinstance(error.value.orig, core.WriteDeadlineExceeded)
    assert str(error.value.orig) == cut.WRITE.format(alias=e.url.database)


def test_silent_statement_in_a_transaction_cut_and_rolled_back(sim, engines, table):
    e = engines(sim, aurora={"statement_deadline": 1})
    with Clock() as clock, pytest.raises(orca.DeadlineExceeded) as error:
        with e.begin() as connection:
            connection.execute(table.insert, {"v": "a"})
            sim.silence(new_connections=False)
            connection.execute(table.insert, {"v": "b"})
    assert clock.took < BOUND
    assert str(error.value.orig) == cut.IN_TRANSACTION.format(alias=e.url.database)
    sim.unsilence()
    assert table.rows() == 0
    # The engine goes on on a new connection.
    with e.begin() as connection:
        connection.execute(table.insert, {"v": "c"})
    assert table.rows() == 1


def test_silent_commit_cut_is_an_unknown_outcome(sim, engines, table):
    e = engines(sim, aurora={"statement_deadline": 1})
    with e.connect() as connection:
        connection.execute(table.insert, {"v": "a"})
        sim.silence(new_connections=False)
        with Clock() as clock, pytest.raises(orca.WriteDeadlineExceeded) as error:
            connection.commit()
    assert clock.took < BOUND
    # The words of the Django backend's (tests/test_deadlines.py).
    assert str(error.value.orig) == cut.COMMIT.format(alias=e.url.database)


def test_silent_rollback_cut_at_the_deadline(sim, engines, table):
    e = engines(sim, aurora={"statement_deadline": 1})
    with e.connect() as connection:
        connection.execute(table.insert, {"v": "a"})
        sim.silence(new_connections=False)
        with Clock() as clock, pytest.raises(orca.DeadlineExceeded) as error:
            connection.rollback()
    assert clock.took < BOUND
    assert str(error.value.orig) == cut.ROLLBACK.format(alias=e.url.database)
    sim.unsilence()
    assert table.rows() == 0


def test_silent_rollback_cut_at_a_cap_opened_after_the_engine_was_made(sim, engines, table):
    """No statement_deadline: until a cap opens the plugin leaves the
    dialect's own ROLLBACK in place; the cap that opens (a Lambda
    invocation's) must bound the next ROLLBACK, even with no statement
    run under it first."""
    e = engines(sim, aurora={"deadline": 30})
    with e.connect() as connection:
        connection.execute(table.insert, {"v": "a"})
        sim.silence(new_connections=False)
        with Clock() as clock, deadline_cap(1.0), pytest.raises(orca.DeadlineExceeded) as error:
            connection.rollback()
    assert clock.took < BOUND
    assert str(error.value.orig) == cut.ROLLBACK.format(alias=e.url.database)
    sim.unsilence()
    assert table.rows() == 0


def test_silent_read_cut_at_the_lambda_cap(sim, engines):
    """No statement_deadline: the cap alone (what orca_db.aws_lambda sets
    from the function's remaining time) ends the wait."""
    e = engines(sim, isolation_level="AUTOCOMMIT", aurora={"deadline": 30})
    with e.connect() as connection:
        connection.execute(text("SELECT 1"))
        sim.silence(new_connections=False)
        with Clock() as clock, deadline_cap(1.0), pytest.raises(orca.DeadlineExceeded):
            connection.execute(text("SELECT 2"))
    assert clock.took < BOUND


def test_silent_connect_bounded_by_the_lambda_cap(sim, engines):
    e = engines(sim, aurora={"deadline": 30})
    sim.silence()  # new connections too: the startup is never answered
    with Clock() as clock, deadline_cap(1.5), pytest.raises(orca.RetriesExhausted):
        e.connect()
    assert clock.took < BOUND


def test_no_deadline_no_watch(engines):
    """Without statement_deadline or a cap, nothing is armed."""
    from orca_db.deadlines import watchdog

    e = engines()
    with e.connect() as connection:
        connection.execute(text("SELECT 1"))
        assert not watchdog._live
