from __future__ import annotations

import io
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder
from django.test import override_settings

from tests.orca_helpers import _admin, scratch_database


def run(*args, **kwargs) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("aurora_migrate", *args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def scratch(django_db_blocker):
    with scratch_database(django_db_blocker) as alias:
        yield alias


def test_migrates_with_the_timeouts_set(scratch):
    out, _ = run("orca", database=scratch, lock_timeout="3s", statement_timeout="1min")
    assert "is up" in out
    applied = MigrationRecorder(connections[scratch]).applied_migrations()
    assert ("orca", "0002_lookup_data") in applied
    # The run's connection carried the timeouts.
    with connections[scratch].cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone()[0] == "3s"


def test_plan_runs_nothing(scratch):
    out, _ = run("orca", database=scratch, plan=True)
    assert "Apply orca.0001_initial" in out
    assert "-> create the tables of schema 'orca'" in out
    assert not MigrationRecorder(connections[scratch]).has_table()


def test_bad_timeout_is_refused_before_anything_runs(scratch):
    with pytest.raises(CommandError, match="--lock-timeout must be a PostgreSQL duration"):
        run(database=scratch, lock_timeout="5 parsecs")


def test_unknown_database():
    with pytest.raises(CommandError, match="'nope' does not exist"):
        run(database="nope")


def test_a_lock_held_elsewhere_fails_fast_then_the_rerun_succeeds(scratch):
    """The migration meets a table lock held by another session: with
    lock_timeout it gives up quickly (instead of queueing every other query
    behind it), and once the lock is gone the re-run applies it."""
    run("orca_db_app", "0001", database=scratch)
    settings = connections[scratch].settings_dict
    holder = _admin(settings)
    cursor = holder.cursor()
    cursor.execute("BEGIN")
    # Every migration records itself in django_migrations.
    cursor.execute('LOCK TABLE "django_migrations" IN ACCESS EXCLUSIVE MODE')
    err_stream = io.StringIO()
    released = threading.Event()

    def release_after_first_failure():
        # Wait (bounded) until the migration has given up once, then release.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not released.is_set():
            if "lock_timeout" in err_stream.getvalue():
                cursor.execute("ROLLBACK")
                break
            time.sleep(0.02)
        released.set()

    thread = threading.Thread(target=release_after_first_failure)
    thread.start()
    try:
        call_command(
            "aurora_migrate",
            "orca",
            database=scratch,
            lock_timeout="200ms",
            stdout=io.StringIO(),
            stderr=err_stream,
        )
    finally:
        released.set()
        thread.join(timeout=30)
        holder.close()
    assert "within lock_timeout" in err_stream.getvalue()
    applied = MigrationRecorder(connections[scratch]).applied_migrations()
    assert ("orca", "0002_lookup_data") in applied


def test_a_scale_event_in_the_middle_of_a_migration_is_rerun(scratch):
    """The migrating backend is terminated (as a scale event does) while the
    migration runs a slow statement; the migration rolls back whole, and
    aurora_migrate reconnects and runs it again to the end."""
    settings = connections[scratch].settings_dict
    admin = _admin(settings)
    admin.cursor().execute("CREATE TABLE orca_slow_control (seconds float NOT NULL)")
    admin.cursor().execute("INSERT INTO orca_slow_control VALUES (60)")
    killed: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def kill_when_sleeping():
        try:
            cursor = admin.cursor()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not done.is_set():
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND query LIKE %s AND pid <> pg_backend_pid()",
                    ["%orca-slow-migration%"],
                )
                row = cursor.fetchone()
                if row:
                    # The statement in flight read its 60 s already; the
                    # re-run reads 0.
                    cursor.execute("UPDATE orca_slow_control SET seconds = 0")
                    cursor.execute("SELECT pg_terminate_backend(%s)", [row[0]])
                    killed.append(row[0])
                    return
                time.sleep(0.02)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    thread = threading.Thread(target=kill_when_sleeping)
    thread.start()
    try:
        with override_settings(MIGRATION_MODULES={"testapp": "tests.slow_migrations"}):
            out, err = run("testapp", database=scratch)
    finally:
        done.set()
        thread.join(timeout=30)
        admin.close()
    assert not errors
    assert len(killed) == 1
    assert "interrupted the migration" in err or "connection was lost" in err
    assert "Re-running migrate (re-run 1 of 5)" in err
    applied = MigrationRecorder(connections[scratch]).applied_migrations()
    assert ("testapp", "0001_initial") in applied
    with connections[scratch].cursor() as cursor:
        cursor.execute("SELECT to_regclass('testapp_tag') IS NOT NULL")
        assert cursor.fetchone()[0]
