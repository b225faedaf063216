"""Rule 1 of docs/retry-safety.md on the SQLAlchemy plugin, from the outside:
runtime ``SET``/``RESET``/``SET ROLE`` are followed and restored on the
connection that replaces a lost one; anything the plugin cannot follow makes
the session unknown, and the next reconnect raises ``SessionStateLost``; a
connection returned to the pool starts clean for the next borrower."""

from __future__ import annotations

import uuid

import pytest

import orca_db.outcomes as core
from tests import sqlalchemy_helpers
from tests.sim_clients import on_server
from tests.sqlalchemy_helpers import pid_of

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import text  # noqa: E402

from orca_db import sqlalchemy as orca  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=False)

DEFAULT_PATH = '"$user", public'


# Shared fixtures (tests/sqlalchemy_helpers.py).
table = sqlalchemy_helpers.table
sim = sqlalchemy_helpers.sim
engines = sqlalchemy_helpers.engines
role = sqlalchemy_helpers.role


@pytest.fixture
def function():
    name = f"orca_sqla_fn_{uuid.uuid4().hex[:8]}"
    on_server(f"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    yield name
    on_server(f"DROP FUNCTION IF EXISTS {name}()")


# ----- followed and restored ------------------------------------------------------


def test_set_restored_before_a_replayed_read(sim, engines):
    e = engines(sim, isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        connection.execute(text("SET search_path TO orca_elsewhere, public"))
        sim.lose_replies(1, contains="orca_probe")
        path = connection.execute(
            text("SELECT current_setting('search_path') AS orca_probe")
        ).scalar()
        assert path == "orca_elsewhere, public"
    assert sim.stats["lost_replies"] == 1


def test_set_role_restored_before_a_write_after_a_scale_event(sim, engines, table, role):
    on_server(
        f"GRANT ALL ON {table.name} TO {role}; "
        f"GRANT USAGE ON SEQUENCE {table.name}_id_seq TO {role}"
    )
    e = engines(sim, isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        connection.execute(text(f"SET ROLE {role}"))
        first = pid_of(connection)
        assert sim.scale_event() == 1
        connection.execute(text(f"INSERT INTO {table.name} (v) VALUES (current_user)"))
        assert pid_of(connection) != first
        assert connection.execute(text("SELECT current_user")).scalar() == role
    assert on_server(f"SELECT v FROM {table.name}") == [(role,)]


def test_session_restored_on_the_connection_after_a_rolled_back_transaction(sim, engines, table):
    e = engines(sim)
    with e.connect() as connection:
        connection.execute(text("SET search_path TO orca_elsewhere, public"))
        connection.commit()
        connection.execute(text("SET application_name TO 'never_committed'"))
        connection.rollback()  # the server undid it: not restored either
        connection.execute(table.insert, {"v": "a"})
        sim.scale_event()
        with pytest.raises(orca.TransactionRolledBack):
            connection.execute(table.insert, {"v": "b"})
        connection.rollback()
        assert connection.execute(text("SHOW search_path")).scalar() == "orca_elsewhere, public"
        assert connection.execute(text("SHOW application_name")).scalar() != "never_committed"
    assert table.rows() == 0


def test_reset_followed(sim, engines):
    e = engines(sim, isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        connection.execute(text("SET search_path TO orca_elsewhere, public"))
        connection.execute(text("SET work_mem TO '7MB'"))
        connection.execute(text("RESET search_path"))
        sim.scale_event()
        assert connection.execute(text("SHOW search_path")).scalar() == DEFAULT_PATH
        assert connection.execute(text("SHOW work_mem")).scalar() == "7MB"


# ----- not followed: the session is unknown ---------------------------------------

HELD = {
    "temp_table": "CREATE TEMP TABLE orca_sqla_temp (x int)",
    "advisory_lock": "SELECT pg_advisory_lock(4242)",
    "listen": "LISTEN orca_sqla_channel",
    "prepare": "PREPARE orca_sqla_plan AS SELECT 1",
    "held_cursor": "DECLARE orca_sqla_cursor CURSOR WITH HOLD FOR SELECT 1",
}


@pytest.mark.parametrize("kind", sorted(HELD))
def test_held_state_makes_the_next_reconnect_refuse(sim, engines, kind, events):
    e = engines(sim, isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        connection.execute(text("SET search_path TO orca_elsewhere, public"))
        connection.execute(text(HELD[kind]))
        sim.scale_event()
        with pytest.raises(orca.SessionStateLost) as error:
            connection.execute(text("SELECT 1"))
        # Nobody knows whether running the function again is right: not an
        # OperationalError, so ORCA's decorator lets it through.
        assert not isinstance(error.value, sqlalchemy.exc.OperationalError)
        assert isinstance(error.value.orig, core.SessionStateLost)
        assert error.value.orig.lost
        # The Connection keeps refusing: its new session lacks what it held.
        with pytest.raises(orca.SessionStateLost):
            connection.execute(text("SELECT 2"))
    assert any(event.outcome == "raised" for event in events)
    # A new Connection is a new session: it works.
    with e.connect() as connection:
        assert connection.execute(text("SHOW search_path")).scalar() == DEFAULT_PATH


def test_unknown_function_makes_the_session_unknown(sim, engines, function):
    e = engines(sim, isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        connection.execute(text(f"SELECT {function}()"))
        sim.scale_event()
        with pytest.raises(orca.SessionStateLost):
            connection.execute(text("SELECT 1"))


def test_held_state_refuses_after_a_rolled_back_transaction(sim, engines, table):
    e = engines(sim)
    with e.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(4243)"))
        connection.commit()
        connection.execute(table.insert, {"v": "a"})
        sim.scale_event()
        with pytest.raises(orca.TransactionRolledBack):
            connection.execute(table.insert, {"v": "b"})
        connection.rollback()
        with pytest.raises(orca.SessionStateLost):
            connection.execute(table.insert, {"v": "c"})
    assert table.rows() == 0


def test_released_state_is_forgotten(sim, engines):
    e = engines(sim, isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(4244)"))
        connection.execute(text("SELECT pg_advisory_unlock(4244)"))
        connection.execute(text("LISTEN orca_sqla_gone"))
        connection.execute(text("UNLISTEN orca_sqla_gone"))
        sim.scale_event()
        assert connection.execute(text("SELECT 1")).scalar() == 1


def test_stock_engine_runs_on_a_session_without_its_settings(sim, engines):
    """The hazard: with stock SQLAlchemy the Connection goes on, after the
    error, on a new session without its search_path."""
    e = engines(sim, plugin=False, isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        connection.execute(text("SET search_path TO orca_elsewhere, public"))
        sim.scale_event()
        with pytest.raises(sqlalchemy.exc.OperationalError):
            connection.execute(text("SELECT 1"))
        connection.rollback()
        assert connection.execute(text("SHOW search_path")).scalar() == DEFAULT_PATH


# ----- the pool: the next borrower starts clean -----------------------------------


def test_pooled_connection_settings_reset_for_the_next_borrower(engines):
    e = engines(pool_size=1, max_overflow=0)
    with e.connect() as connection:
        connection.execute(text("SET search_path TO orca_elsewhere, public"))
        connection.commit()
        first = pid_of(connection)
    with e.connect() as connection:
        assert connection.execute(text("SHOW search_path")).scalar() == DEFAULT_PATH
        assert pid_of(connection) == first  # reset, not closed


def test_pooled_connection_with_held_state_is_not_lent_again(engines):
    e = engines(pool_size=1, max_overflow=0)
    with e.connect() as connection:
        connection.execute(text("CREATE TEMP TABLE orca_sqla_pooled (x int)"))
        connection.commit()
        first = pid_of(connection)
    with e.connect() as connection:
        assert pid_of(connection) != first
        assert connection.execute(text("SELECT to_regclass('orca_sqla_pooled')")).scalar() is None


def test_stock_pool_lends_the_changed_session(engines):
    e = engines(plugin=False, pool_size=1, max_overflow=0)
    with e.connect() as connection:
        connection.execute(text("SET search_path TO orca_elsewhere, public"))
        connection.commit()
    with e.connect() as connection:
        assert connection.execute(text("SHOW search_path")).scalar() == "orca_elsewhere, public"


def test_orm_session_set_inside_its_transaction(sim, engines, table):
    from sqlalchemy.orm import Session

    e = engines(sim, pool_size=1, max_overflow=0)
    with Session(e) as session:
        session.execute(text("SET search_path TO orca_elsewhere, public"))
        session.commit()
    with Session(e) as session:
        assert session.execute(text("SHOW search_path")).scalar() == DEFAULT_PATH


@pytest.mark.parametrize("level", ["REPEATABLE READ", "AUTOCOMMIT"])
def test_reset_keeps_the_engines_isolation_level(engines, level):
    """What SQLAlchemy set up itself (the engine's isolation level) is kept
    by the reset for the next borrower."""
    e = engines(pool_size=1, max_overflow=0, isolation_level=level)
    with e.connect() as connection:
        connection.execute(text("SET search_path TO orca_elsewhere, public"))
        connection.commit()
    with e.connect() as connection:
        assert connection.execute(text("SHOW search_path")).scalar() == DEFAULT_PATH
        shown = connection.execute(text("SHOW transaction_isolation")).scalar()
        autocommit = connection.connection.dbapi_connection.autocommit
        assert autocommit is (level == "AUTOCOMMIT")
        if level != "AUTOCOMMIT":
            assert shown == level.lower()


def test_set_rolled_back_to_a_savepoint_is_not_restored(sim, engines, table):
    e = engines(sim)
    with e.connect() as connection:
        connection.execute(text("SET search_path TO orca_kept, public"))
        savepoint = connection.begin_nested()
        connection.execute(text("SET application_name TO 'orca_undone'"))
        savepoint.rollback()
        connection.commit()
        connection.execute(table.insert, {"v": "a"})
        sim.scale_event()
        with pytest.raises(orca.TransactionRolledBack):
            connection.execute(table.insert, {"v": "b"})
        connection.rollback()
        assert connection.execute(text("SHOW search_path")).scalar() == "orca_kept, public"
        assert connection.execute(text("SHOW application_name")).scalar() != "orca_undone"


def test_set_sent_by_executemany_is_not_followed(sim, engines):
    e = engines(sim, isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        connection.execute(
            text("SELECT set_config('application_name', :v, false)"), [{"v": "a"}, {"v": "b"}]
        )
        sim.scale_event()
        with pytest.raises(orca.SessionStateLost):
            connection.execute(text("SELECT 1"))


def test_read_not_replayed_on_a_session_without_its_advisory_lock(sim, engines, events):
    e = engines(sim, isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(4245)"))
        sim.lose_replies(1, contains="orca_probe")
        with pytest.raises(orca.SessionStateLost) as error:
            connection.execute(text("SELECT 1 AS orca_probe"))
        assert error.value.lost == ("a session advisory lock",)
    assert [(e.phase, e.outcome) for e in events] == [("execute", "raised")]
