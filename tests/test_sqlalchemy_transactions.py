"""``orca_db.sqlalchemy.run_transaction`` and the Lambda wrapper, from the
outside: real servers, the Aurora simulator, pg_terminate_backend, both
drivers."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

import orca_db.outcomes as core
from tests import sqlalchemy_helpers
from tests.sim_clients import on_server
from tests.sim_clients import sqlstate as sim_sqlstate
from tests.sqlalchemy_helpers import retry_operational_error, terminate
from tests.waiting import wait_until

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import Column, Integer, Text, func, select, text  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker  # noqa: E402

from orca_db import sqlalchemy as orca  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=False)


# Shared fixtures (tests/sqlalchemy_helpers.py).
table = sqlalchemy_helpers.table
sim = sqlalchemy_helpers.sim
engines = sqlalchemy_helpers.engines


def transaction_events(events):
    return [(e.outcome, e.attempts) for e in events if e.phase == "transaction"]


def commit_resolutions(caplog) -> list[str]:
    return [
        r.orca_db["status"]
        for r in caplog.records
        if getattr(r, "orca_db", {}).get("kind") == "commit_resolution"
    ]


# ----- Core: fn(connection) ---------------------------------------------------------


def test_scale_event_mid_transaction_runs_the_whole_function_again_once(
    sim, engines, table, events
):
    e = engines(sim)
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(table.insert, {"v": "granule"})
        if len(calls) == 1:
            sim.scale_event()
        return connection.execute(text(f"SELECT count(*) FROM {table.name}")).scalar()

    assert orca.run_transaction(e, post) == 1
    assert (len(calls), table.rows()) == (2, 1)
    assert transaction_events(events) == [("recovered", 2)]


def test_lost_commit_reply_after_the_server_committed_is_resolved_as_committed(
    sim, engines, table, events, caplog
):
    caplog.set_level(logging.INFO, logger="orca_db.retry")
    e = engines(sim)
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(table.insert, {"v": "granule"})
        return "done"

    sim.lose_replies(1, contains="COMMIT")
    assert orca.run_transaction(e, post) == "done"
    assert sim.stats["lost_replies"] == 1
    assert (len(calls), table.rows()) == (1, 1)  # not run again: it had committed
    assert transaction_events(events) == [("recovered", 1)]
    assert commit_resolutions(caplog) == ["committed"]


def test_commit_on_a_connection_closed_before_it_was_sent_runs_again(sim, engines, table):
    e = engines(sim)
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(table.insert, {"v": "granule"})
        if len(calls) == 1:
            sim.scale_event()  # the COMMIT that follows finds the socket closed

    orca.run_transaction(e, post)
    assert (len(calls), table.rows()) == (2, 1)


@pytest.fixture
def slow_commit(table):
    """The COMMIT of a transaction that inserted 'slow' sleeps in a deferred
    trigger, before its commit record: terminated there, it aborts."""
    on_server(
        f"CREATE FUNCTION {table.name}_slow() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$"
    )
    on_server(
        f"CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON {table.name} "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.v = 'slow') "
        f"EXECUTE FUNCTION {table.name}_slow()"
    )
    yield
    on_server(f"DROP TABLE IF EXISTS {table.name}")
    on_server(f"DROP FUNCTION IF EXISTS {table.name}_slow()")


def test_commit_lost_before_the_server_committed_is_resolved_as_aborted_and_run_again(
    slow_commit, backend_killer, engines, table, events, caplog
):
    caplog.set_level(logging.INFO, logger="orca_db.retry")
    e = engines()
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(table.insert, {"v": "slow"})
        if len(calls) == 1:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            backend_killer.kill_when_running(pid, "COMMIT")

    orca.run_transaction(e, post)
    backend_killer.join()
    assert backend_killer.killed
    assert (len(calls), table.rows()) == (2, 1)
    assert transaction_events(events) == [("recovered", 2)]
    assert commit_resolutions(caplog) == ["aborted"]


def test_terminated_backend_mid_transaction_runs_again_once(engines, table, events):
    """A real 57P01 (pg_terminate_backend, what a scale event sends)."""
    e = engines()
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(table.insert, {"v": "a"})
        if len(calls) == 1:
            terminate(connection)
        connection.execute(table.insert, {"v": "b"})

    orca.run_transaction(e, post)
    assert (len(calls), table.rows()) == (2, 2)
    assert transaction_events(events) == [("recovered", 2)]


def test_disabled_runs_fn_once_as_sqlalchemy_does(sim, engines, table):
    e = engines(sim, aurora={"enabled": False})
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(table.insert, {"v": "a"})
        sim.scale_event()
        connection.execute(table.insert, {"v": "b"})

    with pytest.raises(sqlalchemy.exc.OperationalError):
        orca.run_transaction(e, post)
    assert (len(calls), table.rows()) == (1, 0)


def test_lost_commit_of_a_transaction_that_only_read_is_unknown_by_default(
    sim, engines, table, events
):
    """Nothing is asked before the COMMIT of a read (the default): its lost
    reply is reported as it is, never guessed, and it is not run again."""
    e = engines(sim)
    calls = []

    def read(connection):
        calls.append(1)
        return connection.execute(text(f"SELECT count(*) FROM {table.name}")).scalar()

    sim.lose_replies(1, contains="COMMIT")
    with pytest.raises(orca.OutcomeUnknown, match="not asked for reads") as error:
        orca.run_transaction(e, read)
    assert not isinstance(error.value, sqlalchemy.exc.OperationalError)
    assert isinstance(error.value.orig, core.OutcomeUnknown)
    assert len(calls) == 1
    # resolve_commit=True asks before every COMMIT, reads too.
    sim.lose_replies(1, contains="COMMIT")
    assert orca.run_transaction(e, read, resolve_commit=True) == 0
    assert len(calls) == 2


def test_lost_commit_of_a_notify_only_transaction_is_resolved(sim, engines, caplog):
    """A transaction that only sent NOTIFY has no id until COMMIT, yet its
    COMMIT has an effect: NOTIFY counts as a write, an id is assigned before
    COMMIT, and the lost reply is resolved instead of guessed."""
    caplog.set_level(logging.INFO, logger="orca_db.retry")
    e = engines(sim)
    calls = []

    def notify(connection):
        calls.append(1)
        connection.exec_driver_sql("NOTIFY orca_sqltx, 'granule'")
        return "sent"

    sim.lose_replies(1, contains="COMMIT")
    assert orca.run_transaction(e, notify) == "sent"
    assert len(calls) == 1
    assert commit_resolutions(caplog) == ["committed"]


def test_lost_commit_with_resolution_off_is_unknown(sim, engines, table):
    e = engines(sim)
    sim.lose_replies(1, contains="COMMIT")
    with pytest.raises(orca.OutcomeUnknown):
        orca.run_transaction(e, lambda c: c.execute(table.insert, {"v": "a"}), resolve_commit=False)
    assert table.rows() == 1


@pytest.fixture
def blue_green(sim, postgres_server, table):
    """The simulator in front of a second PostgreSQL (the "blue" cluster,
    with the suite's role and the test's table); ``sim.switch()`` points new
    connections at the suite's own server (the "green" one), as a
    blue/green switchover does."""
    from django.db import connections

    blue, green = postgres_server, connections["default"].settings_dict
    user = green["USER"]
    password = "'" + green["PASSWORD"].replace("'", "''") + "'"
    if user == blue.superuser:
        blue.execute(f'ALTER ROLE "{user}" PASSWORD {password}')
    else:
        blue.execute(f'CREATE ROLE "{user}" SUPERUSER LOGIN PASSWORD {password}')
    blue.execute(f"CREATE TABLE {table.name} (id serial PRIMARY KEY, v text)")
    sim.switch_upstream("127.0.0.1", blue.port)
    sim.switch = lambda: sim.switch_upstream(green["HOST"], int(green["PORT"]))
    sim.blue = blue
    return sim


def test_lost_commit_is_not_resolved_against_another_cluster(blue_green, engines, table):
    """COMMIT committed on the blue cluster, its reply lost; new connections
    reach the green one, whose pg_xact_status speaks of another xid space:
    OutcomeUnknown, and fn is not run again."""
    e = engines(blue_green)
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(table.insert, {"v": "bluegreen"})
        blue_green.switch()  # this transaction's own connection stays on blue

    blue_green.lose_replies(1, contains="COMMIT")
    with pytest.raises(orca.OutcomeUnknown, match="another cluster"):
        orca.run_transaction(e, post)
    assert len(calls) == 1
    assert blue_green.blue.execute(f"SELECT count(*) FROM {table.name}") == [(1,)]
    assert table.rows() == 0  # nothing on green


@pytest.fixture
def conflict(table):
    """A row, and a function that meets 40001 (REPEATABLE READ) on its
    first ``times`` runs: another session updates the row after the run
    took its snapshot."""
    on_server(f"INSERT INTO {table.name} (v) VALUES ('start')")

    def make(times: int):
        calls = []

        def update(connection):
            calls.append(1)
            connection.execute(text(f"SELECT v FROM {table.name}")).all()
            if len(calls) <= times:
                on_server(f"UPDATE {table.name} SET v = 'other'")
            connection.execute(text(f"UPDATE {table.name} SET v = 'mine'"))
            return len(calls)

        return update, calls

    return make


def test_serialization_failure_runs_the_function_again(engines, table, conflict, events):
    e = engines(isolation_level="REPEATABLE READ")
    update, calls = conflict(1)
    assert orca.run_transaction(e, update) == 2
    assert on_server(f"SELECT v FROM {table.name}") == [("mine",)]
    assert transaction_events(events) == [("recovered", 2)]


def test_serialization_failure_surfaces_when_conflicts_are_not_retried(engines, table, conflict):
    e = engines(isolation_level="REPEATABLE READ")
    update, calls = conflict(1)
    with pytest.raises(sqlalchemy.exc.OperationalError) as error:
        orca.run_transaction(e, update, retry_conflicts=False)
    assert sim_sqlstate(error.value.orig) == "40001"
    assert not isinstance(error.value, orca.ScaleEventError)
    assert len(calls) == 1


def test_errors_of_the_function_surface_unchanged_and_roll_back(engines, table):
    e = engines()
    mistake = ValueError("the application's own")

    def fails(connection):
        connection.execute(table.insert, {"v": "a"})
        raise mistake

    with pytest.raises(ValueError) as error:
        orca.run_transaction(e, fails)
    assert error.value is mistake
    with pytest.raises(sqlalchemy.exc.ProgrammingError):
        orca.run_transaction(e, lambda c: c.execute(text("SELEC 1")))
    assert table.rows() == 0


def test_retries_exhausted_when_every_run_meets_a_scale_event(sim, engines, table, events):
    e = engines(sim, aurora={"max_attempts": 3})
    calls = []

    def post(connection):
        calls.append(1)
        connection.execute(table.insert, {"v": "a"})
        sim.scale_event()
        connection.execute(table.insert, {"v": "b"})

    with pytest.raises(orca.RetriesExhausted) as error:
        orca.run_transaction(e, post)
    # Nothing committed: running it again is right, so an OperationalError.
    assert isinstance(error.value, sqlalchemy.exc.OperationalError)
    assert isinstance(error.value.orig, core.RetriesExhausted)
    assert (len(calls), table.rows()) == (3, 0)
    assert transaction_events(events) == [("exhausted", 3)]


def test_commit_sent_as_sql_is_never_run_again(sim, engines, table):
    e = engines(sim)
    calls = []

    def commits_itself(connection):
        calls.append(1)
        connection.execute(table.insert, {"v": "a"})
        connection.exec_driver_sql("COMMIT")
        sim.scale_event()
        connection.execute(table.insert, {"v": "b"})

    with pytest.raises(orca.OutcomeUnknown, match="sent COMMIT"):
        orca.run_transaction(e, commits_itself)
    assert (len(calls), table.rows()) == (1, 1)


def test_a_nested_run_that_committed_is_never_run_again(sim, engines, table):
    """run_transaction inside fn commits on a connection of its own: when
    the outer transaction is then rolled back, running it again would
    commit the inner one twice."""
    e = engines(sim)
    calls = []

    def outer(connection):
        calls.append(1)
        orca.run_transaction(e, lambda inner: inner.execute(table.insert, {"v": "inner"}))
        connection.execute(table.insert, {"v": "outer"})
        sim.scale_event()
        connection.execute(table.insert, {"v": "lost"})

    with pytest.raises(orca.OutcomeUnknown, match="inside it committed"):
        orca.run_transaction(e, outer)
    assert (len(calls), table.rows()) == (1, 1)


def test_an_autocommit_engine_still_runs_fn_in_one_transaction(engines, table):
    """An engine made with isolation_level="AUTOCOMMIT" (for replayable
    reads): fn's statements would each commit on their own, and a second
    run would apply the first run's again. run_transaction opens a real
    transaction; the pooled connection goes back to autocommit."""
    e = engines(isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)
    count = f"SELECT count(*) FROM {table.name}"

    def post(connection):
        before = on_server(count)[0][0]
        connection.execute(table.insert, {"v": "a"})
        return on_server(count)[0][0] - before  # another session: not committed yet

    assert orca.run_transaction(e, post) == 0
    assert orca.run_transaction(sessionmaker(e), post) == 0
    assert table.rows() == 2
    with e.connect() as connection:
        assert connection.connection.dbapi_connection.autocommit


def test_random_faults_over_many_transactions_write_each_exactly_once(
    sim, engines, table, events, caplog
):
    """A hundred transactions (Core and ORM in turn), each meeting at random
    nothing, a scale event while fn runs, one before COMMIT, or a lost
    COMMIT reply: every one acknowledged is on the server once and whole
    (two rows), every OutcomeUnknown whole or absent, nothing else."""
    import random

    caplog.set_level(logging.INFO, logger="orca_db.retry")
    e = engines(sim)
    rng = random.Random(23)
    faults = ("none", "mid", "before_commit", "commit_reply")
    outcomes, chosen, extra = {}, [], {f: 0 for f in faults}

    for i in range(100):
        key, fault = f"k{i:03d}", rng.choice(faults)
        chosen.append(fault)
        runs = []

        def work(handle, key=key, fault=fault, runs=runs):
            runs.append(1)
            handle.execute(table.insert, {"v": key})
            if fault == "mid" and len(runs) == 1:
                sim.scale_event()
            handle.execute(table.insert, {"v": key})
            if fault == "before_commit" and len(runs) == 1:
                sim.scale_event()
            return key

        if fault == "commit_reply":
            sim.lose_replies(1, contains="COMMIT")
        target = e if i % 2 else sessionmaker(e)
        try:
            assert orca.run_transaction(target, work) == key
            outcomes[key] = "ok"
        except orca.OutcomeUnknown:
            outcomes[key] = "unknown"
        sim.lose_replies(0)
        extra[fault] += len(runs) - 1
    rows = dict(on_server(f"SELECT v, count(*) FROM {table.name} GROUP BY v"))
    for key, outcome in outcomes.items():
        assert rows.get(key) in ((2,) if outcome == "ok" else (None, 2)), (key, outcome)
    assert set(rows) <= set(outcomes)
    summary = {f: chosen.count(f) for f in faults}
    summary["unknown"] = list(outcomes.values()).count("unknown")
    summary["reruns"] = sum(ev.attempts - 1 for ev in events if ev.phase == "transaction")
    summary["runs of fn beyond the first, by fault"] = extra
    resolved = commit_resolutions(caplog)
    summary["lost commits resolved"] = {r: resolved.count(r) for r in set(resolved)}
    print(f"random faults: {summary}")
    # Every lost COMMIT reply was resolved as committed, and fn not run again.
    assert summary["unknown"] == extra["commit_reply"] == 0
    assert resolved == ["committed"] * chosen.count("commit_reply")


def test_needs_the_plugin(engines):
    with pytest.raises(sqlalchemy.exc.ArgumentError, match="orca_db"):
        orca.run_transaction(engines(plugin=False), lambda c: None)


def test_orca_decorator_around_run_transaction_never_writes_twice(sim, engines, table):
    """ORCA's decorator left on a function that now calls run_transaction:
    an unresolvable COMMIT is OutcomeUnknown, which it does not re-run."""
    e = engines(sim)
    calls = []

    @retry_operational_error(max_retries=3, backoff_in_seconds=0.001, jitter=0.001)
    def post_to_database():
        calls.append(1)
        orca.run_transaction(e, lambda c: c.execute(table.insert, {"v": "a"}), resolve_commit=False)

    sim.lose_replies(1, contains="COMMIT")
    with pytest.raises(orca.OutcomeUnknown):
        post_to_database()
    assert (len(calls), table.rows()) == (1, 1)


# ----- ORM: fn(session) -------------------------------------------------------------------


def model_of(table):
    class Base(DeclarativeBase):
        pass

    return type(
        "Granule",
        (Base,),
        {
            "__tablename__": table.name,
            "id": Column(Integer, primary_key=True),
            "v": Column(Text),
        },
    )


def test_orm_session_scale_event_runs_again_once(sim, engines, table, events):
    e = engines(sim)
    Granule = model_of(table)
    factory = sessionmaker(e, expire_on_commit=False)
    calls = []

    def post(session):
        calls.append(1)
        granule = Granule(v="g")
        session.add(granule)
        session.flush()
        if len(calls) == 1:
            sim.scale_event()
        assert session.scalar(select(func.count()).select_from(Granule)) == 1
        return granule

    granule = orca.run_transaction(factory, post)
    assert granule.v == "g" and granule.id is not None
    assert (len(calls), table.rows()) == (2, 1)
    assert transaction_events(events) == [("recovered", 2)]


def test_orm_session_lost_commit_reply_resolved_as_committed(sim, engines, table):
    e = engines(sim)
    Granule = model_of(table)
    calls = []

    def post(session):
        calls.append(1)
        session.add(Granule(v="g"))  # flushed by run_transaction, before COMMIT

    sim.lose_replies(1, contains="COMMIT")
    orca.run_transaction(sessionmaker(e), post)
    assert sim.stats["lost_replies"] == 1
    assert (len(calls), table.rows()) == (1, 1)


def test_orm_session_errors_surface_unchanged(engines, table):
    e = engines()
    Granule = model_of(table)

    def fails(session):
        session.add(Granule(v="g"))
        session.flush()
        raise KeyError("own")

    with pytest.raises(KeyError):
        orca.run_transaction(sessionmaker(e), fails)
    assert table.rows() == 0


# ----- Lambda ---------------------------------------------------------------------------------


class LambdaContext:
    """What Lambda passes a handler, as far as the wrapper reads it."""

    def __init__(self, remaining_ms: int):
        self.aws_request_id = f"req-{uuid.uuid4().hex[:8]}"
        self._ends_at = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends_at - time.monotonic()) * 1000))


def backends_of(application_name: str) -> int:
    return on_server(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application_name]
    )[0][0]


def test_lambda_handler_closes_every_connection_when_the_invocation_ends(engines, table):
    name = f"orca-lambda-{uuid.uuid4().hex[:8]}"
    e = engines(connect_args={"application_name": name})
    kept = []

    @orca.lambda_handler(e)
    def handler(event, context):
        orca.run_transaction(e, lambda c: c.execute(table.insert, {"v": event["v"]}))
        # A connection and a session the handler forgets, each in an open
        # transaction (kept referenced: no garbage collection closes them).
        forgotten = e.connect()
        forgotten.execute(text("SELECT 1"))
        session = Session(e)
        session.execute(text("SELECT 1"))
        kept.extend((forgotten, session))
        assert backends_of(name) == 2
        return "ok"

    assert handler({"v": "a"}, LambdaContext(60_000)) == "ok"
    wait_until(lambda: backends_of(name) == 0)
    assert table.rows() == 1
    # The next invocation works: the forgotten connection is gone.
    assert handler({"v": "b"}, LambdaContext(60_000)) == "ok"
    wait_until(lambda: backends_of(name) == 0)
    assert table.rows() == 2


def test_without_the_wrapper_a_connection_stays_open(engines):
    """What the wrapper removes: the pool keeps the connection, so the
    cluster cannot pause while the function is frozen."""
    name = f"orca-lambda-{uuid.uuid4().hex[:8]}"
    e = engines(connect_args={"application_name": name})

    def handler(event, context):
        orca.run_transaction(e, lambda c: c.execute(text("SELECT 1")))

    handler({}, LambdaContext(60_000))
    assert backends_of(name) == 1


def test_lambda_handler_closes_connections_when_the_handler_raises(engines):
    name = f"orca-lambda-{uuid.uuid4().hex[:8]}"
    e = engines(connect_args={"application_name": name})

    @orca.lambda_handler(e)
    def handler(event, context):
        connection = e.connect()
        connection.execute(text("SELECT 1"))
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        handler({}, LambdaContext(60_000))
    wait_until(lambda: backends_of(name) == 0)


def test_lambda_handler_caps_every_wait_at_the_time_left(sim, engines, events):
    e = engines(sim, aurora={"deadline": 30})
    context = LambdaContext(2_500)  # 1.5 s once the 1 s margin is kept back
    outcome = {}

    @orca.lambda_handler(e)
    def handler(event, context):
        started = time.monotonic()
        try:
            orca.run_transaction(e, lambda c: c.execute(text("SELECT 1")))
        except orca.RetriesExhausted as error:
            outcome["error"] = error
        outcome["took"] = time.monotonic() - started

    sim.pause()
    handler({}, context)
    assert isinstance(outcome["error"], orca.RetriesExhausted)
    print(f"lambda cap: RetriesExhausted after {outcome['took']:.2f} s (1.5 s cap, 30 s deadline)")
    assert outcome["took"] < 6.0, outcome
    assert [e.lambda_request_id for e in events] == [context.aws_request_id]


def test_lambda_handler_checks_its_arguments(engines):
    with pytest.raises(TypeError):
        orca.lambda_handler()
    with pytest.raises(ValueError):
        orca.lambda_handler(engines(), margin_ms=-1)
