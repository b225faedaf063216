"""Rules 3, 4 and 5 of docs/retry-safety.md, tried as an adversarial
application would, on a real server with real faults (the simulator's lost
replies, silence and dropped connections):

3. every replay is guarded: a replayed read runs under READ ONLY whatever
   cursor it came from (a server-side cursor, ``QuerySet.iterator()``);
4. an unknown transaction state is an open transaction: a connection that
   broke outside a statement (a server-side cursor's fetch, the driver
   used directly) while a transaction may have been open refuses work until
   the application ends the transaction;
5. commit resolution never guesses: a transaction with no xid yet (only a
   NOTIFY) is resolved, not called committed, and a lost COMMIT is never
   resolved against another cluster (a blue/green switchover)."""

from __future__ import annotations

import pytest
from django.db import connection, connections, transaction

from orca_db.backends.aurora.base import DatabaseWrapper
from orca_db.exceptions import OutcomeUnknown, TransactionRolledBack
from orca_db.transaction import retry_atomic
from tests import test_lost_reply
from tests.conftest import admin_connection
from tests.faults import admin_run, admin_value, notifications, on_the_server
from tests.test_lost_reply import ALIAS, effects, run

lossy = test_lost_reply.lossy

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def side_effect_view(lossy):
    """A view whose rows come from a function that writes: nothing in the
    statement text tells that reading it has a side effect."""
    with on_the_server(
        "CREATE VIEW lost_view AS SELECT lost_f('view') AS x; "
        "CREATE VIEW lost_quiet_view AS SELECT generate_series(1, 3) AS x",
        "DROP VIEW lost_view; DROP VIEW lost_quiet_view",
    ):
        yield lossy


# ----- rule 3: every replay is guarded ----------------------------------------------


def test_a_read_through_a_server_side_cursor_is_replayed_under_read_only(side_effect_view):
    """QuerySet.iterator() reads through a named cursor (WITH HOLD in
    autocommit). A lost reply to its DECLARE must not run the view's
    function a second time: the replay runs READ ONLY, the server refuses
    the write, the caller learns the outcome is unknown."""
    side_effect_view.lose_replies(1, contains="lost_view")
    cursor = connections[ALIAS].chunked_cursor()
    try:
        with pytest.raises(OutcomeUnknown):
            cursor.execute("SELECT x FROM lost_view")
            cursor.fetchmany(10)
    finally:
        cursor.close()
    assert side_effect_view.stats["lost_replies"] == 1
    assert effects("view") == 1
    assert run("SELECT 1") == [(1,)]  # and the connection goes on


def test_a_read_through_a_plain_cursor_over_the_same_view_runs_once(side_effect_view):
    side_effect_view.lose_replies(1, contains="lost_view")
    with pytest.raises(OutcomeUnknown):
        run("SELECT x FROM lost_view")
    assert effects("view") == 1


def test_a_harmless_read_through_a_server_side_cursor_is_still_replayed(side_effect_view, events):
    side_effect_view.lose_replies(1, contains="lost_quiet_view")
    cursor = connections[ALIAS].chunked_cursor()
    try:
        cursor.execute("SELECT x FROM lost_quiet_view ORDER BY x")
        assert cursor.fetchmany(10) == [(1,), (2,), (3,)]
    finally:
        cursor.close()
    assert side_effect_view.stats["lost_replies"] == 1
    assert [(e.phase, e.outcome, e.attempts) for e in events] == [("execute", "recovered", 2)]


def test_a_server_side_cursor_read_lost_twice_is_replayed_again(side_effect_view, events):
    side_effect_view.lose_replies(2, contains="lost_quiet_view")
    cursor = connections[ALIAS].chunked_cursor()
    try:
        cursor.execute("SELECT x FROM lost_quiet_view ORDER BY x")
        assert cursor.fetchmany(10) == [(1,), (2,), (3,)]
    finally:
        cursor.close()
    assert side_effect_view.stats["lost_replies"] == 2
    assert [(e.phase, e.outcome, e.attempts) for e in events] == [("execute", "recovered", 3)]


def test_callproc_is_never_replayed(lossy):
    """callproc goes to the driver directly: a lost reply is not replayed,
    whatever it called; the connection it broke then refuses until the
    application ends what may have been a transaction (rule 4)."""
    lossy.lose_replies(1, contains="lost_f")
    db = connections[ALIAS]
    with pytest.raises(Exception), db.cursor() as cursor:  # noqa: B017
        cursor.callproc("lost_f", ["callproc"])
    assert effects("callproc") == 1
    with pytest.raises(TransactionRolledBack):
        run("SELECT 1")
    db.rollback()
    assert run("SELECT 1") == [(1,)]


# ----- rule 4: an unknown transaction state is an open transaction -------------------


def _lose_a_fetch(sim, sql: str = "SELECT x FROM lost_quiet_view") -> None:
    """A server-side cursor whose FETCH loses the connection: the error
    comes from the fetch, outside any execute, and libpq then reports the
    transaction status as UNKNOWN. The application catches it."""
    sim.lose_replies(1, contains="FETCH")
    cursor = connections[ALIAS].chunked_cursor()
    cursor.execute(sql)
    with pytest.raises(Exception):  # noqa: B017 (whatever the driver says)
        cursor.fetchmany(10)
    assert sim.stats["lost_replies"] == 1


@pytest.fixture
def lost_fetch(side_effect_view):
    return side_effect_view


def test_a_manual_transaction_whose_fetch_lost_the_connection_refuses_the_rest(lost_fetch):
    db = connections[ALIAS]
    db.set_autocommit(False)
    try:
        cursor = db.cursor()
        cursor.execute("INSERT INTO lost_effects (what) VALUES ('fetch-a')")
        _lose_a_fetch(lost_fetch)
        with pytest.raises(TransactionRolledBack):
            cursor.execute("INSERT INTO lost_effects (what) VALUES ('fetch-b')")
        with pytest.raises(TransactionRolledBack):
            db.commit()
        cursor.close()
    finally:
        db.set_autocommit(True)
    assert effects("fetch-a") == 0 and effects("fetch-b") == 0


def test_commit_right_after_a_lost_fetch_says_rolled_back(lost_fetch):
    db = connections[ALIAS]
    db.set_autocommit(False)
    try:
        with db.cursor() as cursor:
            cursor.execute("INSERT INTO lost_effects (what) VALUES ('fetch-commit')")
        _lose_a_fetch(lost_fetch)
        with pytest.raises(TransactionRolledBack):
            db.commit()
        with db.cursor() as cursor:  # a new transaction, on a new connection
            cursor.execute("INSERT INTO lost_effects (what) VALUES ('fetch-after')")
        db.commit()
    finally:
        db.set_autocommit(True)
    assert effects("fetch-commit") == 0 and effects("fetch-after") == 1


def test_begin_as_sql_whose_fetch_lost_the_connection_refuses_until_rollback(lost_fetch):
    """Autocommit on, BEGIN sent as SQL: Django knows of no transaction,
    libpq's UNKNOWN hides that one was open. The next INSERT must not be
    committed on its own on a new connection."""
    run("BEGIN")
    run("INSERT INTO lost_effects (what) VALUES ('begin-a')")
    _lose_a_fetch(lost_fetch)
    with pytest.raises(TransactionRolledBack):
        run("INSERT INTO lost_effects (what) VALUES ('begin-b')")
    run("ROLLBACK")
    run("INSERT INTO lost_effects (what) VALUES ('begin-c')")
    assert effects("begin-a") == 0 and effects("begin-b") == 0 and effects("begin-c") == 1


def test_retry_atomic_after_a_lost_fetch_inside_begin_refuses(lost_fetch):
    """retry_atomic called while libpq says UNKNOWN after BEGIN as SQL: the
    transaction it would join may have been open; it refuses, as every
    statement does, instead of starting on a new connection."""
    run("BEGIN")
    run("INSERT INTO lost_effects (what) VALUES ('ra-a')")
    _lose_a_fetch(lost_fetch)
    runs = []

    def work():
        runs.append(1)
        run("INSERT INTO lost_effects (what) VALUES ('ra-b')")

    with pytest.raises(TransactionRolledBack):
        retry_atomic(work, using=ALIAS)()
    run("ROLLBACK")
    retry_atomic(work, using=ALIAS)()
    assert effects("ra-a") == 0 and effects("ra-b") == 1


@pytest.mark.parametrize("after", ["insert", "nothing"])
def test_retry_atomic_whose_body_caught_a_lost_fetch_runs_again(lost_fetch, after):
    """The function catches the error of a fetch that lost the connection
    and goes on (or returns at once): its transaction is gone; it is run
    again as a whole, never committed in part."""
    runs = []

    def work():
        runs.append(1)
        run(f"INSERT INTO lost_effects (what) VALUES ('caught-{after}-a')")
        if len(runs) == 1:
            _lose_a_fetch(lost_fetch)
        if after == "insert":
            run(f"INSERT INTO lost_effects (what) VALUES ('caught-{after}-b')")

    retry_atomic(work, using=ALIAS)()
    assert len(runs) == 2
    assert effects(f"caught-{after}-a") == 1
    assert effects(f"caught-{after}-b") == (1 if after == "insert" else 0)


def test_a_driver_call_that_lost_the_connection_in_a_manual_transaction_refuses(lossy):
    """The connection broke under the driver used directly
    (``connection.connection``): the next statement through Django must not
    start a fresh transaction."""
    db = connections[ALIAS]
    db.set_autocommit(False)
    try:
        cursor = db.cursor()
        cursor.execute("INSERT INTO lost_effects (what) VALUES ('driver-a')")
        lossy.lose_replies(1, contains="driver-direct")
        with pytest.raises(Exception):  # noqa: B017
            with db.connection.cursor() as raw:
                raw.execute("SELECT 'driver-direct'")
        with pytest.raises(TransactionRolledBack):
            cursor.execute("INSERT INTO lost_effects (what) VALUES ('driver-b')")
        db.rollback()
        cursor = db.cursor()
        cursor.execute("INSERT INTO lost_effects (what) VALUES ('driver-c')")
        db.commit()
    finally:
        db.set_autocommit(True)
    assert [effects(w) for w in ("driver-a", "driver-b", "driver-c")] == [0, 0, 1]


def test_an_atomic_block_whose_fetch_lost_the_connection_commits_nothing(lost_fetch):
    db = connections[ALIAS]
    with pytest.raises(TransactionRolledBack), transaction.atomic(using=ALIAS):
        cursor = db.cursor()
        cursor.execute("INSERT INTO lost_effects (what) VALUES ('atomic-a')")
        _lose_a_fetch(lost_fetch)
        cursor.execute("INSERT INTO lost_effects (what) VALUES ('atomic-b')")
    assert effects("atomic-a") == 0 and effects("atomic-b") == 0
    assert run("SELECT 1") == [(1,)]  # leaving the block is a new start


# ----- rule 5: commit resolution never guesses ---------------------------------------


@pytest.fixture
def listener():
    admin = admin_connection()
    admin.cursor().execute("LISTEN orca_rule5")
    yield admin
    admin.close()


def _drop_before_commit(sim):
    """An execute wrapper: once retry_atomic has read the transaction's id
    (the last statement before COMMIT), the network drops every connection:
    COMMIT never reaches the server, and the client sees its connection end
    while waiting for COMMIT's reply (a bare EOF, which proves nothing)."""
    fired = []

    def wrapper(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not fired and "xact_id" in sql:
            fired.append(1)
            sim.drop_connections()
        return result

    return wrapper


def test_a_notify_only_transaction_whose_commit_never_arrived_is_run_again(lossy, listener):
    """No xid before COMMIT (NOTIFY takes none): the lost COMMIT was taken
    for a harmless one, reported as success and its on_commit hooks run,
    though nothing was committed and no notification sent."""
    db = connections[ALIAS]
    runs, hooks = [], []

    def work():
        runs.append(1)
        with db.cursor() as cursor:
            cursor.execute("NOTIFY orca_rule5, 'once'")
        transaction.on_commit(lambda: hooks.append(1), using=ALIAS)

    with db.execute_wrapper(_drop_before_commit(lossy)):
        retry_atomic(work, using=ALIAS)()
    assert len(runs) == 2
    assert hooks == [1]
    assert notifications(listener, "orca_rule5") == ["once"]


@pytest.fixture
def two_clusters(aurora_simulator, postgres_server):
    """The simulator in front of a second PostgreSQL (the "blue" cluster,
    with the suite's user, password and database), a table on both;
    ``switch()`` points it at the suite's own server (the "green" one) for
    every new connection, as a blue/green switchover does."""
    blue, green = postgres_server, connection.settings_dict
    user, name = green["USER"], green["NAME"]
    password = "'" + green["PASSWORD"].replace("'", "''") + "'"
    if user == blue.superuser:
        blue.execute(f'ALTER ROLE "{user}" PASSWORD {password}')
    else:
        blue.execute(f'CREATE ROLE "{user}" SUPERUSER LOGIN PASSWORD {password}')
    blue.execute(f'CREATE DATABASE "{name}" OWNER "{user}"')
    sql = "CREATE TABLE rule5_rows (what text NOT NULL)"
    blue.execute(sql, dbname=name)
    admin_run(sql)
    aurora_simulator.switch_upstream("127.0.0.1", blue.port)
    connections["blue"] = DatabaseWrapper(aurora_simulator.django_settings(green), "blue")

    def switch():
        aurora_simulator.switch_upstream(green["HOST"], int(green["PORT"]))

    aurora_simulator.switch = switch
    aurora_simulator.blue = blue
    aurora_simulator.dbname = name
    yield aurora_simulator
    connections["blue"].close()
    del connections["blue"]
    admin_run("DROP TABLE rule5_rows")


def test_a_lost_commit_is_not_resolved_against_another_cluster(two_clusters):
    """COMMIT committed on the blue cluster, its reply lost; the switchover
    happened before the question is asked on a new connection: the green
    cluster's pg_xact_status speaks of another xid space, and must not be
    believed."""
    two_clusters.lose_replies(1, contains="COMMIT")
    runs, hooks = [], []
    db = connections["blue"]

    def work():
        runs.append(1)
        with db.cursor() as cursor:
            cursor.execute("INSERT INTO rule5_rows VALUES ('bluegreen')")
        transaction.on_commit(lambda: hooks.append(1), using="blue")
        # New connections go to the green cluster from now on; this
        # transaction's own connection stays on blue.
        two_clusters.switch()

    with pytest.raises(OutcomeUnknown, match="another cluster"):
        retry_atomic(work, using="blue")()
    assert runs == [1] and hooks == []
    assert two_clusters.blue.execute(
        "SELECT count(*) FROM rule5_rows", dbname=two_clusters.dbname
    ) == [(1,)]


def test_the_cluster_identity_is_read_once_per_connection(lossy):
    """Its cost: no statement of its own, once per connection, in the round
    trip that reads the transaction id before COMMIT."""
    from django.test.utils import CaptureQueriesContext

    db = connections[ALIAS]

    def work():
        run("INSERT INTO lost_effects (what) VALUES ('identity')")

    with CaptureQueriesContext(db) as first:
        retry_atomic(work, using=ALIAS)()
    with CaptureQueriesContext(db) as second:
        retry_atomic(work, using=ALIAS)()
    assert len(first) == len(second)
    assert sum("system_identifier" in q["sql"] for q in first) == 1
    assert sum("system_identifier" in q["sql"] for q in second) == 0
    db.close()
    with CaptureQueriesContext(db) as third:
        retry_atomic(work, using=ALIAS)()
    assert sum("system_identifier" in q["sql"] for q in third) == 1


# ----- rule 3 on the Data API engine --------------------------------------------------


@pytest.fixture
def data_api_view(data_api_connection):
    with on_the_server(
        "CREATE TABLE rule3_effects (what text NOT NULL); "
        "CREATE FUNCTION rule3_f(what text) RETURNS int LANGUAGE plpgsql AS "
        "$$ BEGIN INSERT INTO rule3_effects VALUES (what); RETURN 1; END $$; "
        "CREATE VIEW rule3_view AS SELECT rule3_f('data-api') AS x",
        "DROP VIEW rule3_view; DROP FUNCTION rule3_f(text); DROP TABLE rule3_effects",
    ):
        yield data_api_connection


def _rule3_effects() -> int:
    return admin_value("SELECT count(*) FROM rule3_effects")


def test_a_data_api_read_is_replayed_under_read_only(data_api_view, data_api_endpoint, events):
    """The Data API engine replays a read whose answer was lost: through a
    view that writes, the replay must not write a second time."""
    with data_api_view.cursor() as cursor:
        cursor.execute("SELECT 1")  # the connection's set-up calls are made
        data_api_endpoint.lose_replies(1)
        with pytest.raises(OutcomeUnknown):
            cursor.execute("SELECT x FROM rule3_view")
    assert _rule3_effects() == 1
    with data_api_view.cursor() as cursor:  # and the connection goes on
        cursor.execute("SELECT 1")
        assert cursor.fetchall() == [(1,)]


@pytest.fixture
def unprivileged(aurora_simulator):
    """A login role without the right to call pg_control_system() (as a
    provider may arrange it), through the simulator."""
    admin = admin_connection()
    cursor = admin.cursor()
    cursor.execute(
        "DROP ROLE IF EXISTS rule5_app; "
        "CREATE ROLE rule5_app LOGIN PASSWORD 'rule5-app'; "
        "CREATE TABLE rule5_own (what text NOT NULL); "
        "GRANT SELECT, INSERT ON rule5_own TO rule5_app; "
        "REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC"
    )
    settings = aurora_simulator.django_settings(
        {**connection.settings_dict, "USER": "rule5_app", "PASSWORD": "rule5-app"}
    )
    connections["rule5_app"] = DatabaseWrapper(settings, "rule5_app")
    yield aurora_simulator
    connections["rule5_app"].close()
    del connections["rule5_app"]
    cursor.execute(
        "GRANT EXECUTE ON FUNCTION pg_control_system() TO PUBLIC; "
        "DROP TABLE rule5_own; DROP ROLE rule5_app"
    )
    admin.close()


def test_a_lost_commit_on_a_cluster_that_cannot_be_identified_is_outcome_unknown(unprivileged):
    """Without the cluster's identity nothing proves the question reaches
    the transaction's cluster: OutcomeUnknown, and the application's
    transaction never failed on the attempt to read it."""
    unprivileged.lose_replies(1, contains="COMMIT")
    runs, hooks = [], []
    db = connections["rule5_app"]

    def work():
        runs.append(1)
        with db.cursor() as cursor:
            cursor.execute("INSERT INTO rule5_own VALUES ('anonymous')")
        transaction.on_commit(lambda: hooks.append(1), using="rule5_app")

    with pytest.raises(OutcomeUnknown, match="identity"):
        retry_atomic(work, using="rule5_app")()
    assert runs == [1] and hooks == []
    # it did commit: only the answer is unknown
    assert admin_value("SELECT count(*) FROM rule5_own") == 1
