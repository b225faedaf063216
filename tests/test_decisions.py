"""The decision table of orca_db.decisions, without a database.

Every row names the numbered fact it rests on (``F1`` to ``F7``: the
module's docstring and docs/retry-safety.md number them the same way).
The failures are what orca_db.classify makes of real driver exceptions
(tests/driver_errors.py: the driver of this run, the texts Aurora and
libpq write); the statements are real SQL texts, classified by orca_db.sql
as the backend does.
"""

from __future__ import annotations

import itertools
import re

import pytest

from orca_db.classify import SERVER_CLOSED, Failure, classify
from orca_db.conf import RetrySettings
from orca_db.decisions import (
    Verdict,
    after_statement_failure,
    commit_lost,
    may_commit,
    rerun_transaction,
)
from tests.driver_errors import Database, composition, lost_reply, not_sent, server_error

# ----- failures, as classify() makes them of real driver errors ------------

#: Aurora v1's scale event, as psycopg 3 shows it (and psycopg2 with a code).
SCALE_EVENT = classify(
    server_error(
        "AdminShutdown", "57P01", "terminating connection due to serverless scale event timeout"
    )
)
#: The same, as psycopg2 shows it over SSL: the text, no SQLSTATE.
SCALE_EVENT_TEXT = classify(
    Database.OperationalError(
        "terminating connection due to serverless scale event timeout\n"
        "SSL connection has been closed unexpectedly"
    )
)
#: pg_terminate_backend, a fast shutdown.
ADMIN_COMMAND = classify(
    server_error("AdminShutdown", "57P01", "terminating connection due to administrator command")
)
STARTING_UP = classify(
    server_error("CannotConnectNow", "57P03", "the database system is starting up")
)
#: Sent from a signal handler at any moment: proves nothing.
CRASH = classify(
    server_error(
        "CrashShutdown",
        "57P02",
        "terminating connection because of crash of another server process",
    )
)
IDLE_IN_TRANSACTION = classify(
    server_error(
        "IdleInTransactionSessionTimeout",
        "25P03",
        "terminating connection due to idle-in-transaction timeout",
    )
)
IDLE_SESSION = classify(
    server_error(
        "IdleSessionTimeout", "57P05", "terminating connection due to idle-session timeout"
    )
)
RESOLUTION_UNKNOWN = classify(
    server_error("TransactionResolutionUnknown", "08007", "transaction resolution unknown")
)
#: libpq lost the connection with the statement in flight.
LOST_REPLY = classify(lost_reply())
#: psycopg2's bare DatabaseError when TCP keepalives give up.
SSL_EOF = classify(Database.DatabaseError("SSL SYSCALL error: EOF detected"))
#: The driver's connection was already closed on our side.
NOT_SENT = classify(not_sent())
# SERVER_CLOSED: the backend found the idle connection closed by the server.

#: The server ended the statement at an interrupt check: it did not run.
PROOF = {
    "57P01 scale event": SCALE_EVENT,
    "57P01 scale event, text only": SCALE_EVENT_TEXT,
    "57P01 administrator command": ADMIN_COMMAND,
    "57P03 starting up": STARTING_UP,
}
#: The connection is gone; whether the statement ran is not known.
NO_PROOF = {
    "lost reply": LOST_REPLY,
    "57P02 crash": CRASH,
    "25P03 idle in transaction": IDLE_IN_TRANSACTION,
    "57P05 idle session": IDLE_SESSION,
    "08007 resolution unknown": RESOLUTION_UNKNOWN,
    "SSL EOF": SSL_EOF,
}
#: Nothing was sent.
NOTHING_SENT = {"connection closed on our side": NOT_SENT, "server closed it idle": SERVER_CLOSED}
FAILURES = {**PROOF, **NO_PROOF, **NOTHING_SENT}

SERIALIZATION = classify(
    server_error(
        "SerializationFailure",
        "40001",
        "could not serialize access due to read/write dependencies among transactions",
    )
)
DEADLOCK = classify(server_error("DeadlockDetected", "40P01", "deadlock detected"))
UNIQUE = classify(
    server_error(
        "UniqueViolation", "23505", 'duplicate key value violates unique constraint "t_pkey"'
    )
)
BAD_PASSWORD = classify(
    Database.OperationalError('FATAL:  password authentication failed for user "orca"')
)


@pytest.mark.parametrize("name", PROOF)
def test_a_proof_failure_says_the_statement_did_not_run(name):
    failure = PROOF[name]
    assert failure.retryable and failure.not_applied and not failure.closed_before_send


@pytest.mark.parametrize("name", NO_PROOF)
def test_a_lost_connection_proves_nothing(name):
    failure = NO_PROOF[name]
    assert failure.retryable and not failure.not_applied and not failure.closed_before_send


@pytest.mark.parametrize("name", NOTHING_SENT)
def test_a_connection_closed_before_sending_proves_nothing_was_sent(name):
    failure = NOTHING_SENT[name]
    assert failure.retryable and failure.not_applied and failure.closed_before_send


# ----- statements -----------------------------------------------------------

READ = "SELECT id, name FROM testapp_item WHERE id = %s"
WRITE = "INSERT INTO testapp_item (name) VALUES (%s)"
UPDATE = "UPDATE testapp_item SET name = %s WHERE id = %s"
COMMITS = (
    "COMMIT",
    "commit",
    "END",
    "COMMIT AND CHAIN",
    "PREPARE TRANSACTION 'orca-1'",
    "COMMIT PREPARED 'orca-1'",
    "INSERT INTO testapp_item (name) VALUES ('a'); COMMIT",
    b"COMMIT",
)
ALONG_THE_WAY = (
    "CALL archive_items(%s)",
    "DO $$BEGIN PERFORM 1; END$$",
    "VACUUM testapp_item",
    "CREATE INDEX CONCURRENTLY item_name ON testapp_item (name)",
    "DROP INDEX CONCURRENTLY item_name",
    "REINDEX INDEX CONCURRENTLY item_name",
    "ALTER TABLE testapp_item DETACH PARTITION item_2024 CONCURRENTLY",
    "ANALYZE",
    "ANALYZE testapp_item",
    "REINDEX SCHEMA public",
    "REINDEX TABLE testapp_item",
    "CLUSTER",
    "SELECT dblink_exec('archive', 'INSERT INTO log VALUES (1)')",
    "SELECT * FROM dblink('archive', 'DELETE FROM log RETURNING id') AS t(id int)",
    "COPY testapp_item FROM PROGRAM 'fetch-items'",
    "SELECT FROM WHERE",
    composition.SQL("INSERT INTO {} (name) VALUES (%s)").format(
        composition.Identifier("testapp_item")
    ),
)
STATEMENTS = (
    READ,
    "SHOW search_path",
    WRITE,
    UPDATE,
    "SELECT nextval('testapp_item_id_seq')",
    "SELECT 1; SELECT 2",
    "CREATE INDEX item_name ON testapp_item (name)",
    "ROLLBACK",
    composition.SQL("SELECT 1"),
    b"SELECT 1",
    *ALONG_THE_WAY,
)
ALL_STATEMENTS = (*STATEMENTS, *COMMITS)

# ----- the truth table ------------------------------------------------------


def row(
    id: str,
    failure: Failure,
    sql: object,
    expected: Verdict,
    why: str,
    *,
    in_transaction: bool = False,
    many: bool = False,
    retry_writes: bool = False,
    marks=(),
):
    return pytest.param(
        failure,
        sql,
        in_transaction,
        many,
        retry_writes,
        expected,
        why,
        id=id,
        marks=marks,
    )


TABLE = [
    # --- a statement that may commit: F1 ---------------------------------
    row("COMMIT, reply lost", LOST_REPLY, "COMMIT", Verdict.UNKNOWN,
        "F1: a COMMIT in flight may have committed", in_transaction=True),
    row("COMMIT, 57P01 scale event", SCALE_EVENT, "COMMIT", Verdict.UNKNOWN,
        "F1: the interrupt-check proof does not cover a COMMIT in flight",
        in_transaction=True),
    row("COMMIT, 08007", RESOLUTION_UNKNOWN, "COMMIT", Verdict.UNKNOWN,
        "F1: a COMMIT in flight may have committed", in_transaction=True),
    row("COMMIT never sent", NOT_SENT, "COMMIT", Verdict.ROLLED_BACK,
        "F1: the COMMIT never left; the session's end rolls the transaction back",
        in_transaction=True),
    row("COMMIT never sent, server closed it idle", SERVER_CLOSED, "COMMIT",
        Verdict.ROLLED_BACK, "F1: the COMMIT never left", in_transaction=True),
    row("COMMIT never sent, no transaction open", NOT_SENT, "COMMIT", Verdict.UNKNOWN,
        "F1: outside a transaction nothing is promised for a commit (conservative)"),
    row("END, reply lost", LOST_REPLY, "END", Verdict.UNKNOWN,
        "F1: END is COMMIT", in_transaction=True),
    row("COMMIT AND CHAIN, reply lost", LOST_REPLY, "COMMIT AND CHAIN", Verdict.UNKNOWN,
        "F1: it commits before it chains", in_transaction=True),
    row("PREPARE TRANSACTION, reply lost", LOST_REPLY, "PREPARE TRANSACTION 'orca-1'",
        Verdict.UNKNOWN, "F1: a prepared transaction outlives the session",
        in_transaction=True),
    row("COMMIT PREPARED, 57P01", SCALE_EVENT, "COMMIT PREPARED 'orca-1'", Verdict.UNKNOWN,
        "F1: it may have committed"),
    row("COMMIT PREPARED, retry_writes", LOST_REPLY, "COMMIT PREPARED 'orca-1'",
        Verdict.UNKNOWN, "F1: retry_writes vouches for writes, never for a commit",
        retry_writes=True),
    row("INSERT; COMMIT in one text, 57P01", SCALE_EVENT,
        "INSERT INTO testapp_item (name) VALUES ('a'); COMMIT", Verdict.UNKNOWN,
        "F1: a text that commits part way"),
    row("COMMIT as bytes, reply lost", LOST_REPLY, b"COMMIT", Verdict.UNKNOWN,
        "F1: bytes are read as text", in_transaction=True),
    row("composed PREPARE TRANSACTION, reply lost", LOST_REPLY,
        composition.SQL("PREPARE TRANSACTION {}").format(composition.Literal("orca-1")),
        Verdict.UNKNOWN, "F1: nothing is known of a composed statement",
        in_transaction=True),
    row("composed write in a transaction, reply lost", LOST_REPLY,
        composition.SQL("INSERT INTO {} (name) VALUES (%s)").format(
            composition.Identifier("testapp_item")
        ), Verdict.UNKNOWN, "F1: a composed statement may be a COMMIT",
        in_transaction=True),
    row("composed write, retry_writes", LOST_REPLY,
        composition.SQL("INSERT INTO {} (name) VALUES (%s)").format(
            composition.Identifier("testapp_item")
        ), Verdict.UNKNOWN, "F1: retry_writes never vouches for what may be a commit",
        retry_writes=True),
    # --- inside a transaction: F7 -----------------------------------------
    row("read in a transaction, reply lost", LOST_REPLY, READ, Verdict.ROLLED_BACK,
        "F7: the new session holds none of the transaction", in_transaction=True),
    row("read in a transaction, 57P01", SCALE_EVENT, READ, Verdict.ROLLED_BACK,
        "F7: the transaction is gone whatever proves the statement", in_transaction=True),
    row("write in a transaction, never sent", NOT_SENT, WRITE, Verdict.ROLLED_BACK,
        "F7: even a statement never sent; the transaction before it is gone",
        in_transaction=True),
    row("write in a transaction, server closed it idle", SERVER_CLOSED, WRITE,
        Verdict.ROLLED_BACK, "F7: the transaction before it is gone", in_transaction=True),
    row("write in a transaction, retry_writes", LOST_REPLY, WRITE, Verdict.ROLLED_BACK,
        "F7: retry_writes cannot bring a transaction back", in_transaction=True,
        retry_writes=True),
    row("executemany in a transaction, 57P01", SCALE_EVENT, WRITE, Verdict.ROLLED_BACK,
        "F7", in_transaction=True, many=True),
    row("CALL in a transaction, 25P03", IDLE_IN_TRANSACTION, "CALL archive_items(%s)",
        Verdict.ROLLED_BACK, "F7: a procedure called in a transaction cannot commit",
        in_transaction=True),
    row("ROLLBACK, reply lost", LOST_REPLY, "ROLLBACK", Verdict.ROLLED_BACK,
        "F7: rolled back either way", in_transaction=True),
    # --- autocommit, nothing sent ---------------------------------------------
    row("write never sent", NOT_SENT, WRITE, Verdict.REPLAY,
        "F3: a closed connection is replaced before anything is sent"),
    row("write, server closed it idle", SERVER_CLOSED, WRITE, Verdict.REPLAY,
        "F3: nothing of it reached the server"),
    row("CALL never sent", NOT_SENT, "CALL archive_items(%s)", Verdict.REPLAY,
        "F3: nothing of it reached the server"),
    row("executemany never sent", NOT_SENT, WRITE, Verdict.REPLAY,
        "F3: nothing of it reached the server", many=True),
    row("read never sent", SERVER_CLOSED, READ, Verdict.REPLAY,
        "F3: never sent, so it runs once: no READ ONLY guard needed"),
    # --- autocommit, executemany ----------------------------------------------
    row("executemany, 57P01", SCALE_EVENT, WRITE, Verdict.UNKNOWN,
        "F2: the proof covers the failed statement, not those before it", many=True),
    row("executemany, reply lost", LOST_REPLY, WRITE, Verdict.UNKNOWN,
        "F4: the rows before it committed", many=True),
    row("executemany of a read, reply lost", LOST_REPLY, READ, Verdict.UNKNOWN,
        "F4: executemany is judged as writes", many=True),
    row("executemany, retry_writes", LOST_REPLY, WRITE, Verdict.REPLAY,
        "F4: the application vouched for its writes", many=True, retry_writes=True),
    # --- autocommit, the server ended the statement unrun: F2 -------------
    row("write, 57P01 scale event", SCALE_EVENT, WRITE, Verdict.REPLAY,
        "F2: ended at an interrupt check, unrun"),
    row("write, 57P01 as psycopg2's text", SCALE_EVENT_TEXT, WRITE, Verdict.REPLAY,
        "F2: the server's own words are the proof"),
    row("update, 57P01 administrator command", ADMIN_COMMAND, UPDATE, Verdict.REPLAY,
        "F2: ended at an interrupt check, unrun"),
    row("write, 57P03", STARTING_UP, WRITE, Verdict.REPLAY, "F2: the server never ran it"),
    row("read, 57P01", SCALE_EVENT, READ, Verdict.REPLAY,
        "F2: it never ran, so it runs once: no READ ONLY guard needed"),
    row("two inserts in one text, 57P01", SCALE_EVENT,
        "INSERT INTO testapp_item (name) VALUES ('a'); INSERT INTO testapp_item (name) "
        "VALUES ('b')", Verdict.REPLAY,
        "F2: one text runs in one implicit transaction"),
    row("CREATE INDEX, 57P01", SCALE_EVENT, "CREATE INDEX item_name ON testapp_item (name)",
        Verdict.REPLAY, "F2: one transaction"),
    row("CALL, 57P01", SCALE_EVENT, "CALL archive_items(%s)", Verdict.UNKNOWN,
        "F2: a procedure may have committed part of its work"),
    row("DO, 57P01", SCALE_EVENT, "DO $$BEGIN PERFORM 1; END$$", Verdict.UNKNOWN,
        "F2: a DO block may commit along the way"),
    row("VACUUM, 57P03", STARTING_UP, "VACUUM testapp_item", Verdict.UNKNOWN,
        "F2: VACUUM commits along the way"),
    row("CREATE INDEX CONCURRENTLY, 57P01", SCALE_EVENT,
        "CREATE INDEX CONCURRENTLY item_name ON testapp_item (name)", Verdict.UNKNOWN,
        "F2: CONCURRENTLY commits along the way"),
    row("DROP INDEX CONCURRENTLY, 57P01", SCALE_EVENT, "DROP INDEX CONCURRENTLY item_name",
        Verdict.UNKNOWN, "F2: CONCURRENTLY commits along the way"),
    row("REINDEX CONCURRENTLY, 57P01", ADMIN_COMMAND, "REINDEX INDEX CONCURRENTLY item_name",
        Verdict.UNKNOWN, "F2: CONCURRENTLY commits along the way"),
    row("DETACH PARTITION CONCURRENTLY, 57P01", SCALE_EVENT,
        "ALTER TABLE testapp_item DETACH PARTITION item_2024 CONCURRENTLY", Verdict.UNKNOWN,
        "F2: CONCURRENTLY commits along the way"),
    row("CALL, 57P01, retry_writes", SCALE_EVENT, "CALL archive_items(%s)", Verdict.REPLAY,
        "F2: the application vouched for its writes", retry_writes=True),
    row("composed write, 57P01", SCALE_EVENT,
        composition.SQL("INSERT INTO {} (name) VALUES (%s)").format(
            composition.Identifier("testapp_item")
        ), Verdict.UNKNOWN, "F2: nothing is known of a composed statement"),
    row("ANALYZE of every table, 57P01", SCALE_EVENT, "ANALYZE", Verdict.UNKNOWN,
        "F2: one transaction per table"),
    row("REINDEX SCHEMA, 57P01", SCALE_EVENT, "REINDEX SCHEMA public", Verdict.UNKNOWN,
        "F2: one transaction per table"),
    row("CLUSTER of every table, 57P01", SCALE_EVENT, "CLUSTER", Verdict.UNKNOWN,
        "F2: one transaction per table"),
    row("dblink_exec, 57P01", SCALE_EVENT,
        "SELECT dblink_exec('archive', 'INSERT INTO log VALUES (1)')", Verdict.UNKNOWN,
        "F2: the remote server committed on its own"),
    row("dblink(), 57P01", SCALE_EVENT,
        "SELECT * FROM dblink('archive', 'DELETE FROM log RETURNING id') AS t(id int)",
        Verdict.UNKNOWN, "F2: dblink() runs any statement on the other server"),
    row("ANALYZE of one table, 57P01", SCALE_EVENT, "ANALYZE testapp_item", Verdict.UNKNOWN,
        "F2: a partitioned table is analyzed a transaction per partition"),
    row("REINDEX TABLE, 57P01", SCALE_EVENT, "REINDEX TABLE testapp_item", Verdict.UNKNOWN,
        "F2: a partitioned table is reindexed a transaction per partition"),
    row("COPY FROM PROGRAM, 57P01", SCALE_EVENT, "COPY testapp_item FROM PROGRAM 'fetch-items'",
        Verdict.UNKNOWN, "F2: the program's effects are in no transaction"),
    row("unparsable, 57P01", SCALE_EVENT, "SELECT FROM WHERE", Verdict.UNKNOWN,
        "F2: nothing proven"),
    row("update calling a built-in, 57P01", SCALE_EVENT,
        "UPDATE testapp_item SET name = upper(name) WHERE id = %s", Verdict.REPLAY,
        "F2: one transaction, on this server"),
    # --- autocommit, the reply lost, nothing proven: F4 and F6 ----------------
    row("read, reply lost", LOST_REPLY, READ, Verdict.REPLAY_READ_ONLY,
        "F6: a read is replayed READ ONLY"),
    row("read, 57P02 crash", CRASH, READ, Verdict.REPLAY_READ_ONLY,
        "F6: 57P02 proves nothing; a read is replayed READ ONLY"),
    row("read, 08007", RESOLUTION_UNKNOWN, READ, Verdict.REPLAY_READ_ONLY, "F6"),
    row("read, SSL EOF", SSL_EOF, READ, Verdict.REPLAY_READ_ONLY, "F6"),
    row("SHOW, reply lost", LOST_REPLY, "SHOW search_path", Verdict.REPLAY_READ_ONLY,
        "F6: SHOW is a read"),
    row("read as bytes, reply lost", LOST_REPLY, b"SELECT 1", Verdict.REPLAY_READ_ONLY,
        "F6: bytes are read as text"),
    row("nextval, reply lost", LOST_REPLY, "SELECT nextval('testapp_item_id_seq')",
        Verdict.UNKNOWN, "F4: a SELECT that writes is a write"),
    row("two reads in one text, reply lost", LOST_REPLY, "SELECT 1; SELECT 2",
        Verdict.UNKNOWN, "F4: only one statement is a replayable read"),
    row("composed read, reply lost", LOST_REPLY, composition.SQL("SELECT 1"), Verdict.UNKNOWN,
        "F4: nothing is known of a composed statement"),
    row("write, reply lost", LOST_REPLY, WRITE, Verdict.UNKNOWN,
        "F4: it may have committed"),
    row("update, 25P03", IDLE_IN_TRANSACTION, UPDATE, Verdict.UNKNOWN,
        "F4: it may have committed"),
    row("write, 57P05", IDLE_SESSION, WRITE, Verdict.UNKNOWN, "F4: it may have committed"),
    row("write, reply lost, retry_writes", LOST_REPLY, WRITE, Verdict.REPLAY,
        "F4: the application vouched for its writes", retry_writes=True),
    row("CALL, reply lost, retry_writes", LOST_REPLY, "CALL archive_items(%s)",
        Verdict.REPLAY, "F4: the application vouched for its writes", retry_writes=True),
]  # fmt: skip


@pytest.mark.parametrize("failure, sql, in_transaction, many, retry_writes, expected, why", TABLE)
def test_after_statement_failure(failure, sql, in_transaction, many, retry_writes, expected, why):
    verdict = after_statement_failure(
        failure,
        sql,
        many=many,
        in_transaction=in_transaction,
        settings=RetrySettings(retry_writes=retry_writes),
    )
    assert verdict is expected, why


def _param_values(params):
    return [p.values for p in params]


def test_the_table_has_every_verdict_and_every_fact():
    """Every Verdict is expected by some row that passes today, every row
    names the fact it rests on, and every fact is named."""
    passing = [p.values for p in TABLE if not p.marks]
    assert {values[5] for values in passing} == set(Verdict)
    facts = set()
    for p in TABLE:
        match = re.match(r"F(\d)\b", p.values[6])
        assert match, f"row {p.id!r} names no fact"
        facts.add(int(match.group(1)))
    # F5 (pg_xact_status) is retry_atomic's, below the table: see rerun_transaction.
    assert facts == {1, 2, 3, 4, 6, 7}


def test_the_table_has_every_input_dimension():
    """Each input takes each of its values in some row, and each failure
    kind (PROOF, NO_PROOF, NOTHING_SENT) meets each statement kind."""
    values = _param_values(TABLE)
    for index in (2, 3, 4):  # in_transaction, many, retry_writes
        assert {v[index] for v in values} == {True, False}
    failures = {id(v[0]) for v in values}
    assert {id(f) for f in FAILURES.values()} <= failures
    kinds = {"commit": COMMITS, "along the way": ALONG_THE_WAY}
    for group in (PROOF, NO_PROOF, NOTHING_SENT):
        groups = {id(f) for f in group.values()}
        rows = [v for v in values if id(v[0]) in groups]
        assert any(v[1] in kinds["commit"] for v in rows)
        assert any(v[1] in (READ, WRITE) for v in rows)


# ----- properties over every combination -------------------------------------


def _verdicts():
    """(inputs, verdict) for every failure, statement and flag combination."""
    for (name, failure), index, in_transaction, many, retry_writes in itertools.product(
        FAILURES.items(), range(len(ALL_STATEMENTS)), *([(False, True)] * 3)
    ):
        verdict = after_statement_failure(
            failure,
            ALL_STATEMENTS[index],
            many=many,
            in_transaction=in_transaction,
            settings=RetrySettings(retry_writes=retry_writes),
        )
        # keyed by the statement's index: composed statements are unhashable
        yield (name, index, in_transaction, many, retry_writes), verdict


VERDICTS = None


def verdicts():
    global VERDICTS
    if VERDICTS is None:
        VERDICTS = dict(_verdicts())
    return VERDICTS


REPLAYS = {Verdict.REPLAY, Verdict.REPLAY_READ_ONLY}


def test_nothing_of_a_transaction_runs_again():
    """F7: inside a transaction, whatever failed and whatever the
    statement and settings, it is never replayed."""
    for (name, index, in_transaction, *_), verdict in verdicts().items():
        sql = ALL_STATEMENTS[index]
        if in_transaction:
            assert verdict not in REPLAYS, (name, sql)
            if not may_commit(sql):
                assert verdict is Verdict.ROLLED_BACK, (name, sql)


def test_a_commit_is_never_replayed():
    """F1: a commit is UNKNOWN, or ROLLED_BACK when it provably never
    left inside a transaction; never replayed, not even with retry_writes."""
    for (name, index, in_transaction, *_), verdict in verdicts().items():
        sql = ALL_STATEMENTS[index]
        if may_commit(sql):
            sent = not FAILURES[name].closed_before_send
            expected = Verdict.ROLLED_BACK if in_transaction and not sent else Verdict.UNKNOWN
            assert verdict is expected, (name, sql, in_transaction)


def test_retry_writes_only_turns_unknown_into_replay():
    """retry_writes never refuses what was replayed without it, and the only
    verdict it changes is UNKNOWN (outside a transaction, not a commit)."""
    table = verdicts()
    for (name, index, in_transaction, many, retry_writes), verdict in table.items():
        sql = ALL_STATEMENTS[index]
        if retry_writes:
            continue
        vouched = table[(name, index, in_transaction, many, True)]
        if verdict is not vouched:
            assert verdict is Verdict.UNKNOWN and vouched is Verdict.REPLAY, (name, sql)
            assert not in_transaction and not may_commit(sql)


def test_what_may_commit_along_the_way_is_judged_a_write_after_a_proof():
    """F2: 57P01/57P03 proves only that the statement's own transaction
    did not commit; a statement that commits along the way, or on another
    server, is replayed only when the application vouched for its writes."""
    for (name, index, *_, retry_writes), verdict in verdicts().items():
        sql = ALL_STATEMENTS[index]
        if name in PROOF and sql in ALONG_THE_WAY and not retry_writes:
            assert verdict not in REPLAYS, (name, sql)


def test_only_a_replayable_read_is_replayed_read_only():
    """F6: REPLAY_READ_ONLY only for one read (on any cursor), outside a
    transaction, after a failure that proves nothing."""
    for (name, index, in_transaction, many, _), verdict in verdicts().items():
        sql = ALL_STATEMENTS[index]
        if verdict is Verdict.REPLAY_READ_ONLY:
            assert name in NO_PROOF and not (in_transaction or many), (name, sql)
            assert sql in (READ, "SHOW search_path", b"SELECT 1")


# ----- may_commit -------------------------------------------------------------


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("COMMIT", True),
        ("commit work", True),
        ("END", True),
        ("END TRANSACTION", True),
        ("COMMIT AND CHAIN", True),
        ("/* done */ COMMIT", True),
        ("PREPARE TRANSACTION 'orca-1'", True),
        ("COMMIT PREPARED 'orca-1'", True),
        ("INSERT INTO testapp_item (name) VALUES ('a'); COMMIT", True),
        # any transaction control after the first statement counts
        ("SELECT 1; ROLLBACK", True),
        (b"COMMIT", True),
        ("ROLLBACK", False),
        ("ROLLBACK PREPARED 'orca-1'", False),
        ("BEGIN", False),
        ("SAVEPOINT s1", False),
        ("RELEASE SAVEPOINT s1", False),
        ("PREPARE item_by_id AS SELECT 1", False),
        ("SELECT 'COMMIT'", False),
        ("-- COMMIT\nSELECT 1", False),
        (READ, False),
        (WRITE, False),
        ("", False),
        # nothing is known of a composed statement: it may be a COMMIT
        (composition.SQL("COMMIT"), True),
        (composition.SQL("SELECT {}").format(composition.Literal(1)), True),
    ],
    ids=lambda value: repr(value) if not isinstance(value, bool) else str(value),
)
def test_may_commit(sql, expected):
    assert may_commit(sql) is expected


# ----- commit_lost ------------------------------------------------------------


@pytest.mark.parametrize(
    "failure, expected",
    [
        pytest.param(NOT_SENT, Verdict.ROLLED_BACK, id="never sent: F1, F3"),
        pytest.param(SERVER_CLOSED, Verdict.ROLLED_BACK, id="server closed it idle: F1"),
        pytest.param(LOST_REPLY, Verdict.UNKNOWN, id="reply lost: F1"),
        pytest.param(SCALE_EVENT, Verdict.UNKNOWN, id="57P01 proves nothing for a COMMIT: F1"),
        pytest.param(SCALE_EVENT_TEXT, Verdict.UNKNOWN, id="57P01 text: F1"),
        pytest.param(STARTING_UP, Verdict.UNKNOWN, id="57P03: F1"),
        pytest.param(CRASH, Verdict.UNKNOWN, id="57P02: F1"),
        pytest.param(RESOLUTION_UNKNOWN, Verdict.UNKNOWN, id="08007: F1"),
        pytest.param(IDLE_IN_TRANSACTION, Verdict.UNKNOWN, id="25P03: F1"),
    ],
)
def test_commit_lost(failure, expected):
    assert commit_lost(failure) is expected


def test_commit_lost_agrees_with_the_table_for_a_commit_in_a_transaction():
    for failure in FAILURES.values():
        table = after_statement_failure(
            failure,
            "COMMIT",
            many=False,
            in_transaction=True,
            settings=RetrySettings(),
        )
        assert commit_lost(failure) is table


# ----- rerun_transaction -------------------------------------------------------


@pytest.mark.parametrize(
    "failure, committed_nothing, retry_conflicts, expected",
    [
        pytest.param(SCALE_EVENT, True, True, True, id="scale event, nothing committed"),
        pytest.param(LOST_REPLY, True, True, True, id="reply lost, nothing committed"),
        pytest.param(NOT_SENT, True, True, True, id="never sent"),
        pytest.param(IDLE_IN_TRANSACTION, True, True, True, id="25P03"),
        pytest.param(SCALE_EVENT, True, False, True, id="retry_conflicts is for conflicts only"),
        pytest.param(SERIALIZATION, True, True, True, id="40001, retry_conflicts"),
        pytest.param(DEADLOCK, True, True, True, id="40P01, retry_conflicts"),
        pytest.param(SERIALIZATION, True, False, False, id="40001, retry_conflicts off"),
        pytest.param(DEADLOCK, True, False, False, id="40P01, retry_conflicts off"),
        pytest.param(SCALE_EVENT, False, True, False, id="a run may have committed: F1, F5"),
        pytest.param(LOST_REPLY, False, True, False, id="lost COMMIT unresolved: F5"),
        pytest.param(SERIALIZATION, False, True, False, id="40001 after a possible commit"),
        pytest.param(UNIQUE, True, True, False, id="an application error"),
        pytest.param(BAD_PASSWORD, True, True, False, id="a bad password"),
    ],
)
def test_rerun_transaction(failure, committed_nothing, retry_conflicts, expected):
    settings = RetrySettings(retry_conflicts=retry_conflicts)
    result = rerun_transaction(failure, committed_nothing=committed_nothing, settings=settings)
    assert result is expected


def test_the_conflicts_are_not_retryable_alone():
    """What rerun_transaction relies on: 40001/40P01 are marked as conflicts,
    never as retryable (a single statement is never replayed for them)."""
    for failure in (SERIALIZATION, DEADLOCK):
        assert failure.conflict and not failure.retryable
    assert not UNIQUE.conflict and not UNIQUE.retryable
