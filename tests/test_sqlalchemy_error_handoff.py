"""How the plugin hands SQLAlchemy an error it judged, from the outside:
whatever the fault (a connection lost in a transaction or under an
autocommit write, a COMMIT whose reply is lost or whose connection is found
closed, a statement, COMMIT or ROLLBACK cut at its deadline), the
``Connection`` is left as SQLAlchemy's own disconnect handling leaves it:

- the plugin's error is raised, marked ``connection_invalidated``;
- the ``Connection`` is invalidated: no ROLLBACK is tried on the lost
  connection, nothing is logged as an error by SQLAlchemy or its pool;
- the pool replaces the connections it made before, at their next
  checkout, as a stock engine's does after a disconnect;
- the ``Connection`` goes on on a new connection once ``rollback()`` has
  ended what was left of its transaction (SQLAlchemy's rule after a
  disconnect), and the pool lends a working one.

The plugin does this in its hooks, with no ``handle_error`` listener: a
dialect event of any kind costs every statement SQLAlchemy's dispatch
(docs/performance.md)."""

from __future__ import annotations

import logging

import pytest

from tests import sqlalchemy_helpers
from tests.sqlalchemy_helpers import pid_of, terminate

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import event, text  # noqa: E402

from orca_db import sqlalchemy as orca  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=False)

table = sqlalchemy_helpers.table
engines = sqlalchemy_helpers.engines
sim = sqlalchemy_helpers.silenced_sim  # some tests leave it silent


def errors_logged(caplog) -> list[str]:
    """What SQLAlchemy and its pool logged as errors (the pool logs a
    failed reset-on-return so: "Exception during reset or similar").
    orca-db's own event records are not counted."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR and not r.name.startswith("orca_db.events")
    ]


def handed_off(connection, raised, caplog) -> None:
    assert raised.value.connection_invalidated
    assert connection.invalidated
    assert errors_logged(caplog) == []


def goes_on(e, connection) -> None:
    """The same Connection, then the pool, work again."""
    connection.rollback()
    assert connection.execute(text("SELECT 1")).scalar() == 1
    connection.close()
    assert e.pool.checkedout() == 0
    with e.connect() as other:
        assert other.execute(text("SELECT 2")).scalar() == 2


def test_the_plugin_listens_to_no_dialect_event(engines):
    """Any dialect listener (``handle_error`` is one) makes SQLAlchemy walk
    the dialect's do_execute dispatch before every statement."""
    stock, plugin = engines(plugin=False), engines()
    assert plugin.dialect._has_events is stock.dialect._has_events is False


def test_statement_lost_in_a_transaction(sim, engines, table, caplog):
    e = engines(sim)
    connection = e.connect()
    connection.begin()
    connection.execute(table.insert, {"v": "a"})
    sim.scale_event()
    with pytest.raises(orca.TransactionRolledBack) as raised:
        connection.execute(table.insert, {"v": "b"})
    handed_off(connection, raised, caplog)
    goes_on(e, connection)
    assert table.rows() == 0


def test_autocommit_write_lost(sim, engines, table, caplog):
    """Outside a transaction SQLAlchemy would try a ROLLBACK on a
    connection it was not told is lost."""
    e = engines(sim, isolation_level="AUTOCOMMIT")
    connection = e.connect()
    connection.execute(text("SELECT 1"))
    sim.lose_replies(1, contains="INSERT")
    with pytest.raises(orca.OutcomeUnknown) as raised:
        connection.execute(table.insert, {"v": "a"})
    handed_off(connection, raised, caplog)
    goes_on(e, connection)


def test_commit_reply_lost(sim, engines, table, caplog):
    e = engines(sim)
    connection = e.connect()
    connection.execute(table.insert, {"v": "a"})
    sim.lose_replies(1, contains="COMMIT")
    with pytest.raises(orca.OutcomeUnknown) as raised:
        connection.commit()
    handed_off(connection, raised, caplog)
    goes_on(e, connection)
    assert table.rows() == 1  # the server committed it


def test_commit_on_a_connection_found_closed(sim, engines, table, caplog):
    e = engines(sim)
    connection = e.connect()
    connection.execute(table.insert, {"v": "a"})
    sim.scale_event()
    with pytest.raises(orca.TransactionRolledBack) as raised:
        connection.commit()
    handed_off(connection, raised, caplog)
    goes_on(e, connection)
    assert table.rows() == 0


def test_commit_lost_in_an_orm_session(sim, engines, table, caplog):
    from sqlalchemy.orm import Session

    e = engines(sim)
    sim.lose_replies(1, contains="COMMIT")
    with Session(e) as session:
        session.execute(table.insert, {"v": "a"})
        with pytest.raises(orca.OutcomeUnknown) as raised:
            session.commit()
        assert raised.value.connection_invalidated
        session.rollback()
        assert session.execute(text("SELECT 1")).scalar() == 1
    assert errors_logged(caplog) == []
    assert e.pool.checkedout() == 0


@pytest.mark.parametrize("ending", ["statement", "commit", "rollback"])
def test_cut_at_the_statement_deadline(sim, engines, table, caplog, ending):
    e = engines(sim, aurora={"statement_deadline": 1})
    connection = e.connect()
    connection.execute(table.insert, {"v": "a"})
    sim.silence(new_connections=False)
    expected = orca.WriteDeadlineExceeded if ending == "commit" else orca.DeadlineExceeded
    with pytest.raises(expected) as raised:
        if ending == "statement":
            connection.execute(table.insert, {"v": "b"})
        else:
            getattr(connection, ending)()
    handed_off(connection, raised, caplog)
    sim.unsilence()
    goes_on(e, connection)


def test_an_applications_handle_error_listener_sees_the_plugins_error(sim, engines, table):
    """As on a stock engine, the application's listener runs. It is given
    what will be raised, the plugin's error (the driver's is its
    ``.orig.__cause__``)."""
    e = engines(sim)
    seen = []

    @event.listens_for(e, "handle_error")
    def look(context):
        error = context.original_exception
        seen.append((type(error), isinstance(error.orig.__cause__, e.dialect.loaded_dbapi.Error)))

    with e.connect() as connection:
        connection.execute(table.insert, {"v": "a"})
        sim.scale_event()
        with pytest.raises(orca.TransactionRolledBack):
            connection.execute(table.insert, {"v": "b"})
        connection.rollback()
    assert seen == [(orca.TransactionRolledBack, True)]


@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_the_pools_older_connections_are_replaced_as_on_a_stock_engine(engines, table, plugin):
    e = engines(plugin=plugin)
    lost, pooled = e.connect(), e.connect()
    kept = pid_of(pooled)
    pooled.close()  # back in the pool, its server process alive
    lost.begin()
    lost.execute(table.insert, {"v": "a"})
    terminate(lost)
    # orca.TransactionRolledBack is one; the stock engine raises its own.
    with pytest.raises(sqlalchemy.exc.OperationalError) as raised:
        lost.execute(table.insert, {"v": "b"})
    assert isinstance(raised.value, orca.TransactionRolledBack) is plugin
    lost.rollback()
    lost.close()
    again = [e.connect() for _ in range(2)]
    assert kept not in [pid_of(c) for c in again]
    for c in again:
        c.close()
