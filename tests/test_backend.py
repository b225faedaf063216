"""The aurora backend against a real PostgreSQL with real faults."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.db import (
    DatabaseError,
    IntegrityError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.db.utils import ProgrammingError

from orca_db.backends.aurora.base import DatabaseWrapper
from orca_db.deadlines import ConnectTimeout
from orca_db.exceptions import (
    OutcomeUnknown,
    RetriesExhausted,
    ScaleEventError,
    TransactionRolledBack,
)
from tests.conftest import admin_connection
from tests.driver import DRIVER
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


def server_count(text: str) -> int:
    """Rows with ``text``, counted on the server over another connection."""
    admin = admin_connection()
    try:
        cur = admin.cursor()
        cur.execute("SELECT count(*) FROM testapp_note WHERE text = %s", [text])
        return cur.fetchone()[0]
    finally:
        admin.close()


@pytest.fixture
def wrapper_factory():
    """DatabaseWrappers on other settings (a wrong password, other options),
    registered in ``connections`` for the test, closed at its end."""
    made: list[DatabaseWrapper] = []

    def make(**overrides) -> DatabaseWrapper:
        settings = {**connection.settings_dict, "OPTIONS": {}, **overrides}
        wrapper = DatabaseWrapper(settings, alias=f"factory{len(made)}")
        connections[wrapper.alias] = wrapper
        made.append(wrapper)
        return wrapper

    yield make
    for wrapper in made:
        wrapper.close()
        del connections[wrapper.alias]


def backend_pid() -> int:
    connection.ensure_connection()
    return connection.connection.info.backend_pid


# ----- reads ----------------------------------------------------------------


def test_read_after_idle_connection_killed_returns_rows(kill_backend, events):
    Note.objects.create(text="a")
    old_pid = kill_backend()

    assert list(Note.objects.values_list("text", flat=True)) == ["a"]
    assert backend_pid() != old_pid
    assert [(e.phase, e.outcome) for e in events] == [("execute", "recovered")]


def test_read_killed_mid_query_returns_rows(backend_killer, events):
    pid = backend_pid()
    backend_killer.kill_when_running(pid, "pg_sleep")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 42 FROM pg_sleep(0.3)")
        assert cursor.fetchone() == (42,)
    backend_killer.join()
    assert backend_killer.killed == [pid]
    assert events[0].outcome == "recovered" and events[0].attempts == 2


def test_server_side_cursor_iteration_after_kill(kill_backend):
    Note.objects.bulk_create(Note(text=f"n{i}") for i in range(5))
    kill_backend()
    assert sorted(n.text for n in Note.objects.iterator(chunk_size=2)) == [
        f"n{i}" for i in range(5)
    ]


# ----- writes in autocommit ---------------------------------------------------


def test_write_on_a_connection_killed_while_idle_is_applied_once(kill_backend, events):
    backend_pid()
    kill_backend()
    Note.objects.create(text="once")
    assert server_count("once") == 1
    assert events and events[-1].outcome == "recovered"


def test_executemany_on_a_killed_connection_is_applied_once(kill_backend):
    backend_pid()
    kill_backend()
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO testapp_note (text, created) VALUES (%s, now())",
            [("many",), ("many",)],
        )
    assert server_count("many") == 2


def test_write_killed_mid_statement_is_never_applied_twice(backend_killer):
    pid = backend_pid()
    backend_killer.kill_when_running(pid, "pg_sleep")
    sql = "INSERT INTO testapp_note (text, created) SELECT %s, now() FROM pg_sleep(0.3)"
    with connection.cursor() as cursor:
        try:
            cursor.execute(sql, ["mid"])
        except OutcomeUnknown as exc:
            outcome = "unknown"
            assert isinstance(exc, OperationalError)
        else:
            outcome = "applied"
    backend_killer.join()
    if DRIVER == "psycopg":
        # The server's own 57P01 proves the INSERT was aborted: replayed once.
        assert (outcome, server_count("mid")) == ("applied", 1)
    else:
        # psycopg2 reports only "server closed the connection": no proof, so
        # no replay; the server had aborted the statement.
        assert (outcome, server_count("mid")) == ("unknown", 0)


def test_retry_writes_option_replays_unproven_writes(backend_killer, wrapper_factory):
    if DRIVER == "psycopg":
        pytest.skip("psycopg 3 always gets the server's proof here")
    db = wrapper_factory(OPTIONS={"aurora": {"retry_writes": True}})
    db.ensure_connection()
    backend_killer.kill_when_running(db.connection.info.backend_pid, "pg_sleep")
    with db.cursor() as cursor:
        cursor.execute(
            "INSERT INTO testapp_note (text, created) SELECT %s, now() FROM pg_sleep(0.3)",
            ["idem"],
        )
    backend_killer.join()
    assert server_count("idem") == 1


# ----- transactions -----------------------------------------------------------


def test_scale_event_in_atomic_block_rolls_back_everything(kill_backend, events):
    with pytest.raises(TransactionRolledBack) as excinfo:
        with transaction.atomic():
            Note.objects.create(text="t1")
            kill_backend()
            Note.objects.create(text="t2")
    assert isinstance(excinfo.value, OperationalError)
    assert server_count("t1") == 0 and server_count("t2") == 0
    # The connection is usable again outside the block.
    assert Note.objects.count() == 0
    assert [(e.phase, e.outcome) for e in events] == [("execute", "raised")]


def test_scale_event_mid_statement_in_atomic_block(backend_killer):
    pid = backend_pid()
    with pytest.raises(TransactionRolledBack):
        with transaction.atomic():
            Note.objects.create(text="p1")
            backend_killer.kill_when_running(pid, "pg_sleep")
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(0.3)")
    backend_killer.join()
    assert server_count("p1") == 0


def test_nested_atomic_block_raises_and_outer_cannot_continue(kill_backend):
    with pytest.raises(TransactionRolledBack):
        with transaction.atomic():
            Note.objects.create(text="outer")
            try:
                with transaction.atomic():
                    kill_backend()
                    Note.objects.create(text="inner")
            except TransactionRolledBack:
                pass
            # The savepoint cannot save it: the whole transaction is gone.
            Note.objects.create(text="after")
    assert server_count("outer") == server_count("inner") == server_count("after") == 0


@pytest.fixture
def slow_commit():
    """COMMIT of a transaction that inserted a 'slowcommit' note sleeps in a
    deferred trigger, long enough to be killed while in flight."""
    admin = admin_connection()
    cur = admin.cursor()
    cur.execute(
        "CREATE FUNCTION orca_slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$"
    )
    cur.execute(
        "CREATE CONSTRAINT TRIGGER orca_slow_commit AFTER INSERT ON testapp_note "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.text = 'slowcommit') "
        "EXECUTE FUNCTION orca_slow_commit()"
    )
    try:
        yield
    finally:
        cur.execute("DROP TRIGGER orca_slow_commit ON testapp_note")
        cur.execute("DROP FUNCTION orca_slow_commit()")
        admin.close()


def test_connection_lost_during_commit_is_outcome_unknown(slow_commit, backend_killer, events):
    pid = backend_pid()
    backend_killer.kill_when_running(pid, "COMMIT")
    with pytest.raises(OutcomeUnknown):
        with transaction.atomic():
            Note.objects.create(text="slowcommit")
    backend_killer.join()
    # Here the server aborted it (killed in the deferred trigger), but the
    # client could not know: it says so instead of guessing.
    assert server_count("slowcommit") == 0
    assert [(e.phase, e.outcome) for e in events] == [("transaction", "raised")]
    assert Note.objects.count() == 0  # the connection is usable again


# ----- errors no retry can cure -----------------------------------------------


def _elapsed(fn) -> tuple[float, BaseException]:
    start = time.perf_counter()
    try:
        fn()
    except Exception as exc:
        return time.perf_counter() - start, exc
    raise AssertionError("no error raised")


def test_sql_errors_surface_at_once_unchanged(events):
    with connection.cursor() as cursor:
        elapsed, exc = _elapsed(lambda: cursor.execute("SELEC 1"))
        assert type(exc) is ProgrammingError and elapsed < 0.05
        elapsed, exc = _elapsed(
            lambda: cursor.execute("INSERT INTO testapp_note (text) VALUES (NULL)")
        )
        assert type(exc) is IntegrityError and elapsed < 0.05
        cursor.execute("SET statement_timeout = 20")
        elapsed, exc = _elapsed(lambda: cursor.execute("SELECT pg_sleep(1)"))
        assert type(exc) is OperationalError and elapsed < 0.5
        assert "statement timeout" in str(exc)
        cursor.execute("RESET statement_timeout")
    assert events == []


def test_bad_password_fails_fast_and_is_not_retried(wrapper_factory, events):
    db = wrapper_factory(PASSWORD="not-the-password")
    elapsed, exc = _elapsed(db.ensure_connection)
    assert type(exc) is OperationalError
    assert "password authentication failed" in str(exc)
    # ~15 ms here (SCRAM); the bound leaves room for a loaded machine.
    assert elapsed < 0.5
    assert events == []


def test_unknown_database_fails_fast(wrapper_factory, events):
    db = wrapper_factory(NAME="no_such_database")
    elapsed, exc = _elapsed(db.ensure_connection)
    assert type(exc) is OperationalError and "does not exist" in str(exc)
    assert elapsed < 0.5 and events == []


# ----- connecting through outages -------------------------------------------


def _aurora_settings(server, **aurora):
    return {
        **connection.settings_dict,
        **server.django_settings(),
        "OPTIONS": {"aurora": aurora} if aurora else {},
    }


@pytest.mark.slow
def test_connect_during_an_outage_succeeds_once_server_is_back(postgres_server, events):
    db = DatabaseWrapper(_aurora_settings(postgres_server), alias="outage")
    postgres_server.stop()
    back_at: list[float] = []

    def end_outage():
        postgres_server.start()  # pg_ctl -w: returns once it accepts connections
        back_at.append(time.monotonic())

    timer = threading.Timer(4, end_outage)
    timer.start()
    try:
        with db.cursor() as cursor:
            cursor.execute("SELECT 1")
            done_at = time.monotonic()
    finally:
        timer.join()
        db.close()
    assert done_at - back_at[0] < 0.5
    assert [(e.phase, e.outcome) for e in events] == [("connect", "recovered")]
    assert events[0].attempts > 10


def test_connect_while_server_is_starting_up(postgres_server, events):
    postgres_server.stop()
    postgres_server.start(standby=True)  # refuses connections until promoted
    db = DatabaseWrapper(_aurora_settings(postgres_server), alias="starting")
    timer = threading.Timer(1.0, postgres_server.promote)
    timer.start()
    try:
        db.ensure_connection()
    finally:
        timer.join()
        db.close()
    assert events[0].phase == "connect" and events[0].outcome == "recovered"
    assert "not accepting connections" in events[0].message


def test_retries_exhausted_after_the_deadline(postgres_server, events):
    postgres_server.stop()
    db = DatabaseWrapper(_aurora_settings(postgres_server, deadline=1.0), alias="down")
    elapsed, exc = _elapsed(db.ensure_connection)
    assert isinstance(exc, RetriesExhausted) and isinstance(exc, OperationalError)
    # The last attempt's own error: the driver's refusal, or, on a machine
    # slow enough that the last (bounded) attempt was still waiting at the
    # deadline, the bound's ConnectTimeout.
    cause = exc.__cause__
    if not isinstance(cause, ConnectTimeout):
        assert type(cause).__name__ == "OperationalError"
        assert type(cause).__module__.startswith("psycopg")
    # It stops rather than sleep past the deadline: within one backoff of it.
    assert 1.0 - 0.25 - 0.05 < elapsed < 1.5
    assert events[-1].outcome == "exhausted"


def test_max_attempts_bounds_the_retries(postgres_server, events):
    postgres_server.stop()
    db = DatabaseWrapper(_aurora_settings(postgres_server, max_attempts=3), alias="down3")
    with pytest.raises(RetriesExhausted):
        db.ensure_connection()
    assert events[-1].attempts == 3


def test_retry_layer_switched_off_behaves_like_django(kill_backend, wrapper_factory, events):
    db = wrapper_factory(OPTIONS={"aurora": {"enabled": False}})
    db.ensure_connection()
    kill_backend(db.alias)
    with pytest.raises(DatabaseError) as excinfo, db.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert not isinstance(excinfo.value, ScaleEventError)
    assert events == []


# ----- connection state after a reconnect -------------------------------------


def test_reconnect_restores_role_and_isolation_level(wrapper_factory, kill_backend):
    admin = admin_connection()
    try:
        cur = admin.cursor()
        cur.execute("DROP ROLE IF EXISTS orca_app_role")
        cur.execute("CREATE ROLE orca_app_role")
    finally:
        admin.close()
    from django.db.backends.postgresql.psycopg_any import IsolationLevel

    db = wrapper_factory(
        OPTIONS={"assume_role": "orca_app_role", "isolation_level": IsolationLevel.SERIALIZABLE}
    )

    def state():
        with transaction.atomic(using=db.alias), db.cursor() as cursor:
            cursor.execute("SELECT current_user, current_setting('transaction_isolation')")
            return cursor.fetchone()

    assert state() == ("orca_app_role", "serializable")
    pid = kill_backend(db.alias)
    with db.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert db.connection.info.backend_pid != pid
    assert state() == ("orca_app_role", "serializable")


# ----- logging ------------------------------------------------------------------


def test_retry_log_records_carry_facts_but_no_parameters(backend_killer, caplog):
    Note.objects.create(text="x")
    backend_killer.kill_when_running(backend_pid(), "pg_sleep")
    with caplog.at_level(logging.INFO, logger="orca_db.retry"):
        # Killed mid-query (an idle connection would be replaced before
        # sending, with no retry to log).
        notes = Note.objects.filter(text="s3cr3t-t0ken").extra(where=["pg_sleep(0.3) IS NOT NULL"])
        assert notes.count() == 0
    backend_killer.join()
    payloads = [r.orca_db for r in caplog.records if hasattr(r, "orca_db")]
    kinds = [p["kind"] for p in payloads]
    assert kinds == ["retry", "settled"]
    retry, settled = payloads
    assert retry["database"] == "default" and retry["phase"] == "execute"
    assert retry["attempt"] == 1 and retry["delay_ms"] > 0
    assert retry["error_type"] in ("AdminShutdown", "OperationalError")
    assert settled["outcome"] == "recovered" and "testapp_note" in settled["statement"]
    everything = caplog.text + repr(payloads)
    assert "s3cr3t" not in everything
    assert connection.settings_dict["PASSWORD"] not in everything


# ----- configuration ------------------------------------------------------------


def test_vendor_stays_postgresql():
    assert connection.vendor == "postgresql"
    assert "aurora" not in connection.get_connection_params()
