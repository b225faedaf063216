"""An adversary's review of ``orca_db.sqlalchemy.run_transaction`` and
``lambda_handler``: the ways a real SQLAlchemy application reaches them
that tests/test_sqlalchemy_transactions.py does not. Real servers, the
Aurora simulator, both drivers."""

from __future__ import annotations

import pytest

from tests import sqlalchemy_helpers
from tests.sim_clients import on_server
from tests.sqlalchemy_helpers import retry_operational_error, terminate
from tests.test_sqlalchemy_transactions import LambdaContext, model_of

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import text  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from orca_db import sqlalchemy as orca  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=False)


# Shared fixtures (tests/sqlalchemy_helpers.py).
table = sqlalchemy_helpers.table
sim = sqlalchemy_helpers.sim
engines = sqlalchemy_helpers.engines


def orca_decorated(function):
    return retry_operational_error(max_retries=3, backoff_in_seconds=0.001, jitter=0.001)(function)


def cancel_a_statement(connection):
    """A real OperationalError that says nothing of the connection: the
    statement timed out (57014), the transaction is aborted."""
    connection.execute(text("SET LOCAL statement_timeout = 1"))
    connection.execute(text("SELECT pg_sleep(1)"))


def scale_event_between_writes(sim, table, calls, before=None):
    """fn for run_transaction: ``before(connection)`` (when given), then
    two writes with a scale event between them on fn's first run; each
    run appended to ``calls``; returns what ``before`` returned."""

    def fn(connection):
        calls.append(1)
        result = before(connection) if before else None
        connection.execute(table.insert, {"v": "a"})
        if len(calls) == 1:
            sim.scale_event()
        connection.execute(table.insert, {"v": "b"})
        return result

    return fn


# ----- what fn committed itself, then an OperationalError ----------------------------


def test_operational_error_after_fn_committed_itself_is_not_an_operational_error(engines, table):
    """fn commits (connection.commit()), then a statement fails with an
    OperationalError that is not a lost connection (57014). Surfaced as it
    is, ORCA's decorator runs the whole function again and the committed
    part is written once per run."""
    e = engines()
    calls = []

    @orca_decorated
    def post():
        def fn(connection):
            calls.append(1)
            connection.execute(table.insert, {"v": "a"})
            connection.commit()
            cancel_a_statement(connection)

        orca.run_transaction(e, fn)

    with pytest.raises(orca.OutcomeUnknown, match="COMMIT itself") as raised:
        post()
    assert isinstance(raised.value.__cause__, sqlalchemy.exc.OperationalError)
    assert (len(calls), table.rows()) == (1, 1)


def test_operational_error_after_a_nested_run_committed_is_not_an_operational_error(engines, table):
    """A run_transaction inside fn committed; then fn fails with an
    OperationalError: ORCA's decorator must not run it all again."""
    e = engines()
    calls = []

    @orca_decorated
    def post():
        def fn(connection):
            calls.append(1)
            orca.run_transaction(e, lambda inner: inner.execute(table.insert, {"v": "inner"}))
            cancel_a_statement(connection)

        orca.run_transaction(e, fn)

    with pytest.raises(orca.OutcomeUnknown, match="inside it committed"):
        post()
    assert (len(calls), table.rows()) == (1, 1)


def test_an_unfollowed_error_after_fn_committed_itself_is_unchanged(engines, table):
    """Not an OperationalError (no decorator re-runs it): it surfaces as
    fn raised it."""
    e = engines()

    def fn(connection):
        connection.execute(table.insert, {"v": "a"})
        connection.commit()
        raise KeyError("application")

    with pytest.raises(KeyError):
        orca.run_transaction(e, fn)
    assert table.rows() == 1


# ----- fn's own commit, then more writes -----------------------------------------------


def test_writes_after_connection_commit_in_fn_are_committed_not_dropped(engines, table):
    """fn calls connection.commit() and goes on writing (SQLAlchemy 2.0
    autobegins a new transaction): that second transaction must be
    committed too, or refused, never rolled back behind a success."""
    e = engines()

    def fn(connection):
        connection.execute(table.insert, {"v": "a"})
        connection.commit()
        connection.execute(table.insert, {"v": "b"})
        return "done"

    assert orca.run_transaction(e, fn) == "done"
    assert table.rows() == 2


def test_writes_after_session_commit_in_fn_are_committed(engines, table):
    e = engines()
    Granule = model_of(table)

    def fn(session):
        session.add(Granule(v="a"))
        session.commit()
        session.add(Granule(v="b"))

    orca.run_transaction(sessionmaker(e), fn)
    assert table.rows() == 2


# ----- fn swallows the lost connection ---------------------------------------------------


def test_fn_that_swallows_a_lost_connection_never_returns_success_uncommitted(sim, engines, table):
    """fn catches the DB error of a lost connection and returns normally:
    the transaction was rolled back by the server; run_transaction must
    not report success with nothing committed. It runs fn again (nothing
    of the first run committed)."""
    e = engines(sim)
    calls = []

    def fn(connection):
        calls.append(1)
        connection.execute(table.insert, {"v": "a"})
        if len(calls) == 1:
            sim.scale_event()
            try:
                connection.execute(table.insert, {"v": "b"})
            except sqlalchemy.exc.DBAPIError:
                pass  # the application logs it and goes on
        return len(calls)

    assert orca.run_transaction(e, fn) == 2
    assert table.rows() == 1


def test_orm_fn_that_rolls_back_after_a_lost_connection_and_goes_on_runs_again(sim, engines, table):
    """The ORM idiom: except DBAPIError: session.rollback(), then more
    work. The first part was rolled back by the server: committing only
    the rest would commit part of fn's transaction. fn runs again."""
    e = engines(sim)
    Granule = model_of(table)
    calls = []

    def fn(session):
        calls.append(1)
        session.add(Granule(v="first"))
        if len(calls) == 1:
            session.flush()
            sim.scale_event()
            try:
                session.add(Granule(v="more"))
                session.flush()
            except sqlalchemy.exc.DBAPIError:
                session.rollback()
        session.add(Granule(v="second"))

    orca.run_transaction(sessionmaker(e), fn)
    assert len(calls) == 2
    assert sorted(on_server(f"SELECT v FROM {table.name}")) == [("first",), ("second",)]


# ----- async and generator misuse ---------------------------------------------------------


def test_fn_returning_a_coroutine_is_refused_and_rolled_back(engines, table):
    e = engines()

    async def body(connection):
        connection.execute(table.insert, {"v": "late"})

    def fn(connection):
        connection.execute(table.insert, {"v": "a"})
        return body(connection)

    with pytest.raises(TypeError, match="after the transaction"):
        orca.run_transaction(e, fn)
    assert table.rows() == 0


def test_fn_returning_a_generator_is_refused_and_rolled_back(engines, table):
    e = engines()

    def rows(connection):
        yield connection.execute(table.insert, {"v": "late"})

    def fn(connection):
        connection.execute(table.insert, {"v": "a"})
        return rows(connection)

    with pytest.raises(TypeError, match="after the transaction"):
        orca.run_transaction(e, fn)
    assert table.rows() == 0


# ----- a second connection of the same engine inside fn -----------------------------------


def test_a_commit_on_another_connection_of_the_engine_inside_fn_is_never_run_again(
    sim, engines, table
):
    """fn opens engine.begin() of its own (a second connection) and
    commits there, then the run's connection is lost: running fn again
    would write that row twice. Refused: OutcomeUnknown."""
    e = engines(sim)
    calls = []

    def audit(connection):
        with e.begin() as audit:
            audit.execute(table.insert, {"v": "audit"})

    with pytest.raises(orca.OutcomeUnknown, match="another connection"):
        orca.run_transaction(e, scale_event_between_writes(sim, table, calls, audit))
    assert (len(calls), table.rows()) == (1, 1)


def test_an_autocommit_write_on_another_connection_inside_fn_is_never_run_again(
    sim, engines, table
):
    e = engines(sim)
    calls = []

    def fn(connection):
        calls.append(1)
        with e.connect() as audit:
            audit.execution_options(isolation_level="AUTOCOMMIT").execute(
                table.insert, {"v": "audit"}
            )
        sim.scale_event()  # before fn's first statement on its own connection
        connection.execute(table.insert, {"v": "lost"})

    with pytest.raises(orca.OutcomeUnknown, match="another connection"):
        orca.run_transaction(e, fn)
    assert (len(calls), table.rows()) == (1, 1)


def test_reads_on_another_connection_inside_fn_still_run_again(sim, engines, table):
    e = engines(sim)
    calls = []

    def read_elsewhere(connection):
        with e.connect() as other:
            other.execute(text("SELECT 1"))

    orca.run_transaction(e, scale_event_between_writes(sim, table, calls, read_elsewhere))
    assert (len(calls), table.rows()) == (2, 2)


# ----- Lambda -------------------------------------------------------------------------------


def test_a_lambda_handler_called_inside_another_keeps_the_outer_connection(engines, table):
    """A decorated handler called from another (a router calling a
    sub-handler): the inner invocation's end must not close the connection
    the outer one is using."""
    e = engines()

    @orca.lambda_handler(e)
    def inner(event, context):
        return "inner"

    @orca.lambda_handler(e)
    def outer(event, context):
        with e.begin() as connection:
            connection.execute(table.insert, {"v": "a"})
            inner(event, context)
            connection.execute(table.insert, {"v": "b"})
        return "outer"

    assert outer({}, LambdaContext(60_000)) == "outer"
    assert table.rows() == 2


def test_a_lambda_handler_returning_a_generator_is_refused(engines, table):
    """A lazy result would run after the invocation closed the
    connections (and outside the cap)."""
    e = engines()

    @orca.lambda_handler(e)
    def handler(event, context):
        with e.begin() as connection:
            connection.execute(table.insert, {"v": "a"})
        return (row for row in e.connect().execute(text("SELECT 1")))

    with pytest.raises(TypeError, match="after the invocation"):
        handler({}, LambdaContext(60_000))


def test_an_async_lambda_handler_is_refused_when_decorated(engines):
    e = engines()

    async def handler(event, context):
        return None

    with pytest.raises(TypeError, match="plain function"):
        orca.lambda_handler(e)(handler)


# ----- what fn does with the session and the connection -------------------------------------


def test_a_savepoint_the_application_rolls_back_keeps_the_rest(engines, table):
    """begin_nested() with an IntegrityError caught: the rest commits once."""
    e = engines()
    on_server(f"CREATE UNIQUE INDEX ON {table.name} (v)")

    def fn(connection):
        connection.execute(table.insert, {"v": "a"})
        try:
            with connection.begin_nested():
                connection.execute(table.insert, {"v": "a"})
        except sqlalchemy.exc.IntegrityError:
            pass
        connection.execute(table.insert, {"v": "b"})

    orca.run_transaction(e, fn)
    assert table.rows() == 2


def test_a_lost_connection_inside_a_savepoint_the_application_catches_runs_again(
    sim, engines, table
):
    e = engines(sim)
    calls = []

    def fn(connection):
        calls.append(1)
        connection.execute(table.insert, {"v": "a"})
        try:
            with connection.begin_nested():
                if len(calls) == 1:
                    sim.scale_event()
                connection.execute(table.insert, {"v": "nested"})
        except sqlalchemy.exc.DBAPIError:
            pass  # "the optional part failed"
        return len(calls)

    assert orca.run_transaction(e, fn) == 2
    assert sorted(on_server(f"SELECT v FROM {table.name}")) == [("a",), ("nested",)]


def test_a_server_side_cursor_cut_mid_stream_runs_again_once(sim, engines, table):
    e = engines(sim)
    for v in range(50):
        on_server(f"INSERT INTO {table.name} (v) VALUES (%s)", [str(v)])
    calls = []

    def fn(connection):
        calls.append(1)
        seen = 0
        result = connection.execute(
            text(f"SELECT v FROM {table.name}"),
            execution_options={"stream_results": True, "max_row_buffer": 5},
        )
        for _ in result:
            seen += 1
            if seen == 10 and len(calls) == 1:
                sim.scale_event()
        connection.execute(table.insert, {"v": "summary"})
        return seen

    assert orca.run_transaction(e, fn) == 50
    assert (len(calls), table.rows()) == (2, 51)


@pytest.mark.parametrize(
    "pool", [{"poolclass": "null"}, {"pool_pre_ping": True}, {"pool_size": 1, "max_overflow": 0}]
)
def test_pools_a_lost_commit_is_resolved_and_a_scale_event_runs_again(sim, engines, table, pool):
    if pool.get("poolclass") == "null":
        pool = {"poolclass": sqlalchemy.pool.NullPool}
    e = engines(sim, pool_timeout=10, **pool) if "pool_size" in pool else engines(sim, **pool)
    calls = []

    orca.run_transaction(e, scale_event_between_writes(sim, table, calls))
    sim.lose_replies(1, contains="COMMIT")
    orca.run_transaction(e, lambda c: c.execute(table.insert, {"v": "c"}))
    assert sim.stats["lost_replies"] == 1
    assert (len(calls), table.rows()) == (2, 3)


def test_an_engine_with_execution_options_is_followed(sim, engines, table):
    """engine.execution_options(isolation_level=...) is another Engine
    object (an OptionEngine) over the same pool and plugin."""
    e = engines(sim).execution_options(isolation_level="SERIALIZABLE")
    calls = []

    def level(connection):
        return connection.execute(text("SHOW transaction_isolation")).scalar()

    fn = scale_event_between_writes(sim, table, calls, level)
    assert orca.run_transaction(e, fn) == "serializable"
    assert (len(calls), table.rows()) == (2, 2)


def test_a_lost_reply_to_fns_own_commit_is_unknown_and_never_run_again(sim, engines, table):
    """fn's own connection.commit() loses its reply: fn raises out of it
    on a lost connection, which would otherwise be run again."""
    e = engines(sim)
    calls = []

    @orca_decorated
    def post():
        def fn(connection):
            calls.append(1)
            connection.execute(table.insert, {"v": "a"})
            connection.commit()
            connection.execute(table.insert, {"v": "b"})

        orca.run_transaction(e, fn)

    sim.lose_replies(1, contains="COMMIT")
    with pytest.raises(orca.OutcomeUnknown):  # the plugin's own, from the COMMIT
        post()
    assert sim.stats["lost_replies"] == 1
    assert (len(calls), table.rows()) == (1, 1)


def test_a_lost_reply_to_fns_own_session_commit_is_unknown(sim, engines, table):
    e = engines(sim)
    Granule = model_of(table)
    calls = []

    def fn(session):
        calls.append(1)
        session.add(Granule(v="a"))
        session.commit()

    sim.lose_replies(1, contains="COMMIT")
    with pytest.raises(orca.OutcomeUnknown):
        orca.run_transaction(sessionmaker(e), fn)
    assert (len(calls), table.rows()) == (1, 1)


def test_a_nested_lambda_handler_with_its_own_engine_is_closed_by_the_outer_one(engines):
    e, other = engines(), engines()
    held = []

    @orca.lambda_handler(other)
    def inner(event, context):
        held.append(other.connect().connection.dbapi_connection)  # left checked out
        return "inner"

    @orca.lambda_handler(e)
    def outer(event, context):
        inner(event, context)
        assert not held[0].closed  # the outer invocation goes on
        return "outer"

    assert outer({}, LambdaContext(60_000)) == "outer"
    assert held[0].closed  # closed when the outermost one ended


# ----- statements that read like reads --------------------------------------------------------


@pytest.fixture
def writing_function(table):
    on_server(
        f"CREATE FUNCTION {table.name}_add() RETURNS int LANGUAGE sql AS "
        f"$$ INSERT INTO {table.name} (v) VALUES ('by function') RETURNING id $$"
    )
    yield f"{table.name}_add"
    on_server(f"DROP FUNCTION IF EXISTS {table.name}_add()")


@pytest.mark.parametrize("resolve_commit", [None, True])
def test_a_lost_commit_after_a_select_of_a_writing_function_is_never_run_again(
    sim, engines, table, writing_function, resolve_commit
):
    """SELECT f() where f inserts looks like a read: its lost COMMIT is
    never guessed (unknown when not asked, resolved when asked)."""
    e = engines(sim)
    calls = []

    def fn(connection):
        calls.append(1)
        return connection.execute(text(f"SELECT {writing_function}()")).scalar()

    sim.lose_replies(1, contains="COMMIT")
    if resolve_commit:
        assert orca.run_transaction(e, fn, resolve_commit=True) == 1
    else:
        with pytest.raises(orca.OutcomeUnknown):
            orca.run_transaction(e, fn)
    assert (len(calls), table.rows()) == (1, 1)


def test_a_scoped_session_is_refused_with_a_clear_error(engines):
    """fn would be handed a session of its own while the application's
    code inside it uses the registry's: refused, not followed."""
    from sqlalchemy.orm import scoped_session

    registry = scoped_session(sessionmaker(engines()))
    with pytest.raises(TypeError, match="sessionmaker"):
        orca.run_transaction(registry, lambda session: None)
    registry.remove()


def test_an_autocommit_option_engine_still_runs_fn_in_one_transaction(sim, engines, table):
    """engine.execution_options(isolation_level="AUTOCOMMIT"), the FAQ's
    recipe for autocommit reads, passed to run_transaction: each statement
    would commit on its own and a second run apply the first's again."""
    e = engines(sim).execution_options(isolation_level="AUTOCOMMIT")
    calls = []

    orca.run_transaction(e, scale_event_between_writes(sim, table, calls))
    assert (len(calls), table.rows()) == (2, 2)


def test_a_sessionmaker_with_binds_to_other_engines_is_refused(sim, engines, table):
    """sessionmaker(engine, binds={Model: other}): the session writes
    Model's rows on the other engine, in a transaction run_transaction
    neither reads an id of nor sees committed (committed one after the
    other, not atomically). A scale event on the run's connection after
    the other engine committed would write them twice."""
    e, other = engines(sim), engines()
    Granule = model_of(table)
    factory = sessionmaker(e, binds={Granule: other})
    calls = []

    def fn(session):
        calls.append(1)
        session.add(Granule(v="a"))

    with pytest.raises(TypeError, match="binds"):
        orca.run_transaction(factory, fn)
    assert (len(calls), table.rows()) == (0, 0)


def test_a_scale_event_after_fns_own_session_commit_is_unknown_never_run_again(sim, engines, table):
    e = engines(sim)
    Granule = model_of(table)
    calls = []

    @orca_decorated
    def post():
        def fn(session):
            calls.append(1)
            session.add(Granule(v="a"))
            session.commit()
            sim.scale_event()
            session.add(Granule(v="b"))
            session.flush()

        orca.run_transaction(sessionmaker(e), fn)

    with pytest.raises(orca.OutcomeUnknown, match="COMMIT itself"):
        post()
    assert (len(calls), table.rows()) == (1, 1)


def test_a_terminated_backend_the_application_catches_runs_again(engines, table):
    """The same with a real 57P01 (pg_terminate_backend): fn catches the
    error and returns; nothing of the first run is committed."""
    e = engines()
    calls = []

    def fn(connection):
        calls.append(1)
        connection.execute(table.insert, {"v": "a"})
        if len(calls) == 1:
            terminate(connection)
            try:
                connection.execute(table.insert, {"v": "b"})
            except sqlalchemy.exc.DBAPIError:
                return "gave up on b"
        return "all"

    assert orca.run_transaction(e, fn) == "all"
    assert (len(calls), table.rows()) == (2, 1)
