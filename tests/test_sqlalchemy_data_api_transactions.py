"""``orca_db.sqlalchemy.run_transaction`` on the Data API dialect
(``postgresql+aurora_data_api``), from the outside through the local
endpoint: a scale event runs fn again once, a lost CommitTransaction is
resolved with ``pg_xact_status`` from another call, 40001 runs again,
ORCA's decorator never writes twice, fn's errors surface unchanged."""

from __future__ import annotations

import pytest

from tests import test_sqlalchemy_data_api as data_api_tests
from tests.sqlalchemy_helpers import retry_operational_error

# The Data API dialect's fixtures (the endpoint's cluster, an engine, a table).
aurora = data_api_tests.aurora
engines = data_api_tests.engines
engine = data_api_tests.engine
notes = data_api_tests.notes

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import text  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from orca_db import sqlalchemy as orca  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=False)


def transaction_events(events):
    return [(e.outcome, e.attempts) for e in events if e.phase == "transaction"]


def test_settings_are_the_dialects(engine):
    from orca_db.sqlalchemy.plugin import settings_of

    assert settings_of(engine) is engine.dialect.retry_settings
    assert orca.run_transaction(engine, lambda c: c.execute(text("SELECT 7")).scalar()) == 7


def test_a_scale_event_mid_fn_runs_fn_again_once(engine, data_api_endpoint, notes, events):
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(notes.insert, {"v": "granule"})
        if len(calls) == 1:
            data_api_endpoint.scale_event()
        connection.execute(notes.insert, {"v": "second"})
        return "done"

    assert orca.run_transaction(engine, post) == "done"
    assert (len(calls), notes.count("granule"), notes.count("second")) == (2, 1, 1)
    assert ("recovered", 2) in transaction_events(events)


def test_a_scale_event_mid_fn_of_a_session_runs_it_again_once(engine, data_api_endpoint, notes):
    calls = []

    def post(session):
        calls.append(1)
        session.execute(notes.insert, {"v": "orm"})
        if len(calls) == 1:
            data_api_endpoint.scale_event()
        session.execute(notes.insert, {"v": "orm"})

    orca.run_transaction(sessionmaker(bind=engine), post)
    assert (len(calls), notes.count("orm")) == (2, 2)


def test_fn_that_catches_the_lost_transaction_and_returns_runs_again(
    engine, data_api_endpoint, notes
):
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(notes.insert, {"v": "caught"})
        if len(calls) == 1:
            data_api_endpoint.scale_event()
            try:
                connection.execute(notes.insert, {"v": "never"})
            except orca.TransactionRolledBack:
                pass

    orca.run_transaction(engine, post)
    assert (len(calls), notes.count("caught"), notes.count("never")) == (2, 1, 0)


def test_a_lost_commit_answer_after_the_server_committed_is_resolved_as_committed(
    engine, data_api_endpoint, notes
):
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(notes.insert, {"v": "resolve me"})
        return "done"

    data_api_endpoint.lose_replies(1, operation="CommitTransaction")
    assert orca.run_transaction(engine, post) == "done"
    assert (len(calls), notes.count("resolve me")) == (1, 1)


def test_a_lost_commit_answer_with_resolution_off_is_outcome_unknown(
    engine, data_api_endpoint, notes
):
    data_api_endpoint.lose_replies(1, operation="CommitTransaction")
    with pytest.raises(orca.OutcomeUnknown) as raised:
        orca.run_transaction(
            engine, lambda c: c.execute(notes.insert, {"v": "off"}), resolve_commit=False
        )
    assert not isinstance(raised.value, sqlalchemy.exc.OperationalError)
    assert notes.count("off") == 1


def test_a_serialization_failure_runs_fn_again(engine, notes, events):
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(notes.insert, {"v": "conflict"})
        if len(calls) == 1:
            connection.execute(
                text("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
            )

    orca.run_transaction(engine, post)
    assert (len(calls), notes.count("conflict")) == (2, 1)


def test_orca_decorator_around_run_transaction_never_writes_twice(engine, data_api_endpoint, notes):
    calls = []

    @retry_operational_error(max_retries=3, backoff_in_seconds=0.001, jitter=0.001)
    def post_to_database():
        calls.append(1)
        orca.run_transaction(
            engine, lambda c: c.execute(notes.insert, {"v": "a"}), resolve_commit=False
        )

    data_api_endpoint.lose_replies(1, operation="CommitTransaction")
    with pytest.raises(orca.OutcomeUnknown):
        post_to_database()
    assert (len(calls), notes.count("a")) == (1, 1)


def test_errors_of_fn_surface_unchanged_and_roll_back(engine, notes):
    class Refused(Exception):
        pass

    def post(connection):
        connection.execute(notes.insert, {"v": "rolled back"})
        raise Refused("no")

    with pytest.raises(Refused):
        orca.run_transaction(engine, post)
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        orca.run_transaction(
            engine, lambda c: c.execute(text(f"INSERT INTO {notes.table} (id) VALUES (NULL)"))
        )
    assert notes.count() == 0
    with Session(engine) as session:
        assert session.execute(text("SELECT 1")).scalar() == 1


@pytest.mark.parametrize("where", ["before fn's first call", "after fn's first statement"])
def test_a_pause_inside_fn_is_waited_for_or_runs_fn_again(engine, data_api_endpoint, notes, where):
    calls = []

    def post(connection):
        calls.append(1)
        if len(calls) == 1 and where == "before fn's first call":
            data_api_endpoint.pause(calls=2)
        connection.execute(notes.insert, {"v": "paused"})
        if len(calls) == 1 and where == "after fn's first statement":
            data_api_endpoint.pause(calls=2)
        connection.execute(notes.insert, {"v": "paused"})

    orca.run_transaction(engine, post)
    assert notes.count("paused") == 2


@pytest.mark.parametrize(
    "url", ["postgresql+aurora_data_api:///postgres", "postgresql+aurora_data_api://"]
)
@pytest.mark.parametrize("operation", ["BeginTransaction", "ExecuteStatement"])
def test_a_throttled_call_inside_fn_runs_fn_again_as_one_operation(
    data_api_endpoint, aurora, notes, events, url, operation
):
    """Inside run_transaction the driver gives up a transaction whose call
    was refused (throttled), as under the Django engine's retry_atomic, and
    fn runs again: one operation named after the database (whatever the
    URL says), one event, the row written once."""
    from sqlalchemy import create_engine

    engine = create_engine(url, aurora=aurora)
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(text("SELECT 1"))
        if len(calls) == 1 and operation == "ExecuteStatement":
            data_api_endpoint.fail_next(1, code="ThrottlingException", operation=operation)
        connection.execute(notes.insert, {"v": "throttled"})
        return "done"

    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        if operation == "BeginTransaction":
            data_api_endpoint.fail_next(1, code="ThrottlingException", operation=operation)
        assert orca.run_transaction(engine, post) == "done"
    finally:
        engine.dispose()
    assert (len(calls), notes.count("throttled")) == (2, 1)
    assert [(e.phase, e.database, e.outcome, e.error_type) for e in events] == [
        ("transaction", "postgres", "recovered", "ThrottlingException")
    ]


@pytest.fixture
def unprivileged(data_api_endpoint, notes):
    """The secret's user may not call pg_control_system() (as a provider
    may arrange it): the Data API endpoint logs in as that role."""
    from tests.sim_clients import on_server

    on_server(
        "DROP ROLE IF EXISTS orca_da_app; CREATE ROLE orca_da_app LOGIN PASSWORD 'da-app'; "
        f"GRANT SELECT, INSERT ON {notes.table} TO orca_da_app; "
        f"GRANT USAGE ON SEQUENCE {notes.table}_id_seq TO orca_da_app; "
        "REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC"
    )
    params = data_api_endpoint._server_params
    saved = dict(params)
    params.update(user="orca_da_app", password="da-app")
    data_api_endpoint.stop()
    data_api_endpoint.start()
    yield data_api_endpoint
    params.update(saved)
    data_api_endpoint.stop()
    data_api_endpoint.start()
    on_server(
        "GRANT EXECUTE ON FUNCTION pg_control_system() TO PUBLIC; "
        f"REVOKE ALL ON {notes.table} FROM orca_da_app; "
        f"REVOKE ALL ON SEQUENCE {notes.table}_id_seq FROM orca_da_app; DROP ROLE orca_da_app"
    )


def test_a_lost_commit_where_the_cluster_cannot_be_identified_is_outcome_unknown(
    unprivileged, aurora, notes
):
    from sqlalchemy import create_engine

    engine = create_engine("postgresql+aurora_data_api:///postgres", aurora=aurora)
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(notes.insert, {"v": "anonymous"})

    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        unprivileged.lose_replies(1, operation="CommitTransaction")
        with pytest.raises(orca.OutcomeUnknown, match="identity") as raised:
            orca.run_transaction(engine, post)
    finally:
        engine.dispose()
    assert not isinstance(raised.value, sqlalchemy.exc.OperationalError)
    assert (len(calls), notes.count("anonymous")) == (1, 1)  # committed; only unknown


def test_a_commit_dropped_unrun_is_resolved_as_aborted_and_fn_runs_again(
    engine, data_api_endpoint, notes, events
):
    """CommitTransaction never reached the server: the transaction is still
    open ("in progress"), its backend is ended, then it reads "aborted", and
    fn runs again: the row written once."""
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(notes.insert, {"v": "dropped commit"})
        return len(calls)

    data_api_endpoint.drop_requests(1, operation="CommitTransaction")
    assert orca.run_transaction(engine, post) == 2
    assert notes.count("dropped commit") == 1
    assert [(e.phase, e.outcome, e.attempts) for e in events] == [("transaction", "recovered", 2)]
