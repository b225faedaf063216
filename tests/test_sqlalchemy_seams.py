"""Where the plugin plugs into SQLAlchemy, seen from an application that
uses SQLAlchemy's own seams too:

- its ``do_connect`` listeners (the documented way to pass a fresh token or
  password) run as they would on a stock engine, and the plugin's connect
  retries wrap what they produce;
- a changed session is cleaned at checkin through its pool entry, also
  after its driver connection was replaced;
- a pooled connection the server closed is never handed out, whatever the
  pool: the default, ``QueuePool`` asked by name, after ``dispose()``, a
  pool class or a pool of the application's."""

from __future__ import annotations

import pytest

from tests import sqlalchemy_helpers
from tests.sqlalchemy_helpers import (
    replaces_a_pooled_connection_the_server_closed,
    terminate,
    url,
)

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import create_engine, event, pool, text  # noqa: E402

from orca_db import sqlalchemy as orca  # noqa: E402
from orca_db.sqlalchemy import pooling  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=False)

table = sqlalchemy_helpers.table
sim = sqlalchemy_helpers.sim
engines = sqlalchemy_helpers.engines


def give_password(e, password: str) -> list[int]:
    """SQLAlchemy's "dynamic authentication tokens" recipe: the password
    is set by a ``do_connect`` listener, for each new connection."""
    calls: list[int] = []

    @event.listens_for(e, "do_connect")
    def provide_token(dialect, conn_rec, cargs, cparams):
        calls.append(1)
        cparams["password"] = password

    return calls


@pytest.mark.parametrize("plugin", [False, True], ids=["stock", "plugin"])
def test_an_applications_do_connect_listener_runs(engines, plugin):
    wrong = url().set(password="not-the-password")  # what the listener replaces
    extra = {"plugins": ["orca_db"], "aurora": {"deadline": 20}} if plugin else {}
    e = create_engine(wrong, **extra)
    calls = give_password(e, url().password)
    try:
        with e.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        e.dispose()
    assert calls


def test_the_listeners_connection_is_retried_past_scale_points(sim, engines, events):
    e = engines(sim)
    calls = give_password(e, url().password)
    sim.reject_startups(2)
    with e.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    assert sim.stats["rejected"] == 2
    assert calls
    [settled] = [x for x in events if x.phase == "connect"]
    assert (settled.outcome, settled.attempts) == ("recovered", 3)


# ----- the checkin clean-up, arranged on the pool entry ---------------------------


def work_mem(connection) -> str:
    return connection.exec_driver_sql("SHOW work_mem").scalar()


def test_a_session_resumed_on_a_new_connection_is_cleaned_at_checkin(sim, engines):
    """The lost connection's entry dropped its clean-up when it was
    invalidated; the connection that replaced it must be cleaned too."""
    e = engines(sim, pool_size=1, max_overflow=0)
    with e.connect() as connection:
        default = work_mem(connection)
        connection.exec_driver_sql("SET work_mem TO '7MB'")
        connection.commit()
        connection.exec_driver_sql("SELECT 1")
        assert sim.scale_event() == 1
        with pytest.raises(orca.TransactionRolledBack):
            connection.exec_driver_sql("SELECT 1")
        connection.rollback()
        assert work_mem(connection) == "7MB"  # restored on the new one
        connection.commit()
    with e.connect() as connection:
        assert work_mem(connection) == default


def test_a_session_changed_twice_is_cleaned_once(engines):
    e = engines(pool_size=1, max_overflow=0)
    with e.connect() as connection:
        default = work_mem(connection)
        connection.exec_driver_sql("SET work_mem TO '7MB'")
        connection.exec_driver_sql("SET work_mem TO '8MB'")
        connection.commit()
        entry = connection.connection._connection_record
        assert len(entry.finalize_callback) == 1
    with e.connect() as connection:
        assert work_mem(connection) == default
        assert not connection.connection._connection_record.finalize_callback


def test_without_entry_callbacks_every_checkin_is_listened_to(engines, monkeypatch):
    """A SQLAlchemy without ``finalize_callback``: the plugin falls back to
    the pool's checkin event, with the same result."""
    from orca_db.sqlalchemy import sessions

    monkeypatch.setattr(sessions, "finalizers_supported", lambda: False)
    e = engines(pool_size=1, max_overflow=0)
    assert e.pool.dispatch.checkin
    with e.connect() as connection:
        default = work_mem(connection)
        connection.exec_driver_sql("SET work_mem TO '7MB'")
        connection.commit()
        assert not connection.connection._connection_record.finalize_callback
    with e.connect() as connection:
        assert work_mem(connection) == default


# ----- a pooled connection the server closed ---------------------------------------


class ApplicationsPool(pool.QueuePool):
    """A pool class of the application's own."""


def pool_of(sim, kind: str):
    """create_engine's pool arguments for ``kind``."""
    if kind == "queuepool_by_name":
        return {"poolclass": pool.QueuePool, "pool_size": 1, "max_overflow": 0}
    if kind == "applications_class":
        return {"poolclass": ApplicationsPool, "pool_size": 1, "max_overflow": 0}
    if kind == "singleton":
        return {"poolclass": pool.SingletonThreadPool}
    return {"pool_size": 1, "max_overflow": 0}


@pytest.mark.parametrize(
    "kind", ["default", "queuepool_by_name", "after_dispose", "applications_class", "singleton"]
)
def test_a_pooled_connection_closed_by_a_scale_event_is_replaced(sim, engines, table, kind):
    e = engines(sim, **pool_of(sim, kind))
    if kind == "after_dispose":
        e.dispose()
    replaces_a_pooled_connection_the_server_closed(sim, e, table)


def test_a_pool_given_whole_is_watched_at_checkout(sim, engines, table):
    made = engines(sim, plugin=False, pool_size=1, max_overflow=0)
    e = engines(sim, pool=made.pool)
    assert not pooling.checks_itself(e.pool)
    with e.connect() as connection:
        connection.execute(text("SELECT 1"))
    assert sim.scale_event() == 1
    with e.begin() as connection:
        connection.execute(table.insert, {"v": "a"})
    assert table.rows() == 1


def test_an_open_pooled_connection_is_lent_again(engines):
    e = engines(pool_size=1, max_overflow=0)
    with e.connect() as connection:
        first = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with e.connect() as connection:
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() == first


# ----- autocommit: a connection the server closed while idle ------------------------


@pytest.mark.parametrize("statements_before", [0, 2])
def test_an_autocommit_read_after_the_server_closed_the_connection_is_answered(
    engines, events, statements_before
):
    """A read is sent without asking the socket first (one poll() saved per
    read): lost, it is replayed READ ONLY on a new connection."""
    e = engines(isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        for _ in range(statements_before):
            connection.execute(text("SELECT 1"))
        terminate(connection)
        assert connection.execute(text("SELECT 2")).scalar() == 2
    [replayed] = [x for x in events if x.phase == "execute"]
    assert replayed.outcome == "recovered"


@pytest.mark.parametrize("statements_before", [0, 2])
def test_an_autocommit_write_after_the_server_closed_the_connection_is_sent_once(
    engines, table, statements_before
):
    """A write is sent only once the socket was asked: closed, the
    connection is replaced first, and the write provably sent once."""
    e = engines(isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        for _ in range(statements_before):
            connection.execute(text("SELECT 1"))
        terminate(connection)
        connection.execute(table.insert, {"v": "a"})
    assert table.rows() == 1
