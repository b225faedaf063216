"""Retry events: stored as rows, logged as JSON lines, pruned; after real
faults on a real PostgreSQL."""

from __future__ import annotations

import datetime
import io
import json
import logging

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.db.backends.signals import connection_created
from django.test import override_settings
from django.utils import timezone

from orca_db import conf
from orca_db.events import lambda_request_id
from orca_db.exceptions import RetriesExhausted, TransactionRolledBack
from orca_db.logging import JsonFormatter
from orca_db.testing.postgres import free_port
from orca_db_app import receivers
from orca_db_app.models import RetryEvent
from tests.conftest import admin_connection
from tests.driver import DRIVER
from tests.testapp.models import Note

# The events are written on a connection of their own: only a transactional
# test database sees them (and gets rid of them afterwards).
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

SECRET = "s3cr3t-t0ken-4242"


@pytest.fixture
def json_lines():
    """The JSON lines ``orca_db.*`` loggers write, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    logger = logging.getLogger("orca_db")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    lines.raw = stream  # type: ignore[attr-defined]
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.fixture
def extra_alias():
    """Add a DATABASES alias for the test (a database that is down, say)."""
    added: list[str] = []

    def add(alias: str, **overrides):
        connections.settings[alias] = {**connections["default"].settings_dict, **overrides}
        added.append(alias)
        conf.clear_cache()
        return connections[alias]

    yield add
    for alias in added:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]


@pytest.fixture
def events_connections():
    """The connections opened to write events."""
    opened = []

    def created(sender, connection, **kwargs):
        if connection.alias.endswith("__orca_events"):
            opened.append(connection)

    connection_created.connect(created)
    yield opened
    connection_created.disconnect(created)


def settled(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line.get("kind") == "settled"]


# ----- storing -------------------------------------------------------------------


def test_recovered_read_stores_one_event_and_the_json_line_says_the_same(kill_backend, json_lines):
    Note.objects.create(text="a")
    kill_backend()

    assert list(Note.objects.values_list("text", flat=True)) == ["a"]

    event = RetryEvent.objects.get()
    assert (event.database, event.phase, event.outcome) == ("default", "execute", "recovered")
    assert event.attempts == 2 and event.elapsed_ms > 0
    assert "testapp_note" in event.statement
    # psycopg2 may only see the socket close, without the server's 57P01.
    assert event.sqlstate == "57P01" or (DRIVER == "psycopg2" and event.sqlstate is None)
    assert event.pid and event.host
    [retry] = [line for line in json_lines() if line.get("kind") == "retry"]
    assert retry["database"] == "default" and retry["attempt"] == 1
    [line] = settled(json_lines())
    assert line["level"] == "WARNING" and line["logger"] == "orca_db.events"
    assert line["outcome"] == event.outcome
    assert line["database"] == event.database
    assert line["phase"] == event.phase
    assert line["attempts"] == event.attempts
    assert line["error_type"] == event.error_type
    assert line["sqlstate"] == event.sqlstate
    assert line["error_message"] == event.message
    assert line["statement"] == event.statement
    assert line["host"] == event.host and line["pid"] == event.pid
    assert datetime.datetime.fromisoformat(line["occurred_at"]) == event.occurred_at
    assert line["elapsed_ms"] == pytest.approx(event.elapsed_ms, abs=0.1)


def test_event_from_a_rolled_back_transaction_is_stored(kill_backend):
    with pytest.raises(TransactionRolledBack), transaction.atomic():
        Note.objects.create(text="t1")
        kill_backend()
        Note.objects.create(text="t2")

    assert not Note.objects.exists()
    event = RetryEvent.objects.get()
    assert (event.phase, event.outcome) == ("execute", "raised")
    assert "INSERT INTO" in event.statement


def test_events_connection_is_separate_without_retries_and_closed(kill_backend, events_connections):
    connection.ensure_connection()
    app_pid = connection.connection.info.backend_pid
    kill_backend()
    Note.objects.count()

    [events_db] = events_connections
    assert events_db.alias == "default__orca_events"
    assert events_db.connection is None  # closed right after the write
    settings = events_db.retry_settings
    assert settings.max_attempts == 1 and settings.record_events is False
    assert settings.statement_deadline == 5
    assert events_db.get_connection_params()["connect_timeout"] == 2
    assert connection.connection.info.backend_pid != app_pid
    assert RetryEvent.objects.count() == 1


def test_events_connection_of_a_pooled_engine_is_not_pooled(
    kill_backend, extra_alias, events_connections
):
    from dj_db_conn_pool.core import pool_container

    extra_alias("pooled", ENGINE="orca_db.backends.aurora_pool")
    with override_settings(ORCA_DB_EVENTS_DATABASE="pooled"):
        Note.objects.count()
        kill_backend()
        Note.objects.count()
    [events_db] = events_connections
    assert events_db.alias == "pooled__orca_events" and events_db.connection is None
    assert not pool_container.has("pooled__orca_events")
    assert RetryEvent.objects.get().database == "default"


def test_record_events_off_stores_nothing_but_still_logs(kill_backend, json_lines):
    options = connection.settings_dict["OPTIONS"]
    options["aurora"] = {**options.get("aurora", {}), "record_events": False}
    conf.clear_cache()
    try:
        Note.objects.count()
        kill_backend()
        Note.objects.count()
    finally:
        options["aurora"].pop("record_events")
        conf.clear_cache()
    assert not RetryEvent.objects.exists()
    assert [line["outcome"] for line in settled(json_lines())] == ["recovered"]


def test_events_database_setting_picks_where_events_go(kill_backend, events_connections):
    with override_settings(ORCA_DB_EVENTS_DATABASE="other"):
        Note.objects.count()
        kill_backend()
        Note.objects.count()
    assert [db.alias for db in events_connections] == ["other__orca_events"]
    assert RetryEvent.objects.using("other").get().database == "default"


def test_event_of_a_database_that_is_down_is_deferred_not_stored_into_it(
    extra_alias, json_lines, events_connections
):
    # The event is about a database that is down, and goes to that database:
    # no connection is tried into it; the event waits, and is in the logs.
    down = extra_alias("down", PORT=str(free_port()), OPTIONS={"aurora": {"max_attempts": 2}})
    with pytest.raises(RetriesExhausted):
        down.connect()  # (ensure_connection is fenced off by Django's tests)

    lines = json_lines()
    assert [line["outcome"] for line in settled(lines)] == ["exhausted"]
    [deferred] = [line for line in lines if line.get("kind") == "event_deferred"]
    assert deferred["database"] == "down" and "did not come back" in deferred["message"]
    assert len(events_connections) == 0
    assert receivers.deferred_count() == 1
    # Not back (nothing connected to it since): a flush does not connect
    # into it either; nothing lost.
    assert receivers.flush_deferred_events() == 0
    assert len(events_connections) == 0
    assert not [line for line in json_lines() if line.get("kind") == "store_failed"]
    assert receivers.deferred_count() == 1
    assert not RetryEvent.objects.exists()


def test_deferred_events_are_written_by_the_next_store_that_works(extra_alias, kill_backend):
    down = extra_alias("down", PORT=str(free_port()), OPTIONS={"aurora": {"max_attempts": 2}})
    with pytest.raises(RetriesExhausted):
        down.connect()
    assert receivers.deferred_count() == 1
    # "down" comes back (here: pointed at the live server).
    down.settings_dict.update(PORT=connection.settings_dict["PORT"])
    connections.settings["down"]["PORT"] = connection.settings_dict["PORT"]
    Note.objects.count()
    kill_backend()
    Note.objects.count()  # a recovered read on "default", stored at once...
    assert list(RetryEvent.objects.values_list("database", "outcome")) == [("default", "recovered")]
    # ... into "default"; "down"'s event waits for a store into "down" (here
    # the same server, so both rows end in one table).
    assert receivers.deferred_count() == 1
    assert receivers.flush_deferred_events() == 1
    assert receivers.deferred_count() == 0
    assert sorted(RetryEvent.objects.values_list("database", "outcome")) == [
        ("default", "recovered"),
        ("down", "exhausted"),
    ]


def test_bad_events_database_setting_is_logged(kill_backend, json_lines):
    with override_settings(ORCA_DB_EVENTS_DATABASE="nowhere"):
        Note.objects.count()
        kill_backend()
        assert Note.objects.count() == 0
    [failure] = [line for line in json_lines() if line.get("kind") == "store_failed"]
    assert failure["error_type"] == "ImproperlyConfigured"


# ----- secrets ---------------------------------------------------------------------


def test_no_parameter_value_or_password_in_events_or_log_lines(
    kill_backend, extra_alias, json_lines
):
    password = connection.settings_dict["PASSWORD"]
    assert password  # the test server has one

    # A read, a write in a transaction and a failed connect, each with a
    # secret-looking value as a parameter (and a literal, and a password).
    Note.objects.create(text="x")
    kill_backend()
    assert not Note.objects.filter(text=SECRET).exists()
    with pytest.raises(TransactionRolledBack), transaction.atomic():
        Note.objects.create(text="y")
        kill_backend()
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE testapp_note SET text = %s WHERE text = '{SECRET}'", [SECRET])
    down_password = "hunter2-" + SECRET
    with override_settings(ORCA_DB_EVENTS_DATABASE="default"):
        down = extra_alias(
            "down",
            PORT=str(free_port()),
            PASSWORD=down_password,
            OPTIONS={"aurora": {"max_attempts": 2}},
        )
        with pytest.raises(RetriesExhausted):
            down.connect()

    stored = list(RetryEvent.objects.values())
    assert sorted((row["phase"], row["outcome"]) for row in stored) == [
        ("connect", "exhausted"),
        ("execute", "raised"),
        ("execute", "recovered"),
    ]
    everything = repr(stored) + json_lines.raw.getvalue()
    assert SECRET not in everything
    assert password not in everything
    assert "hunter2" not in everything
    assert "UPDATE testapp_note SET text = %s WHERE text = ?" in everything


# ----- JSON lines ----------------------------------------------------------------


def test_json_formatter_flattens_the_payload_and_adds_the_lambda_request_id():
    record = logging.LogRecord("orca_db.retry", logging.INFO, __file__, 1, "msg %s", ("x",), None)
    record.orca_db = {"kind": "retry", "database": "default", "message": "boom", "level": 3}
    token = lambda_request_id.set("req-123")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        lambda_request_id.reset(token)
    assert line["message"] == "msg x" and line["level"] == "INFO"
    assert line["logger"] == "orca_db.retry" and "timestamp" in line
    assert line["kind"] == "retry" and line["database"] == "default"
    assert line["error_message"] == "boom" and line["orca_db_level"] == 3
    assert line["lambda_request_id"] == "req-123"
    assert "orca_db" not in line

    plain = logging.LogRecord("other", logging.INFO, __file__, 1, "plain", (), None)
    assert set(json.loads(JsonFormatter().format(plain))) == {
        "message",
        "level",
        "logger",
        "timestamp",
    }


# ----- retention -----------------------------------------------------------------


def make_events(ages_in_days: list[float], database: str = "default") -> None:
    now = timezone.now()
    RetryEvent.objects.using(database).bulk_create(
        RetryEvent(
            occurred_at=now - datetime.timedelta(days=age),
            database="default",
            phase="execute",
            error_type="AdminShutdown",
            attempts=2,
            outcome="recovered",
            elapsed_ms=120.0,
        )
        for age in ages_in_days
    )


def run(*args: str, **kwargs) -> str:
    out = io.StringIO()
    call_command("aurora_prune_events", *args, stdout=out, **kwargs)
    return out.getvalue()


def test_prune_deletes_old_events_in_batches():
    make_events([0.5, 3, 8, 9, 10, 30, 31])
    out = run("--days", "7", "--batch-size", "2", verbosity=2)
    assert out.count("Deleted a batch of 2.") == 2
    assert "Deleted 5 retry event(s) older than 7 day(s) from 'default'." in out
    assert RetryEvent.objects.count() == 2


def test_prune_dry_run_and_retention_setting():
    make_events([1, 40, 50])
    assert "2 retry event(s) older than 30 day(s) would be deleted" in run(
        "--days", "30", "--dry-run"
    )
    assert RetryEvent.objects.count() == 3
    with override_settings(ORCA_DB_EVENT_RETENTION_DAYS=45):
        assert run(verbosity=0) == ""
    assert RetryEvent.objects.count() == 2


def test_prune_other_database():
    make_events([100], database="other")
    with override_settings(ORCA_DB_EVENTS_DATABASE="other"):
        assert "from 'other'" in run("--days", "1")
    assert not RetryEvent.objects.using("other").exists()


@pytest.mark.parametrize(
    ("args", "settings", "message"),
    [
        ((), {}, "Give --days or set ORCA_DB_EVENT_RETENTION_DAYS."),
        (("--days", "-1"), {}, "--days must be 0 or more, got -1."),
        (("--days", "1", "--batch-size", "0"), {}, "--batch-size must be 1 or more, got 0."),
        (("--days", "1", "--database", "nope"), {}, "Database alias 'nope' does not exist"),
        ((), {"ORCA_DB_EVENT_RETENTION_DAYS": "7"}, "must be a non-negative integer"),
        (("--days", "1"), {"ORCA_DB_EVENTS_DATABASE": "nope"}, "must name an alias"),
    ],
)
def test_prune_usage_errors_exit_2(args, settings, message):
    # The commands' convention (docs/commands.md#exit-codes): usage and
    # configuration errors exit 2.
    with override_settings(**settings), pytest.raises(CommandError) as excinfo:
        run(*args)
    assert message in str(excinfo.value)
    assert excinfo.value.returncode == 2


def test_prune_database_error_exits_2():
    make_events([10])
    admin = admin_connection()
    try:
        admin.cursor().execute("ALTER TABLE orca_db_app_retryevent RENAME TO hidden_events")
        with pytest.raises(CommandError) as excinfo:
            run("--days", "1")
    finally:
        admin.cursor().execute("ALTER TABLE hidden_events RENAME TO orca_db_app_retryevent")
        admin.close()
    # A missing table: no wait helps, migrate first.
    assert excinfo.value.returncode == 2
    assert "after deleting 0 event(s) from 'default': UndefinedTable" in str(excinfo.value)
    assert "Running the command again is safe." in str(excinfo.value)


# ----- system checks ---------------------------------------------------------------


def test_checks_flag_bad_event_settings():
    from orca_db_app.checks import check_event_settings

    assert check_event_settings() == []
    with override_settings(ORCA_DB_EVENTS_DATABASE="nope", ORCA_DB_EVENT_RETENTION_DAYS=-3):
        messages = check_event_settings()
    assert [m.id for m in messages] == ["orca_db.W020", "orca_db.W021"]
    assert "'nope'" in messages[0].msg and "-3" in messages[1].msg
