"""The no-duplicate, no-partial guarantee on the paths real applications
walk: manual transactions, BEGIN sent as SQL, runtime SET, advisory locks,
temporary tables, many open files, retries switched off. Real server, real
faults (``pg_terminate_backend``)."""

from __future__ import annotations

import contextlib
import os

import pytest
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from orca_db.backends.aurora.base import DatabaseWrapper
from orca_db.exceptions import SessionStateLost, TransactionRolledBack
from orca_db.transaction import retry_atomic
from tests.conftest import admin_connection
from tests.driver import DRIVER
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)

INSERT = "INSERT INTO testapp_note (text, created) VALUES (%s, now())"


def server_texts(prefix: str) -> list[str]:
    """Committed note texts starting with ``prefix``, read over another
    connection."""
    admin = admin_connection()
    try:
        cur = admin.cursor()
        cur.execute(
            "SELECT text FROM testapp_note WHERE text LIKE %s ORDER BY text", [prefix + "%"]
        )
        return [row[0] for row in cur.fetchall()]
    finally:
        admin.close()


def backend_pid() -> int:
    connection.ensure_connection()
    return connection.connection.info.backend_pid


# ----- 1. set_autocommit(False) ----------------------------------------------------


def test_manual_transaction_lost_refuses_work_until_rollback(kill_backend):
    """A batch loop that catches the error and carries on must not commit
    the rest in autocommit (on main: c was committed)."""
    transaction.set_autocommit(False)
    try:
        with connection.cursor() as cursor:
            cursor.execute(INSERT, ["manual-a"])
        kill_backend()
        with pytest.raises(TransactionRolledBack), connection.cursor() as cursor:
            cursor.execute(INSERT, ["manual-b"])
        with pytest.raises(TransactionRolledBack), connection.cursor() as cursor:
            cursor.execute(INSERT, ["manual-c"])
        transaction.rollback()
        assert transaction.get_autocommit() is False  # as the application set it
        with connection.cursor() as cursor:
            cursor.execute(INSERT, ["manual-d"])
        transaction.commit()
    finally:
        transaction.set_autocommit(True)
    assert server_texts("manual-") == ["manual-d"]


def test_turning_autocommit_on_does_not_end_a_lost_transaction(kill_backend):
    """Only rollback() (or ROLLBACK) ends it: statements after
    set_autocommit(True) are refused too, never committed one by one."""
    transaction.set_autocommit(False)
    try:
        Note.objects.create(text="acon-a")
        kill_backend()
        with pytest.raises(TransactionRolledBack):
            Note.objects.create(text="acon-b")
        transaction.set_autocommit(True)
        with pytest.raises(TransactionRolledBack):
            Note.objects.create(text="acon-c")
        transaction.rollback()
        Note.objects.create(text="acon-d")
    finally:
        transaction.set_autocommit(True)
    assert server_texts("acon-") == ["acon-d"]


def test_manual_transaction_commit_after_the_loss_says_rolled_back(kill_backend):
    transaction.set_autocommit(False)
    try:
        Note.objects.create(text="mcommit-a")
        kill_backend()
        with pytest.raises(TransactionRolledBack):
            Note.objects.create(text="mcommit-b")
        with pytest.raises(TransactionRolledBack):
            transaction.commit()  # nothing to commit: the server rolled it back
        Note.objects.create(text="mcommit-c")
        transaction.commit()
    finally:
        transaction.set_autocommit(True)
    assert server_texts("mcommit-") == ["mcommit-c"]


def test_manual_transaction_idle_after_commit_is_reconnected_silently(kill_backend, events):
    """Nothing open when the connection died: the next statement goes to a
    new connection, still with autocommit off."""
    transaction.set_autocommit(False)
    try:
        Note.objects.create(text="midle-a")
        transaction.commit()
        kill_backend()
        Note.objects.create(text="midle-b")
        assert transaction.get_autocommit() is False
        transaction.commit()
    finally:
        transaction.set_autocommit(True)
    assert server_texts("midle-") == ["midle-a", "midle-b"]


# ----- 2. transactions Django does not know about ------------------------------------


def test_begin_sent_as_sql_is_not_half_committed(kill_backend):
    """On main the second insert ran in autocommit on a new connection."""
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute(INSERT, ["raw-a"])
        kill_backend()
        with pytest.raises(TransactionRolledBack):
            cursor.execute(INSERT, ["raw-b"])
        with pytest.raises(TransactionRolledBack):
            cursor.execute(INSERT, ["raw-c"])
        cursor.execute("ROLLBACK")
        cursor.execute(INSERT, ["raw-d"])  # autocommit again
    assert server_texts("raw-") == ["raw-d"]


def test_commit_sent_as_sql_after_the_loss_raises(kill_backend):
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute(INSERT, ["rawc-a"])
        cursor.execute("SAVEPOINT s1")
        cursor.execute(INSERT, ["rawc-b"])
        kill_backend()
        with pytest.raises(TransactionRolledBack):
            cursor.execute("RELEASE SAVEPOINT s1")
        with pytest.raises(TransactionRolledBack):
            cursor.execute("COMMIT")
        cursor.execute(INSERT, ["rawc-c"])
    assert server_texts("rawc-") == ["rawc-c"]


@pytest.mark.skipif(DRIVER != "psycopg", reason="psycopg 3's own transaction()")
def test_driver_transaction_block_is_not_half_committed(kill_backend):
    connection.ensure_connection()
    try:
        with contextlib.suppress(OperationalError), connection.connection.transaction():
            Note.objects.create(text="drv-a")
            kill_backend()
            with pytest.raises(TransactionRolledBack):
                Note.objects.create(text="drv-b")
            with pytest.raises(TransactionRolledBack):
                Note.objects.create(text="drv-c")
    finally:
        connection.close()
    assert server_texts("drv-") == []


# ----- 3. session state ---------------------------------------------------------------


@pytest.fixture
def tenant_schema():
    admin = admin_connection()
    try:
        cur = admin.cursor()
        cur.execute("DROP SCHEMA IF EXISTS tenant42 CASCADE")
        cur.execute("CREATE SCHEMA tenant42")
        cur.execute("CREATE TABLE tenant42.testapp_note (LIKE public.testapp_note INCLUDING ALL)")
        admin.commit()
        yield "tenant42"
        cur.execute("DROP SCHEMA tenant42 CASCADE")
        admin.commit()
    finally:
        admin.close()


def tenant_texts() -> list[str]:
    admin = admin_connection()
    try:
        cur = admin.cursor()
        cur.execute("SELECT text FROM tenant42.testapp_note ORDER BY text")
        return [row[0] for row in cur.fetchall()]
    finally:
        admin.close()


def test_search_path_set_at_runtime_survives_a_reconnect(tenant_schema, kill_backend):
    """On main the create() after the kill wrote into public."""
    with connection.cursor() as cursor:
        cursor.execute("SET search_path TO tenant42")
    kill_backend()
    Note.objects.create(text="tenant-row")
    assert tenant_texts() == ["tenant-row"]
    assert server_texts("tenant-") == []  # not in public
    with connection.cursor() as cursor:
        cursor.execute("SHOW search_path")
        assert cursor.fetchone()[0] == "tenant42"


def test_search_path_with_a_parameter_survives_a_read_retry(tenant_schema, kill_backend):
    Note.objects.create(text="in-public")
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('search_path', %s, false)", ["tenant42"])
    kill_backend()
    assert list(Note.objects.values_list("text", flat=True)) == []  # tenant42 is empty


def test_set_role_survives_a_reconnect(kill_backend):
    admin = admin_connection()
    try:
        cur = admin.cursor()
        cur.execute("DROP ROLE IF EXISTS orca_reader")
        cur.execute("CREATE ROLE orca_reader")
        admin.commit()
        with connection.cursor() as cursor:
            cursor.execute("SET ROLE orca_reader")
        kill_backend()
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone()[0] == "orca_reader"
            cursor.execute("RESET ROLE")
    finally:
        connection.close()
        cur.execute("DROP ROLE IF EXISTS orca_reader")
        admin.commit()
        admin.close()


def test_set_in_a_rolled_back_transaction_is_not_restored(tenant_schema, kill_backend):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET search_path TO tenant42")
            raise RuntimeError("roll back")
    kill_backend()
    Note.objects.create(text="tenant-public")
    assert server_texts("tenant-") == ["tenant-public"]


def test_set_in_a_committed_transaction_is_restored(tenant_schema, kill_backend):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET search_path TO tenant42")
    kill_backend()
    Note.objects.create(text="tenant-committed")
    assert tenant_texts() == ["tenant-committed"]


def test_retry_atomic_runs_again_in_the_tenant_it_started_in(tenant_schema, backend_killer):
    """A SET made before the transaction comes back on the new connection;
    one made inside the transaction that was lost is not a problem: it was
    rolled back with it, and the re-run makes it again."""
    with connection.cursor() as cursor:
        cursor.execute("SET search_path TO tenant42")
    runs = []

    @retry_atomic
    def work():
        runs.append(1)
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '5s'")
            if len(runs) == 1:
                backend_killer.kill_when_running(backend_pid(), "pg_sleep")
                cursor.execute("SELECT pg_sleep(0.5)")
        Note.objects.create(text="tenant-rerun")

    work()
    backend_killer.join()
    assert len(runs) == 2
    assert tenant_texts() == ["tenant-rerun"]
    assert server_texts("tenant-") == []


@pytest.mark.parametrize(
    ("statement", "lost"),
    [
        ("SELECT pg_advisory_lock(42)", "a session advisory lock"),
        ("CREATE TEMPORARY TABLE scratch (x int)", "a temporary table"),
        ("PREPARE fetch_note AS SELECT 1", "a prepared statement"),
        ("LISTEN orca_channel", "LISTEN"),
    ],
)
def test_state_a_new_session_lacks_is_refused_until_close(kill_backend, statement, lost):
    with connection.cursor() as cursor:
        cursor.execute(statement)
    kill_backend()
    with pytest.raises(SessionStateLost) as raised:
        Note.objects.create(text="lost-a")
    assert lost in raised.value.lost and lost in str(raised.value)
    with pytest.raises(SessionStateLost):
        Note.objects.create(text="lost-b")
    connection.close()  # the application starts over
    Note.objects.create(text="lost-c")
    assert server_texts("lost-") == ["lost-c"]


def test_released_advisory_lock_does_not_refuse(kill_backend):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(7)")
        cursor.execute("SELECT pg_advisory_unlock(7)")
    kill_backend()
    Note.objects.create(text="unlocked")
    assert server_texts("unlocked") == ["unlocked"]


# ----- 5. lost COMMIT resolution on dying connections -------------------------------


def test_lost_commit_resolution_replaces_connections_that_die_while_asking(
    kill_backend, monkeypatch, events
):
    """The COMMIT is lost, then the first two connections opened to ask
    pg_xact_status die too. On main the resolution kept asking on the same
    dead connection until the deadline and raised OutcomeUnknown although
    the answer was "aborted"."""
    from django.db.backends.signals import connection_created

    killed: list[int] = []
    original = connection._commit

    def commit():
        if not killed:
            killed.append(kill_backend())
            connection_created.connect(kill_new, weak=False)
        return original()

    def kill_new(sender, connection, **kwargs):
        if connection.alias == "default" and len(killed) < 3:
            killed.append(kill_backend())
        if len(killed) >= 3:
            connection_created.disconnect(kill_new)

    monkeypatch.setattr(connection, "_commit", commit)
    runs = []

    @retry_atomic(deadline=5)
    def work():
        runs.append(1)
        Note.objects.create(text="resolve-dying")

    try:
        work()
    finally:
        connection_created.disconnect(kill_new)
    assert len(killed) == 3
    assert len(runs) == 2  # resolved "aborted", so run again once
    assert server_texts("resolve-dying") == ["resolve-dying"]


# ----- 6. many open files ---------------------------------------------------------


def test_liveness_probe_works_above_file_descriptor_1023(events):
    """On main select() raised ValueError, read as 'closed': every write
    reconnected and recorded a false event."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("the hard limit on open files is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        connection.close()
        pid = backend_pid()
        assert connection.connection.fileno() >= 1024
        Note.objects.create(text="many-files")
        assert connection.connection.info.backend_pid == pid
    finally:
        connection.close()
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert events == []


# ----- 7. retries off means Django's own backend -----------------------------------


def _insert_after_idle_kill(alias: str, kill_backend) -> BaseException:
    db = connections[alias]
    db.ensure_connection()
    kill_backend(alias)
    with pytest.raises(Exception) as raised, db.cursor() as cursor:
        cursor.execute(INSERT, ["off"])
    return raised.value


def test_enabled_false_fails_exactly_as_the_stock_backend(kill_backend, settings_aliases):
    stock_error = _insert_after_idle_kill(settings_aliases["stock"], kill_backend)
    off_error = _insert_after_idle_kill(settings_aliases["off"], kill_backend)
    assert type(off_error) is type(stock_error)
    assert type(off_error.__cause__) is type(stock_error.__cause__)
    sqlstate = [
        getattr(e.__cause__, "sqlstate", None) or getattr(e.__cause__, "pgcode", None)
        for e in (stock_error, off_error)
    ]
    assert sqlstate[0] == sqlstate[1]
    assert str(off_error).split("\n")[0] == str(stock_error).split("\n")[0]


@pytest.fixture
def settings_aliases():
    base = {**connection.settings_dict}
    made = {
        "stock": {**base, "ENGINE": "django.db.backends.postgresql", "OPTIONS": {}},
        "off": {**base, "OPTIONS": {"aurora": {"enabled": False}}},
    }
    from django.db.utils import load_backend

    for alias, settings_dict in made.items():
        backend = load_backend(settings_dict["ENGINE"])
        connections[alias] = backend.DatabaseWrapper(settings_dict, alias)
    yield {name: name for name in made}
    for alias in made:
        connections[alias].close()
        del connections[alias]


# ----- 8. retry_atomic is atomic when nothing fails ---------------------------------


def test_retry_atomic_rolls_back_a_block_marked_for_rollback_like_atomic():
    def body(text):
        Note.objects.create(text=text)
        with contextlib.suppress(IntegrityError), connection.cursor() as cursor:
            # A caught error inside the block: the transaction is aborted.
            cursor.execute("INSERT INTO testapp_note (id, text, created) VALUES (1, 'x', now())")
            cursor.execute("INSERT INTO testapp_note (id, text, created) VALUES (1, 'x', now())")

    with transaction.atomic():
        pass
    with contextlib.suppress(Exception), transaction.atomic():
        body("parity-atomic")
    retry_error = None
    try:
        retry_atomic(body, "parity-retry")
    except Exception as error:  # main: InternalError from its own query
        retry_error = error
    assert retry_error is None or type(retry_error).__name__ != "InternalError"
    assert server_texts("parity-") == []


def test_retry_atomic_set_rollback_returns_like_atomic():
    @retry_atomic
    def work():
        Note.objects.create(text="setrb")
        transaction.set_rollback(True)
        return "done"

    assert work() == "done"
    assert server_texts("setrb") == []


def test_retry_atomic_counts_the_queries_it_sends():
    """A read-only body sends what atomic sends; a writing one sends one
    query more (the transaction id, to resolve a lost COMMIT), and it is
    counted, not hidden."""
    with CaptureQueriesContext(connection) as plain:
        with transaction.atomic():
            Note.objects.create(text="count-a")
    with CaptureQueriesContext(connection) as retried:
        retry_atomic(lambda: Note.objects.create(text="count-b"))()
    assert len(retried) == len(plain) + 1
    assert "pg_current_xact_id_if_assigned" in retried[-2]["sql"]  # right before COMMIT
    with CaptureQueriesContext(connection) as plain_read:
        with transaction.atomic():
            list(Note.objects.all())
    with CaptureQueriesContext(connection) as read:
        retry_atomic(lambda: list(Note.objects.all()))()
    assert len(read) == len(plain_read)


# ----- 9. the application's settings are its own ------------------------------------


def test_the_databases_setting_is_not_changed():
    entry = {**connection.settings_dict, "OPTIONS": {"pool": True}, "CONN_HEALTH_CHECKS": False}
    DatabaseWrapper(entry, "pooled_probe")
    assert entry["CONN_HEALTH_CHECKS"] is False
    assert "pooled_probe" not in settings.DATABASES
