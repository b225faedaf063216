"""Where the plugin plugs into SQLAlchemy, seen from an application that
uses SQLAlchemy's own seams too: its ``do_connect`` listeners (the
documented way to pass a fresh token or password) run as they would on a
stock engine, and the plugin's connect retries wrap what they produce."""

from __future__ import annotations

import pytest

from tests.sqlalchemy_helpers import engine, url

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import create_engine, event, text  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=False)


@pytest.fixture
def engines():
    made = []

    def make(*args, **kwargs):
        e = engine(*args, **kwargs)
        made.append(e)
        return e

    make.made = made
    yield make
    for e in made:
        e.dispose()


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
    engines.made.append(e)
    calls = give_password(e, url().password)
    with e.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    assert calls


def test_the_listeners_connection_is_retried_past_scale_points(aurora_simulator, engines, events):
    sim = aurora_simulator
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


def test_a_session_resumed_on_a_new_connection_is_cleaned_at_checkin(aurora_simulator, engines):
    """The lost connection's entry dropped its clean-up when it was
    invalidated; the connection that replaced it must be cleaned too."""
    from orca_db import sqlalchemy as orca

    sim = aurora_simulator
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
