"""The orca_db SQLAlchemy plugin through the faults of a scale event, from
the outside: real servers, the Aurora simulator, both drivers.

Each guarantee is shown next to what a stock engine does in the same fault
(``plugin=False``): the hazard the plugin removes is real."""

from __future__ import annotations

import time

import pytest

import orca_db.outcomes as core
from tests import sqlalchemy_helpers
from tests.sim_clients import InThread
from tests.sim_clients import sqlstate as sim_sqlstate
from tests.sqlalchemy_helpers import retry_operational_error, terminate

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from orca_db import sqlalchemy as orca  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=False)


# Shared fixtures (tests/sqlalchemy_helpers.py).
table = sqlalchemy_helpers.table
sim = sqlalchemy_helpers.sim
engines = sqlalchemy_helpers.engines


def settled(events, phase):
    return [e for e in events if e.phase == phase]


# ----- connecting ----------------------------------------------------------------


def test_connect_retried_past_scale_point_rejections(sim, engines, events):
    e = engines(sim)
    sim.reject_startups(3)
    with e.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    assert sim.stats["rejected"] == 3
    [event] = settled(events, "connect")
    assert (event.outcome, event.attempts, event.database) == ("recovered", 4, "postgres")
    assert "serverless scale point" in event.message


def test_stock_engine_fails_on_a_scale_point_rejection(sim, engines):
    e = engines(sim, plugin=False)
    sim.reject_startups(1)
    with pytest.raises(sqlalchemy.exc.OperationalError, match="serverless scale point"):
        e.connect()


def test_connect_waits_through_a_resume_storm(sim, engines, events):
    e = engines(sim, aurora={"backoff_storm_max": 0.05})
    sim.pause(storm=1.0, storm_failure="starting_up")  # every connect: 57P03
    waiting = InThread(lambda: e.connect().close())
    sim.wait_for(lambda stats: stats["storm_failed"] >= 3)
    assert not waiting.done.is_set()
    sim.resume()
    waiting.result()
    [event] = settled(events, "connect")
    assert event.outcome == "recovered" and event.attempts >= 4


def test_connect_to_a_paused_cluster_is_bounded_by_the_deadline(sim, engines, events):
    e = engines(sim, aurora={"deadline": 2.5})
    sim.pause()  # held after the startup packet, never answered
    started = time.monotonic()
    with pytest.raises(orca.RetriesExhausted) as error:
        e.connect()
    took = time.monotonic() - started
    assert 2.0 <= took < 8.0, took
    # Safe to run again: nothing was sent. So it is an OperationalError.
    assert isinstance(error.value, sqlalchemy.exc.OperationalError)
    assert isinstance(error.value.orig, core.RetriesExhausted)
    [event] = settled(events, "connect")
    assert event.outcome == "exhausted"


def test_connect_bounded_by_the_lambda_cap(sim, engines):
    """``orca_db.deadlines.deadline_cap`` (what orca_db.aws_lambda sets from
    the function's remaining time) ends the wait before ``deadline``."""
    from orca_db.deadlines import deadline_cap

    e = engines(sim, aurora={"deadline": 30})
    sim.pause()
    started = time.monotonic()
    with deadline_cap(1.5), pytest.raises(orca.RetriesExhausted):
        e.connect()
    assert time.monotonic() - started < 6.0


# ----- transactions: a lost connection is a rolled-back transaction --------------


def test_lost_connection_inside_engine_begin(sim, engines, table):
    e = engines(sim)
    with pytest.raises(orca.TransactionRolledBack) as error:
        with e.begin() as connection:
            connection.execute(table.insert, {"v": "a"})
            sim.scale_event()
            connection.execute(table.insert, {"v": "b"})
    assert isinstance(error.value, sqlalchemy.exc.OperationalError)
    assert isinstance(error.value.orig, core.TransactionRolledBack)
    assert table.rows() == 0
    # The engine goes on: the pool hands out a new connection.
    with e.begin() as connection:
        connection.execute(table.insert, {"v": "c"})
    assert table.rows() == 1


def test_lost_connection_before_commit_is_rolled_back_not_unknown(sim, engines, table):
    e = engines(sim)
    with pytest.raises(orca.TransactionRolledBack):
        with e.begin() as connection:
            connection.execute(table.insert, {"v": "a"})
            sim.scale_event()  # the COMMIT that follows finds the socket closed
    assert table.rows() == 0


def test_lost_connection_inside_connection_begin(sim, engines, table):
    e = engines(sim)
    with e.connect() as connection:
        transaction = connection.begin()
        connection.execute(table.insert, {"v": "a"})
        sim.scale_event()
        with pytest.raises(orca.TransactionRolledBack):
            connection.execute(text("SELECT 1"))
        transaction.rollback()
        # The same Connection works again once the transaction is ended.
        with connection.begin():
            connection.execute(table.insert, {"v": "b"})
    assert table.rows() == 1


def test_lost_connection_inside_an_orm_session(sim, engines, table):
    e = engines(sim)
    with pytest.raises(orca.TransactionRolledBack):
        with Session(e) as session, session.begin():
            session.execute(table.insert, {"v": "a"})
            sim.scale_event()
            session.execute(table.insert, {"v": "b"})
    assert table.rows() == 0


def test_lost_commit_reply_is_an_unknown_outcome(sim, engines, table, events):
    e = engines(sim)
    sim.lose_replies(1, contains="COMMIT")
    with pytest.raises(orca.OutcomeUnknown) as error:
        with e.begin() as connection:
            connection.execute(table.insert, {"v": "a"})
    assert not isinstance(error.value, sqlalchemy.exc.OperationalError)
    assert isinstance(error.value, sqlalchemy.exc.DatabaseError)
    assert isinstance(error.value.orig, core.OutcomeUnknown)
    assert sim.stats["lost_replies"] == 1
    assert table.rows() == 1  # the server committed it
    [event] = settled(events, "transaction")
    assert (event.outcome, event.statement) == ("raised", "COMMIT")


def test_lost_commit_reply_in_an_orm_session(sim, engines, table):
    e = engines(sim)
    sim.lose_replies(1, contains="COMMIT")
    with pytest.raises(orca.OutcomeUnknown):
        with Session(e) as session, session.begin():
            session.execute(table.insert, {"v": "a"})
    assert table.rows() == 1


# ----- ORCA's retry decorator, left unchanged ---------------------------------------

_tiny_backoff = retry_operational_error(
    max_retries=3, backoff_in_seconds=0.001, backoff_factor=2, jitter=0.001
)


def _write_once(e, table, calls):
    @_tiny_backoff
    def post_to_database():
        calls.append(1)
        with e.begin() as connection:
            connection.execute(table.insert, {"v": "granule"})

    return post_to_database


def test_orca_decorator_never_writes_twice_after_a_lost_commit(sim, engines, table):
    e = engines(sim)
    calls: list[int] = []
    sim.lose_replies(1, contains="COMMIT")
    with pytest.raises(orca.OutcomeUnknown):
        _write_once(e, table, calls)()
    assert (len(calls), table.rows()) == (1, 1)


def test_stock_engine_with_orca_decorator_writes_twice(sim, engines, table):
    """The hazard the exception design removes (issue 23)."""
    e = engines(sim, plugin=False)
    calls: list[int] = []
    sim.lose_replies(1, contains="COMMIT")
    _write_once(e, table, calls)()  # the caller sees success
    assert (len(calls), table.rows()) == (2, 2)


def test_orca_decorator_reruns_a_rolled_back_transaction(sim, engines, table):
    e = engines(sim)
    calls: list[int] = []

    @_tiny_backoff
    def post_to_database():
        calls.append(1)
        with e.begin() as connection:
            connection.execute(table.insert, {"v": "a"})
            if len(calls) == 1:
                sim.scale_event()
            connection.execute(table.insert, {"v": "b"})

    post_to_database()
    assert (len(calls), table.rows()) == (2, 2)  # one whole run committed


# ----- autocommit ---------------------------------------------------------------------


def test_autocommit_read_replayed_read_only(sim, engines, events):
    e = engines(sim, isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        connection.execute(text("SELECT 1")).scalar()
        sim.lose_replies(1, contains="orca_probe")
        # The first run answers "off" (autocommit); its reply is lost. The
        # replay runs in a READ ONLY transaction, and says so.
        read_only = connection.execute(
            text("SELECT current_setting('transaction_read_only') AS orca_probe")
        ).scalar()
        assert read_only == "on"
        assert connection.execute(text("SHOW transaction_read_only")).scalar() == "off"
    assert sim.stats["lost_replies"] == 1
    [event] = settled(events, "execute")
    assert (event.outcome, event.attempts) == ("recovered", 2)


def test_autocommit_read_replayed_on_a_connection_set_to_autocommit(sim, engines, table):
    """``execution_options(isolation_level="AUTOCOMMIT")`` on one
    Connection: the replay's new connection is in autocommit too, and goes
    back to the pool as the pool's others are (transactional)."""
    e = engines(sim, pool_size=1, max_overflow=0)
    with e.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        sim.lose_replies(1, contains="orca_probe")
        assert connection.execute(text("SELECT 7 AS orca_probe")).scalar() == 7
        connection.execute(table.insert, {"v": "autocommitted"})
        assert table.rows() == 1
    with pytest.raises(orca.TransactionRolledBack), e.begin() as connection:
        connection.execute(table.insert, {"v": "a"})
        sim.scale_event()
        connection.execute(table.insert, {"v": "b"})
    assert table.rows() == 1


def test_autocommit_write_with_a_lost_reply_is_unknown(sim, engines, table):
    e = engines(sim, isolation_level="AUTOCOMMIT")
    sim.lose_replies(1, contains="INSERT")
    with e.connect() as connection, pytest.raises(orca.OutcomeUnknown):
        connection.execute(table.insert, {"v": "a"})
    assert table.rows() == 1


# ----- the pool --------------------------------------------------------------------------


def test_pooled_connection_closed_by_a_scale_event_is_not_handed_out(sim, engines, table):
    e = engines(sim, pool_size=1, max_overflow=0)
    with e.connect() as connection:
        connection.execute(text("SELECT 1"))
    assert sim.scale_event() == 1  # ends the pooled connection's session
    with e.begin() as connection:
        connection.execute(table.insert, {"v": "a"})
    assert table.rows() == 1


def test_stock_pool_hands_out_the_closed_connection(sim, engines, table):
    e = engines(sim, plugin=False, pool_size=1, max_overflow=0)
    with e.connect() as connection:
        connection.execute(text("SELECT 1"))
    sim.scale_event()
    with pytest.raises(sqlalchemy.exc.OperationalError), e.begin() as connection:
        connection.execute(table.insert, {"v": "a"})


# ----- pg_terminate_backend (a real 57P01), and errors that are not ours -------------


def test_terminated_backend_inside_a_transaction(engines, table):
    e = engines()
    with pytest.raises(orca.TransactionRolledBack), e.begin() as connection:
        connection.execute(table.insert, {"v": "a"})
        terminate(connection)
        connection.execute(table.insert, {"v": "b"})
    assert table.rows() == 0


def test_autocommit_write_after_the_backend_was_terminated_while_idle(engines, table):
    """The server said why it ended the session (57P01) before the write
    was sent: the write provably never ran, and is sent again."""
    e = engines(isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        terminate(connection)
        connection.execute(table.insert, {"v": "a"})
    assert table.rows() == 1


def test_autocommit_executemany_with_a_lost_reply_is_unknown(sim, engines, table):
    e = engines(sim, isolation_level="AUTOCOMMIT")
    sim.lose_replies(1, contains="INSERT")
    with e.connect() as connection, pytest.raises(orca.OutcomeUnknown):
        connection.execute(table.insert, [{"v": "a"}, {"v": "b"}, {"v": "c"}])
    assert sim.stats["lost_replies"] == 1


def test_serialization_failure_surfaces_as_sqlalchemy_raises_it(engines, table):
    """40001 is no lost connection: stock SQLAlchemy's error, unchanged."""
    e = engines()
    with e.begin() as setup:
        setup.execute(table.insert, {"v": "0"})
    first, second = e.connect(), e.connect()
    try:
        for connection in (first, second):
            connection.execution_options(isolation_level="SERIALIZABLE")
            connection.begin()
            connection.execute(text(f"SELECT count(*) FROM {table.name}")).scalar()
        first.execute(table.insert, {"v": "first"})
        second.execute(table.insert, {"v": "second"})
        first.commit()
        with pytest.raises(sqlalchemy.exc.OperationalError) as error:
            second.commit()
        assert not isinstance(error.value, orca.ScaleEventError)
        assert sim_sqlstate(error.value.orig) == "40001"
    finally:
        first.close()
        second.close()


def test_application_errors_pass_unchanged(engines):
    e = engines()
    with pytest.raises(sqlalchemy.exc.ProgrammingError), e.connect() as connection:
        connection.execute(text("SELEC 1"))


def test_lost_connection_inside_a_savepoint(sim, engines, table):
    e = engines(sim)
    with pytest.raises(orca.TransactionRolledBack), e.begin() as connection:
        connection.execute(table.insert, {"v": "outer"})
        with connection.begin_nested():
            connection.execute(table.insert, {"v": "inner"})
            sim.scale_event()
            connection.execute(table.insert, {"v": "lost"})
    assert table.rows() == 0


def test_null_pool_connects_through_scale_point_rejections(sim, engines, table):
    from sqlalchemy.pool import NullPool

    e = engines(sim, poolclass=NullPool)
    for value in ("a", "b"):
        sim.reject_startups(2)
        with e.begin() as connection:
            connection.execute(table.insert, {"v": value})
    assert (table.rows(), sim.stats["rejected"]) == (2, 4)
