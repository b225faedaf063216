"""Every class of statement under a lost reply: the server runs it to its end
(in autocommit: commits it), then the reply never reaches the client, the
fault that makes an outcome unknown. Each side effect runs exactly once, or
the caller gets OutcomeUnknown (TransactionRolledBack inside a transaction,
where the server rolled everything back); a read is run again and answers.

The simulator (``sim.lose_replies``) cuts the client connection after the
server's reply; both drivers see a plain disconnect, no SQLSTATE."""

from __future__ import annotations

import pytest
from django.db import connection, connections, transaction

from orca_db.backends.aurora.base import DatabaseWrapper
from orca_db.exceptions import OutcomeUnknown, TransactionRolledBack
from orca_db.transaction import retry_atomic
from tests.conftest import admin_connection
from tests.faults import admin_value

pytestmark = pytest.mark.django_db(transaction=True)

ALIAS = "lossy"


@pytest.fixture
def lossy(aurora_simulator):
    """A connection through the simulator, and a scratch schema: a counter
    table, a sequence, functions with side effects."""
    admin = admin_connection()
    cur = admin.cursor()
    cur.execute(
        """
        DROP TABLE IF EXISTS lost_effects;
        CREATE TABLE lost_effects (id serial PRIMARY KEY, what text NOT NULL);
        CREATE TABLE IF NOT EXISTS lost_counter (n int NOT NULL);
        TRUNCATE lost_counter; INSERT INTO lost_counter VALUES (0);
        DROP SEQUENCE IF EXISTS lost_seq; CREATE SEQUENCE lost_seq;
        CREATE OR REPLACE FUNCTION lost_f(what text) RETURNS int LANGUAGE plpgsql AS
            $$ BEGIN INSERT INTO lost_effects (what) VALUES (what); RETURN 1; END $$;
        CREATE OR REPLACE FUNCTION lost_rows(what text) RETURNS SETOF int LANGUAGE plpgsql AS
            $$ BEGIN INSERT INTO lost_effects (what) VALUES (what); RETURN NEXT 1; END $$;
        CREATE OR REPLACE PROCEDURE lost_p(what text) LANGUAGE sql AS
            $$ INSERT INTO lost_effects (what) VALUES (what) $$;
        """
    )
    admin.commit()
    connections[ALIAS] = DatabaseWrapper(
        aurora_simulator.django_settings(connection.settings_dict), ALIAS
    )
    connections[ALIAS].ensure_connection()
    yield aurora_simulator
    connections[ALIAS].close()
    del connections[ALIAS]
    cur.execute(
        "DROP TABLE lost_effects; DROP TABLE lost_counter; DROP SEQUENCE lost_seq; "
        "DROP FUNCTION lost_f(text); DROP FUNCTION lost_rows(text); DROP PROCEDURE lost_p(text)"
    )
    admin.commit()
    admin.close()


def effects(what: str) -> int:
    return admin_value("SELECT count(*) FROM lost_effects WHERE what = %s", [what])


def run(sql: str, params=None, *, many: bool = False):
    with connections[ALIAS].cursor() as cursor:
        if many:
            cursor.executemany(sql, params)
            return None
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


# ----- reads: run again, answer ------------------------------------------------------


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT 40 + 2", [(42,)]),
        ("SELECT count(*) FROM lost_effects", [(0,)]),
        ("SELECT 'a--b', '/* x */', $q$--$q$", [("a--b", "/* x */", "--")]),
        ("WITH t AS (SELECT 1 AS x) SELECT x FROM t", [(1,)]),
        ("SHOW search_path", [('"$user", public',)]),
    ],
)
def test_a_read_is_run_again_and_answers(lossy, events, sql, expected):
    lossy.lose_replies(1, contains=sql[:12])
    assert run(sql) == expected
    assert lossy.stats["lost_replies"] == 1
    assert [(e.phase, e.outcome, e.attempts) for e in events] == [("execute", "recovered", 2)]


# ----- writes: applied once, the caller told it is unknown ---------------------------


@pytest.mark.parametrize(
    "what, sql",
    [
        ("insert", "INSERT INTO lost_effects (what) VALUES ('insert')"),
        (
            "cte",
            "WITH i AS (INSERT INTO lost_effects (what) VALUES ('cte') RETURNING 1) "
            "SELECT * FROM i",
        ),  # fmt: skip
        ("function", "SELECT lost_f('function')"),
        ("comment-literal", "SELECT 'a--b', lost_f('comment-literal')"),
        ("open-comment-literal", "SELECT '/*', lost_f('open-comment-literal'), '*/'"),
        ("dollar-literal", "SELECT $q$--$q$, lost_f('dollar-literal')"),
        ("quoted-name", "SELECT \"lost_f\"('quoted-name')"),
        ("from-function", "SELECT * FROM lost_rows('from-function')"),
        ("procedure", "CALL lost_p('procedure')"),
        ("do-block", "DO $$ BEGIN INSERT INTO lost_effects (what) VALUES ('do-block'); END $$"),
    ],
)
def test_a_write_runs_once_and_is_outcome_unknown(lossy, what, sql):
    lossy.lose_replies(1, contains=what)
    with pytest.raises(OutcomeUnknown):
        run(sql)
    assert effects(what) == 1


def test_an_update_is_applied_once(lossy):
    lossy.lose_replies(1, contains="lost_counter")
    with pytest.raises(OutcomeUnknown):
        run("UPDATE lost_counter SET n = n + 1")
    assert admin_value("SELECT n FROM lost_counter") == 1


def test_a_sequence_advances_once(lossy):
    lossy.lose_replies(1, contains="nextval")
    with pytest.raises(OutcomeUnknown):
        run("SELECT nextval('lost_seq')")
    assert admin_value("SELECT last_value FROM lost_seq") == 1


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pg_notify('lost_channel', 'x')",
        "SELECT pg_try_advisory_lock(4242)",
        "SELECT n FROM lost_counter FOR UPDATE",
        "SELECT n FROM lost_counter FOR SHARE",
        "SELECT n FROM lost_counter FOR KEY SHARE",
        "SELECT setval('lost_seq', 10)",
    ],
)
def test_reads_with_side_effects_are_not_run_again(lossy, events, sql):
    lossy.lose_replies(1, contains=sql[7:20])
    with pytest.raises(OutcomeUnknown):
        run(sql)
    assert [(e.phase, e.outcome, e.attempts) for e in events] == [("execute", "raised", 1)]


def test_executemany_is_not_run_again(lossy):
    lossy.lose_replies(1, contains="many")
    with pytest.raises(OutcomeUnknown):
        run(
            "INSERT INTO lost_effects (what) VALUES (%s)",
            [("many",), ("many",), ("many",)],
            many=True,
        )
    # Some statements of the batch ran, none twice.
    assert effects("many") <= 3


# ----- transactions -------------------------------------------------------------------


def test_a_statement_in_a_transaction_rolls_it_back(lossy):
    lossy.lose_replies(1, contains="in-txn-b")
    with pytest.raises(TransactionRolledBack), transaction.atomic(using=ALIAS):
        run("INSERT INTO lost_effects (what) VALUES ('in-txn-a')")
        run("INSERT INTO lost_effects (what) VALUES ('in-txn-b')")
    assert effects("in-txn-a") == 0 and effects("in-txn-b") == 0


def test_a_lost_commit_in_atomic_is_outcome_unknown_and_committed_once(lossy):
    lossy.lose_replies(1, contains="COMMIT")
    with pytest.raises(OutcomeUnknown), transaction.atomic(using=ALIAS):
        run("INSERT INTO lost_effects (what) VALUES ('commit-atomic')")
    assert effects("commit-atomic") == 1


def test_a_lost_commit_in_retry_atomic_is_resolved_and_not_run_again(lossy, events):
    lossy.lose_replies(1, contains="COMMIT")
    runs = []

    @retry_atomic(using=ALIAS)
    def work():
        runs.append(1)
        run("INSERT INTO lost_effects (what) VALUES ('commit-retry')")

    work()
    assert runs == [1]  # resolved as committed: not run again
    assert effects("commit-retry") == 1
    assert [(e.phase, e.outcome) for e in events] == [("transaction", "recovered")]


def test_a_lost_reply_in_retry_atomic_runs_the_whole_transaction_again(lossy):
    lossy.lose_replies(1, contains="whole-b")
    runs = []

    @retry_atomic(using=ALIAS)
    def work():
        runs.append(1)
        run("INSERT INTO lost_effects (what) VALUES ('whole-a')")
        run("INSERT INTO lost_effects (what) VALUES ('whole-b')")

    work()
    assert len(runs) == 2
    assert effects("whole-a") == 1 and effects("whole-b") == 1


# ----- defence in depth ----------------------------------------------------------------


def test_a_write_misjudged_as_a_read_fails_in_read_only_instead_of_running_twice(
    lossy, monkeypatch
):
    """Should the classifier ever call a write a read, the replay runs in a
    READ ONLY transaction: the server refuses it, the caller learns the
    outcome is unknown, and the write is on the server once."""
    import orca_db.sql

    monkeypatch.setattr(orca_db.sql, "is_replayable_read", lambda sql: True, raising=False)
    lossy.lose_replies(1, contains="misjudged")
    with pytest.raises(OutcomeUnknown, match="tried to write"):
        run("SELECT lost_f('misjudged')")
    assert effects("misjudged") == 1
