"""Statements whose outcome a lost connection leaves open, against a real
server with real faults: what commits elsewhere or along the way (F2),
and composed statements that may commit (F1).

docs/retry-safety.md, "The facts the proofs rest on", and the docstring of
orca_db.decisions give the reasoning.
"""

from __future__ import annotations

import pytest
from django.db import connection, connections, transaction

from orca_db.backends.aurora.base import DatabaseWrapper
from orca_db.exceptions import (
    OutcomeUnknown,
    ScaleEventError,
    TransactionRolledBack,
    WriteDeadlineExceeded,
)
from tests.conftest import admin_connection
from tests.driver_errors import composition
from tests.faults import Background, admin_value
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def remote_log():
    """dblink, and a table it writes to over its own connection (to the same
    server: a session of its own, committing on its own like any remote)."""
    admin = admin_connection()
    cur = admin.cursor()
    cur.execute(
        "CREATE EXTENSION IF NOT EXISTS dblink; "
        "DROP TABLE IF EXISTS remote_log; CREATE TABLE remote_log (what text NOT NULL)"
    )
    admin.commit()
    yield
    cur.execute("DROP TABLE remote_log")
    admin.commit()
    admin.close()


def _dsn() -> str:
    s = connection.settings_dict
    return (
        f"host={s['HOST']} port={s['PORT']} user={s['USER']} "
        f"password={s['PASSWORD']} dbname={s['NAME']}"
    )


def test_a_remote_write_by_dblink_is_not_run_again_after_57P01(remote_log):
    """dblink_exec commits on the remote as soon as it returns; the local
    statement goes on (pg_sleep) and is ended with 57P01. 57P01 proves the
    local transaction committed nothing, not the remote one: the statement
    must not be replayed (the remote row would be written twice)."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid

    def kill_after_the_remote_commit():
        wait_until(lambda: admin_value("SELECT count(*) FROM remote_log") == 1, timeout=30)
        admin_value("SELECT pg_terminate_backend(%s)", [pid])

    killer = Background(kill_after_the_remote_commit)
    with pytest.raises(OutcomeUnknown), connection.cursor() as cursor:
        cursor.execute(
            "SELECT dblink_exec(%s, 'INSERT INTO remote_log VALUES (''dblink'')'), pg_sleep(30)",
            [_dsn()],
        )
    killer.join()
    assert admin_value("SELECT count(*) FROM remote_log") == 1


def test_a_remote_write_by_dblink_is_not_run_again_after_57P01_on_the_data_api(
    remote_log, data_api_connection
):
    """The same through the Data API engine, whose endpoint relays the
    session's 57P01 as a DatabaseErrorException."""

    def kill_after_the_remote_commit():
        wait_until(lambda: admin_value("SELECT count(*) FROM remote_log") == 1, timeout=30)
        admin_value(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'SELECT dblink_exec(%%' AND pid <> pg_backend_pid()"
        )

    killer = Background(kill_after_the_remote_commit)
    with pytest.raises(OutcomeUnknown), data_api_connection.cursor() as cursor:
        cursor.execute(
            "SELECT dblink_exec(%s, 'INSERT INTO remote_log VALUES (''data-api'')'), pg_sleep(30)",
            [_dsn()],
        )
    killer.join()
    assert admin_value("SELECT count(*) FROM remote_log") == 1


LOSSY = "lossy"


@pytest.fixture
def lossy(aurora_simulator):
    admin = admin_connection()
    cur = admin.cursor()
    cur.execute("DROP TABLE IF EXISTS composed_log; CREATE TABLE composed_log (what text)")
    admin.commit()
    connections[LOSSY] = DatabaseWrapper(
        aurora_simulator.django_settings(connection.settings_dict), LOSSY
    )
    connections[LOSSY].ensure_connection()
    yield aurora_simulator
    connections[LOSSY].close()
    del connections[LOSSY]
    cur.execute("DROP TABLE composed_log")
    admin.commit()
    admin.close()


def _count(what: str) -> int:
    return admin_value("SELECT count(*) FROM composed_log WHERE what = %s", [what])


def test_a_composed_commit_whose_reply_was_lost_is_outcome_unknown(lossy):
    """F1: a COMMIT in flight may have committed, composed or not; it
    did here, so TransactionRolledBack would be a lie."""
    db = connections[LOSSY]
    db.set_autocommit(False)
    try:
        with db.cursor() as cursor:
            cursor.execute("INSERT INTO composed_log VALUES ('composed-commit')")
            lossy.lose_replies(1, contains="COMMIT")
            with pytest.raises(OutcomeUnknown):
                cursor.execute(composition.SQL("COMMIT"))
    finally:
        db.close()
        db.set_autocommit(True)
    assert _count("composed-commit") == 1


def test_a_composed_write_lost_in_an_atomic_block_ends_the_block(lossy):
    """A composed statement may have been a COMMIT, so its outcome is
    unknown; but if it was not, its transaction is gone (F7): what the
    block runs after it must not run on a new connection."""
    lossy.lose_replies(1, contains="composed-b")
    raised = []
    with pytest.raises(TransactionRolledBack), transaction.atomic(using=LOSSY):
        with connections[LOSSY].cursor() as cursor:
            cursor.execute("INSERT INTO composed_log VALUES ('composed-a')")
            try:
                cursor.execute(
                    composition.SQL("INSERT INTO {} VALUES ('composed-b')").format(
                        composition.Identifier("composed_log")
                    )
                )
            except ScaleEventError as error:
                raised.append(type(error))
        with connections[LOSSY].cursor() as cursor:
            cursor.execute("INSERT INTO composed_log VALUES ('composed-c')")
    assert raised == [OutcomeUnknown]
    assert (_count("composed-a"), _count("composed-b"), _count("composed-c")) == (0, 0, 0)


def test_a_composed_statement_cut_at_its_deadline_in_a_block_ends_the_block(aurora_simulator):
    """The same when the network goes silent and statement_deadline cuts the
    statement off: it may have been a COMMIT (WriteDeadlineExceeded, an
    OutcomeUnknown), and the rest of the block is refused (F7)."""
    alias = "silenced"
    settings_dict = aurora_simulator.django_settings(connection.settings_dict)
    settings_dict = {
        **settings_dict,
        "OPTIONS": {"connect_timeout": 10, "aurora": {"statement_deadline": 1.0}},
    }
    connections[alias] = DatabaseWrapper(settings_dict, alias)
    admin = admin_connection()
    admin.cursor().execute("DROP TABLE IF EXISTS composed_log; CREATE TABLE composed_log (w text)")
    admin.commit()
    raised = []
    try:
        with pytest.raises(TransactionRolledBack), transaction.atomic(using=alias):
            with connections[alias].cursor() as cursor:
                cursor.execute("INSERT INTO composed_log VALUES ('silenced-a')")
                aurora_simulator.silence(new_connections=False)
                try:
                    cursor.execute(
                        composition.SQL("INSERT INTO {} VALUES ('silenced-b')").format(
                            composition.Identifier("composed_log")
                        )
                    )
                except ScaleEventError as error:
                    raised.append(type(error))
                finally:
                    aurora_simulator.unsilence()
            with connections[alias].cursor() as cursor:
                cursor.execute("INSERT INTO composed_log VALUES ('silenced-c')")
        assert raised == [WriteDeadlineExceeded]
        assert admin_value("SELECT count(*) FROM composed_log") == 0
    finally:
        connections[alias].close()
        del connections[alias]
        admin.cursor().execute("DROP TABLE composed_log")
        admin.commit()
        admin.close()
