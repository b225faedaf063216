"""The guarantee on paths reviews found unwalked: COMMIT sent as SQL with
its reply lost, procedures that commit along the way, a replayed SET, a
failed manual transaction's SET, a statement that fails outside the
database under a deadline, a second database inside retry_atomic (failing,
or written to before this one's connection is lost), a disconnect the
classifier does not recognise inside BEGIN, retry_atomic called while an
earlier error is handled, and functions retry_atomic cannot make atomic.
Real server, real faults (the simulator's lost replies,
``pg_terminate_backend``)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from django.db import DataError, IntegrityError, connection, connections, transaction

from orca_db.backends.aurora.base import DatabaseWrapper
from orca_db.deadlines import watchdog
from orca_db.exceptions import OutcomeUnknown, TransactionRolledBack
from orca_db.transaction import retry_atomic
from tests import test_guarantee, test_lost_reply
from tests.conftest import admin_connection
from tests.faults import Background, admin_run, on_the_server
from tests.pooled import database_alias
from tests.test_guarantee import backend_pid, server_texts
from tests.test_lost_reply import effects, run
from tests.testapp.models import Note
from tests.waiting import wait_until

# The fixtures of the suites these tests extend.
lossy = test_lost_reply.lossy
tenant_schema = test_guarantee.tenant_schema

pytestmark = pytest.mark.django_db(transaction=True)


# ----- COMMIT sent as SQL -------------------------------------------------------------


def test_a_lost_reply_to_commit_sent_as_sql_is_outcome_unknown(lossy):
    """BEGIN, INSERT, COMMIT as SQL; the server commits, the reply is lost.
    Saying "rolled back" would have the application write it again."""
    lossy.lose_replies(1, contains="COMMIT")
    run("BEGIN")
    run("INSERT INTO lost_effects (what) VALUES ('sql-commit')")
    with pytest.raises(OutcomeUnknown):
        run("COMMIT")
    assert effects("sql-commit") == 1
    assert run("SELECT 1") == [(1,)]  # and the connection goes on


# ----- statements that commit along the way -------------------------------------------


@pytest.fixture
def batches():
    """A procedure and a DO block that commit a first batch, then wait on a
    lock the test holds, then write a second batch."""
    with on_the_server(
        """
        CREATE OR REPLACE PROCEDURE orca_batches() LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO testapp_note (text, created) VALUES ('batch-1', now());
            COMMIT;
            PERFORM pg_advisory_xact_lock(4242);
            INSERT INTO testapp_note (text, created) VALUES ('batch-2', now());
        END $$;
        """,
        "DROP PROCEDURE orca_batches()",
    ):
        yield


@pytest.mark.parametrize(
    "statement",
    [
        "CALL orca_batches()",
        "DO $$ BEGIN INSERT INTO testapp_note (text, created) VALUES ('batch-1', now()); "
        "COMMIT; PERFORM pg_advisory_xact_lock(4242); "
        "INSERT INTO testapp_note (text, created) VALUES ('batch-2', now()); END $$",
    ],
    ids=["call", "do"],
)
def test_a_statement_that_committed_part_of_its_work_is_not_run_again(batches, statement):
    """57P01 proves the running transaction did not commit, not that the
    ones the procedure committed before it did not: replaying it would write
    batch 1 twice."""
    pid = backend_pid()
    holder = admin_connection()
    holder.cursor().execute("SELECT pg_advisory_lock(4242)")
    holder.commit()

    def kill_once_batch_one_is_committed():
        try:
            wait_until(lambda: server_texts("batch-") == ["batch-1"], timeout=30)
            admin_run("SELECT pg_terminate_backend(%s)", [pid])
        finally:
            # Whatever happened, the statement must not wait for ever.
            holder.cursor().execute("SELECT pg_advisory_unlock(4242)")
            holder.commit()

    killer = Background(kill_once_batch_one_is_committed)
    try:
        with pytest.raises(OutcomeUnknown), connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        killer.join()
        holder.close()
    assert server_texts("batch-") == ["batch-1"]


# ----- session state ------------------------------------------------------------------


@pytest.fixture
def lossy_writes(lossy):
    """A connection through the simulator whose writes the application
    vouched for (``retry_writes``): a lost SET is replayed."""
    settings_dict = lossy.django_settings(connection.settings_dict)
    options = dict(settings_dict.get("OPTIONS") or {})
    options["aurora"] = {**options.get("aurora", {}), "retry_writes": True}
    settings_dict["OPTIONS"] = options
    connections["lossy_writes"] = DatabaseWrapper(settings_dict, "lossy_writes")
    yield connections["lossy_writes"]
    connections["lossy_writes"].close()
    del connections["lossy_writes"]


def test_a_replayed_set_is_restored_on_a_later_reconnect(lossy, lossy_writes):
    lossy.lose_replies(1, contains="application_name")
    with lossy_writes.cursor() as cursor:
        cursor.execute("SET application_name TO 'replayed-set'")
    lossy.drop_connections()
    with lossy_writes.cursor() as cursor:
        cursor.execute("SHOW application_name")
        assert cursor.fetchone()[0] == "replayed-set"


def test_set_in_a_failed_manual_transaction_is_not_restored(tenant_schema, kill_backend):
    """commit() of a transaction that failed answers ROLLBACK without an
    error: the SET went with it and must not come back after a reconnect."""
    transaction.set_autocommit(False)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET search_path TO tenant42")
            with pytest.raises(DataError):
                cursor.execute("SELECT 1 / 0")
        transaction.commit()
    finally:
        transaction.set_autocommit(True)
    with connection.cursor() as cursor:
        cursor.execute("SHOW search_path")
        assert cursor.fetchone()[0] != "tenant42"  # the server undid it
    kill_backend()
    Note.objects.create(text="tenant-failed")
    assert server_texts("tenant-") == ["tenant-failed"]  # in public, as before


# ----- deadlines ----------------------------------------------------------------------


class _Exploding(Mapping):
    """Parameters that fail while the driver reads them: an error that is
    not a database error, raised inside the statement."""

    def __getitem__(self, key):
        raise RuntimeError("bad parameter")

    def __iter__(self):
        return iter(["a"])

    def __len__(self):
        return 1


def test_a_statement_failing_outside_the_database_leaves_no_watch(kill_backend):
    settings_dict = {**connection.settings_dict, "OPTIONS": {"aurora": {"statement_deadline": 30}}}
    connections["watched"] = db = DatabaseWrapper(settings_dict, "watched")
    try:
        before = len(watchdog._live)
        with pytest.raises(RuntimeError, match="bad parameter"), db.cursor() as cursor:
            cursor.execute("SELECT %(a)s", _Exploding())
        # A watch left behind would shut this descriptor's socket at the
        # deadline, whatever connection holds the number by then.
        assert len(watchdog._live) == before
    finally:
        db.close()
        del connections["watched"]


# ----- another database inside retry_atomic -------------------------------------------


def test_a_lost_write_on_another_database_inside_retry_atomic_is_outcome_unknown(lossy):
    """retry_atomic retries its own database; a write on another one keeps
    that database's rules: its lost reply is OutcomeUnknown, and the
    function is not run again."""
    lossy.lose_replies(1, contains="other-db")
    runs = []

    @retry_atomic(using="default")
    def work():
        runs.append(1)
        Note.objects.create(text="own-db")
        run("INSERT INTO lost_effects (what) VALUES ('other-db')")

    with pytest.raises(OutcomeUnknown):
        work()
    assert runs == [1]
    assert effects("other-db") == 1
    assert server_texts("own-db") == []  # rolled back with the block


# ----- a disconnect nobody recognised ---------------------------------------------------


def test_an_unrecognised_disconnect_inside_begin_refuses_the_rest(kill_backend, monkeypatch):
    """Should the classifier ever miss a disconnect (an error text it does
    not know), the rest of a transaction begun as SQL must still never run
    in autocommit on a new connection."""
    from orca_db.backends import cursor as cursor_module
    from orca_db.classify import Failure

    def unrecognised(error):
        return Failure(False, False, type(error).__name__, None, str(error))

    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("INSERT INTO testapp_note (text, created) VALUES ('unrec-a', now())")
        kill_backend()
        monkeypatch.setattr(cursor_module, "classify", unrecognised)
        with pytest.raises(Exception):  # noqa: B017 (unchanged, whatever it is)
            cursor.execute("INSERT INTO testapp_note (text, created) VALUES ('unrec-b', now())")
        monkeypatch.undo()
        with pytest.raises(TransactionRolledBack):
            cursor.execute("INSERT INTO testapp_note (text, created) VALUES ('unrec-c', now())")
        cursor.execute("ROLLBACK")
    assert server_texts("unrec-") == []


# ----- retry_atomic called while handling an earlier error -----------------------------


@pytest.fixture
def deferred_unique():
    with on_the_server(
        "DROP TABLE IF EXISTS deferred_u; "
        "CREATE TABLE deferred_u (x int UNIQUE DEFERRABLE INITIALLY DEFERRED)",
        "DROP TABLE deferred_u",
    ):
        yield


def test_an_error_at_commit_is_not_mistaken_for_the_one_being_handled(
    deferred_unique, kill_backend
):
    """``except TransactionRolledBack: retry_atomic(record_failure)()``, and
    the COMMIT of that fails on a deferred constraint: the caller must get
    the IntegrityError, once, not the old error judged again (on main the
    function ran again until the deadline, then RetriesExhausted)."""
    runs = []

    @retry_atomic
    def record_failure():
        runs.append(1)
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO deferred_u VALUES (1), (1)")

    try:
        with transaction.atomic():
            Note.objects.create(text="handled-a")
            kill_backend()
            Note.objects.create(text="handled-b")
    except TransactionRolledBack:
        with pytest.raises(IntegrityError):
            record_failure()
    assert runs == [1]


def test_retry_atomic_refuses_generator_and_async_functions():
    """Their bodies would run after the transaction committed, in
    autocommit: not atomic, and not safe to run again."""

    def generator():
        yield Note.objects.create(text="gen")

    async def coroutine():
        return None

    with pytest.raises(TypeError, match="generator"):
        retry_atomic(generator)
    with pytest.raises(TypeError, match="coroutine"):
        retry_atomic(coroutine)


# ----- writes through another database inside retry_atomic -----------------------------


@pytest.fixture
def second_alias():
    """Another alias of DATABASES on the same server, as a project with two
    databases on one cluster has."""
    with database_alias("second", dict(connection.settings_dict)):
        yield connections["second"]


@pytest.mark.parametrize("how", ["autocommit", "nested retry_atomic"])
def test_a_run_that_wrote_to_another_database_is_not_run_again(second_alias, backend_killer, how):
    """The lost connection rolled back this database's transaction, not the
    other one's write: running the function again would apply it twice."""
    runs = []

    def write_elsewhere():
        with second_alias.cursor() as cursor:
            cursor.execute("INSERT INTO testapp_note (text, created) VALUES ('elsewhere', now())")

    @retry_atomic
    def work():
        runs.append(1)
        Note.objects.create(text="here")
        if how == "autocommit":
            write_elsewhere()
        else:
            retry_atomic(write_elsewhere, using="second")()
        if len(runs) == 1:
            with connection.cursor() as cursor:
                backend_killer.kill_when_running(backend_pid(), "pg_sleep")
                cursor.execute("SELECT pg_sleep(5)")

    with pytest.raises(TransactionRolledBack, match="second"):
        work()
    backend_killer.join()
    assert runs == [1]
    assert server_texts("elsewhere") == ["elsewhere"]
    assert server_texts("here") == []
