"""An adversarial review of the SQLAlchemy plugin's hot path (the short
paths for statements, COMMIT and ROLLBACK; the pool's own check; the
session clean-up on the pool entry), from the outside: a real server, real
faults (the simulator's silence, ``pg_terminate_backend``)."""

from __future__ import annotations

import time

import pytest

from orca_db.deadlines import deadline_cap
from tests import cut_off_messages as cut
from tests import sqlalchemy_helpers
from tests.sqlalchemy_helpers import replaces_a_pooled_connection_the_server_closed, terminate
from tests.test_sqlalchemy_credentials import dbname, secret_role  # noqa: F401 (fixtures)

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import pool, text  # noqa: E402

from orca_db import sqlalchemy as orca  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=False)

BOUND = sqlalchemy_helpers.SILENCE_BOUND

# Shared fixtures (tests/sqlalchemy_helpers.py); the tests here may leave
# the simulator silent.
table = sqlalchemy_helpers.table
engines = sqlalchemy_helpers.engines
sim = sqlalchemy_helpers.silenced_sim


def test_silent_rollback_cut_at_a_cap_the_engine_was_made_in(sim, engines, table):
    """A Lambda handler that makes its engine on its first invocation,
    inside the cap (no statement_deadline): that engine's ROLLBACK must be
    bounded by the cap already open, as an engine made before it is."""
    with deadline_cap(3.0):
        e = engines(sim, aurora={"deadline": 30})
        with e.connect() as connection:
            connection.execute(table.insert, {"v": "a"})
            sim.silence(new_connections=False)
            started = time.monotonic()
            with pytest.raises(orca.DeadlineExceeded) as error:
                connection.rollback()
            took = time.monotonic() - started
    assert took < BOUND
    assert str(error.value.orig) == cut.ROLLBACK.format(alias=e.url.database)
    sim.unsilence()
    assert table.rows() == 0


def test_session_changed_on_a_detached_connection(engines):
    """``connection.detach()`` takes the driver connection out of the pool
    (no pool entry any more): a SET on it afterwards runs, and its session
    is followed as on any other (nothing to clean at a checkin that never
    comes)."""
    from sqlalchemy import text

    e = engines()
    with e.connect() as connection:
        connection.connection.detach()
        connection.exec_driver_sql("SET search_path TO pg_catalog, public")
        assert connection.execute(text("SHOW search_path")).scalar() == "pg_catalog, public"
    with e.connect() as connection:
        assert connection.execute(text("SHOW search_path")).scalar() != "pg_catalog, public"


POOLS = {
    "default": {},
    "null": {"poolclass": pool.NullPool},
    "static": {"poolclass": pool.StaticPool},
    "singleton": {"poolclass": pool.SingletonThreadPool},
    "pre_ping": {"pool_pre_ping": True},
}


@pytest.mark.parametrize("kind", sorted(POOLS))
def test_commit_after_the_server_closed_the_connection_is_rolled_back(engines, table, kind):
    """COMMIT's short path: a connection the server closed mid-transaction
    is found before COMMIT is sent (TransactionRolledBack), never
    OutcomeUnknown, never a silent success."""
    e = engines(**POOLS[kind])
    with e.connect() as connection:
        connection.execute(text("SELECT 1"))
    with e.connect() as connection:
        connection.begin()
        connection.execute(table.insert, {"v": "a"})
        terminate(connection)
        with pytest.raises(orca.TransactionRolledBack):
            connection.commit()
    assert table.rows() == 0


@pytest.mark.parametrize("kind", ["pre_ping", "static", "dispose_keeping", "options_copy"])
def test_a_pooled_connection_closed_by_a_scale_event_is_replaced(sim, engines, table, kind):
    e = engines(sim, **POOLS.get(kind, {}))
    if kind == "dispose_keeping":
        e.dispose(close=False)
    if kind == "options_copy":
        e = e.execution_options(logging_token="copy")
    replaces_a_pooled_connection_the_server_closed(sim, e, table)


def test_a_read_after_an_explicit_begin_in_autocommit_is_not_replayed(engines, table):
    """BEGIN sent by hand on an AUTOCOMMIT connection opens a transaction
    libpq knows of: a read in it, lost, is never replayed (the short path
    reads the status, not the autocommit flag)."""
    e = engines(isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        connection.exec_driver_sql("BEGIN")
        connection.execute(table.insert, {"v": "a"})
        terminate(connection)
        with pytest.raises(orca.TransactionRolledBack):
            connection.execute(text("SELECT 2"))
    assert table.rows() == 0


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT v FROM {t} FOR UPDATE",
        "SELECT pg_advisory_lock(7)",
        "SELECT set_config('a.b', 'x', false)",
    ],
)
def test_an_autocommit_read_that_is_not_replayable_is_sent_once(engines, table, statement):
    """Not replayable in READ ONLY (a row lock, a call): the socket is
    asked first, the closed connection replaced, the statement sent once."""
    e = engines(isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        connection.execute(table.insert, {"v": "a"})
        connection.execute(text("SELECT 1"))
        terminate(connection)
        connection.exec_driver_sql(statement.format(t=table.name))


def test_a_changed_session_returned_by_the_garbage_collector_is_cleaned(engines):
    """A Connection dropped without close(): SQLAlchemy returns its driver
    connection from a weakref callback; the clean-up arranged on the pool
    entry runs there too."""
    import gc
    import warnings

    e = engines(pool_size=1, max_overflow=0)

    def dropped() -> None:
        connection = e.connect()
        connection.exec_driver_sql("SET search_path TO pg_catalog, public")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dropped()
        gc.collect()
    with e.connect() as connection:
        assert connection.execute(text("SHOW search_path")).scalar() != "pg_catalog, public"


def test_a_session_changed_in_an_orm_session_with_a_savepoint_is_cleaned(engines, table):
    from sqlalchemy.orm import Session

    e = engines(pool_size=1, max_overflow=0)
    with Session(bind=e) as session:
        session.execute(text("SET search_path TO pg_catalog, public"))
        with session.begin_nested():
            session.execute(text(f"INSERT INTO public.{table.name} (v) VALUES ('a')"))
        session.commit()
    with e.connect() as connection:
        assert connection.execute(text("SHOW search_path")).scalar() != "pg_catalog, public"
    assert table.rows() == 1


def test_an_autocommit_select_from_a_writing_view_is_never_run_twice(engines, table):
    """A SELECT from a view that calls a function that writes reads as a
    read: on a connection the server closed while idle it is sent without
    asking the socket first. Lost, it is replayed READ ONLY, where the
    write is refused: never applied twice. (psycopg2 then says
    OutcomeUnknown though it ran nowhere: docs/sqlalchemy.md, Known gaps;
    before b56be0a it was replaced first and run once. psycopg 3 runs it
    once.)"""
    from tests import sim_clients

    t = table.name
    sim_clients.on_server(
        f"CREATE FUNCTION {t}_w() RETURNS int LANGUAGE sql AS "
        f"$$ INSERT INTO {t} (v) VALUES ('w') RETURNING 1 $$"
    )
    sim_clients.on_server(f"CREATE VIEW {t}_v AS SELECT {t}_w() AS x")
    e = engines(isolation_level="AUTOCOMMIT")
    with e.connect() as connection:
        connection.execute(text("SELECT 1"))
        terminate(connection)
        try:
            connection.execute(text(f"SELECT * FROM {t}_v")).all()
        except orca.OutcomeUnknown:
            assert table.rows() == 0
        else:
            assert table.rows() == 1


def test_overflow_connections_closed_by_a_scale_event_are_replaced(sim, engines, table):
    e = engines(sim, pool_size=1, max_overflow=2)
    with e.connect() as one, e.connect() as two:
        one.execute(text("SELECT 1"))
        two.execute(text("SELECT 1"))
    assert sim.scale_event() >= 1
    with e.begin() as one, e.begin() as two:
        one.execute(table.insert, {"v": "a"})
        two.execute(table.insert, {"v": "b"})
    assert table.rows() == 2


def test_an_applications_checkout_listener_that_refuses_gets_a_new_connection(engines):
    """The application's own checkout listener raising DisconnectionError
    (SQLAlchemy's pessimistic recipe) still makes SQLAlchemy connect anew,
    through the plugin's connect()."""
    from sqlalchemy import event
    from sqlalchemy import exc as sa_exc

    e = engines(pool_size=1, max_overflow=0)
    with e.connect() as connection:
        first = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    refused = []

    @event.listens_for(e.pool, "checkout")
    def refuse_once(dbapi_connection, record, proxy):
        if not refused:
            refused.append(True)
            raise sa_exc.DisconnectionError("the application's check")

    with e.connect() as connection:
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() != first
    assert refused


def test_a_changed_session_soft_invalidated_is_not_lent_changed(engines):
    e = engines(pool_size=1, max_overflow=0)
    with e.connect() as connection:
        connection.exec_driver_sql("SET search_path TO pg_catalog, public")
        connection.connection.invalidate(soft=True)
    with e.connect() as connection:
        assert connection.execute(text("SHOW search_path")).scalar() != "pg_catalog, public"


@pytest.mark.parametrize("kind", ["static", "singleton"])
def test_a_listened_pool_recreated_by_dispose_still_replaces(sim, engines, table, kind):
    """The pools checked by a checkout listener keep it through dispose()
    (Pool.recreate copies the listeners)."""
    e = engines(sim, **POOLS[kind])
    e.dispose()
    replaces_a_pooled_connection_the_server_closed(sim, e, table)


def test_the_secret_wins_over_a_password_a_do_connect_listener_set(django_db_blocker, request):
    """docs/sqlalchemy.md: with ``secret``, the plugin's login is applied
    after the application's do_connect listeners; a password a listener set
    is replaced by the secret's (not sent, refused, and retried)."""
    from sqlalchemy import URL, create_engine, event

    from tests.driver import DRIVER
    from tests.test_sqlalchemy_credentials import SECRET

    role = request.getfixturevalue("secret_role")
    e = create_engine(
        URL.create(f"postgresql+{DRIVER}"),
        plugins=["orca_db"],
        aurora={"secret": SECRET},
        poolclass=pool.NullPool,
    )
    seen = []

    @event.listens_for(e, "do_connect")
    def wrong_password(dialect, conn_rec, cargs, cparams):
        seen.append(True)
        cparams["password"] = "not-the-secrets"

    try:
        with django_db_blocker.unblock(), e.connect() as connection:
            assert connection.execute(text("SELECT current_user")).scalar() == role
    finally:
        e.dispose()
    assert seen


role = sqlalchemy_helpers.role


def test_a_session_restored_in_part_is_not_lent_changed(engines, role):
    """A session's settings applied again on a new connection, one
    statement each (AUTOCOMMIT: each one stays): when a later one is
    refused (its role dropped meanwhile), those already applied must not
    reach the next borrower."""
    from tests import sim_clients

    e = engines(isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)
    with e.connect() as connection:
        connection.exec_driver_sql("SET search_path TO pg_catalog, public")
        connection.exec_driver_sql(f"SET ROLE {role}")
        terminate(connection)
        sim_clients.on_server(f"DROP ROLE {role}")
        try:
            with pytest.raises(orca.SessionStateLost):
                connection.execute(text("SELECT 1"))
        finally:
            sim_clients.on_server(f"CREATE ROLE {role}")  # for the fixture to drop
    with e.connect() as connection:
        assert connection.execute(text("SHOW search_path")).scalar() != "pg_catalog, public"
