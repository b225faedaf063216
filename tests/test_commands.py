"""The aurora_* management commands against real PostgreSQL servers."""

from __future__ import annotations

import copy
import io
import json
import logging
import re
import threading
import time
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections

from orca_db import conf
from orca_db.testing.postgres import connect_driver, free_port
from tests.commands import database_alias, run_command


def session(alias: str = "default", **kwargs: Any):
    """A plain driver session on ``alias``'s database, outside Django."""
    settings = connections[alias].settings_dict
    return connect_driver(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"],
        password=settings["PASSWORD"], dbname=settings["NAME"], **kwargs,
    )  # fmt: skip


def leftover_tables() -> list[str]:
    conn = session()
    try:
        cur = conn.cursor()
        cur.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'orca_db_aurora_verify%'")
        return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


@pytest.mark.parametrize("command", ["aurora_wake", "aurora_verify", "aurora_blockers"])
def test_unknown_alias_is_a_command_error(command):
    out, err, code = run_command(command, "--database", "nope")
    assert code == 2
    assert "Database alias 'nope' does not exist" in err


# ----- aurora_wake ------------------------------------------------------------


def test_wake_running_database_exits_0():
    out, err, code = run_command("aurora_wake", "--timeout", "10")
    assert code == 0, err
    assert "Database 'default' is awake after" in out


def test_wake_json():
    out, err, code = run_command("aurora_wake", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["status"] == "awake"
    assert data["attempts"] == 1
    assert data["exit_code"] == 0


def test_wake_verbosity_0_prints_nothing():
    out, err, code = run_command("aurora_wake", "--verbosity", "0")
    assert (out, err, code) == ("", "", 0)


def test_wake_paused_simulator_exits_0_soon_after_resume(request):
    try:
        simulator = request.getfixturevalue("aurora_simulator")
    except pytest.FixtureLookupError:
        pytest.skip("the aurora_simulator fixture is not available yet")
    settings = simulator.django_settings(copy.deepcopy(connections["default"].settings_dict))
    simulator.pause()
    with database_alias("paused", **settings):
        result: list[tuple[str, str, int]] = []
        finished = threading.Event()

        def wake():
            result.append(run_command("aurora_wake", "--database", "paused", "--timeout", "30"))
            finished.set()

        thread = threading.Thread(target=wake, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while simulator.stats.get("held", 0) < 1:
            assert time.monotonic() < deadline, "the simulator never held a connection"
            assert not finished.is_set(), result
            time.sleep(0.02)
        resumed = time.monotonic()
        simulator.resume()
        assert finished.wait(10)
        woke_after = time.monotonic() - resumed
        thread.join()
    out, err, code = result[0]
    assert code == 0, err
    assert woke_after < 0.5
    assert "is awake after" in out


@pytest.mark.slow
def test_wake_stopped_server_times_out_with_exit_1(postgres_server):
    postgres_server.stop()
    with database_alias("stopped", **postgres_server.django_settings()):
        started = time.monotonic()
        out, err, code = run_command("aurora_wake", "--database", "stopped", "--timeout", "3")
        elapsed = time.monotonic() - started
    assert code == 1, err
    assert 3 <= elapsed <= 4
    assert "did not answer within 3 s" in err
    assert "Connection refused" in err or "connection refused" in err.lower()
    # Not a terminal: plain lines, no carriage returns.
    assert "\r" not in out
    assert "not yet:" in out


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_wake_progress_on_a_terminal_is_redrawn_in_place():
    out, err = Terminal(), io.StringIO()
    with database_alias("refused", PORT=str(free_port())), pytest.raises(SystemExit) as exit_:
        call_command(
            "aurora_wake", "--database", "refused", "--timeout", "1", stdout=out, stderr=err
        )
    assert exit_.value.code == 1
    text = out.getvalue()
    assert text.startswith("\rWaking 'refused':")
    assert "attempt 2, last error: OperationalError" in text
    assert "\n" not in text  # one line, redrawn; the verdict goes to stderr
    assert "did not answer within 1 s" in err.getvalue()


def test_wake_wrong_password_exits_2_at_once():
    with database_alias("badpassword", PASSWORD="not-the-password"):
        started = time.monotonic()
        out, err, code = run_command("aurora_wake", "--database", "badpassword")
        elapsed = time.monotonic() - started
    assert code == 2, err
    assert elapsed < 1
    assert "waiting will not help" in err
    assert "password authentication failed" in err
    assert "not-the-password" not in err + out


def test_wake_unknown_database_exits_2_in_json():
    with database_alias("nodb", NAME="no_such_database"):
        out, err, code = run_command("aurora_wake", "--database", "nodb", "--json")
    assert code == 2
    data = json.loads(out)
    assert data["status"] == "error"
    assert 'database "no_such_database" does not exist' in data["last_error"]


def test_wake_rejects_a_bad_timeout():
    out, err, code = run_command("aurora_wake", "--timeout", "0")
    assert code == 2
    assert "argument --timeout: must be a positive number of seconds, got '0'" in err


# ----- aurora_verify ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_verify_passes_on_postgresql():
    out, err, code = run_command("aurora_verify")
    assert code == 0, out + err
    assert out.count("PASS") == 4
    assert "FAIL" not in out
    assert "All 4 checks passed." in out
    assert leftover_tables() == []


@pytest.mark.django_db(transaction=True)
def test_verify_json():
    out, err, code = run_command("aurora_verify", "--json")
    assert code == 0, out + err
    data = json.loads(out)
    assert data["passed"] is True
    assert [check["passed"] for check in data["checks"]] == [True] * 4


@pytest.mark.django_db(transaction=True)
def test_verify_fails_when_the_retry_layer_is_off():
    options = connections["default"].settings_dict["OPTIONS"]
    saved = copy.deepcopy(options)
    options["aurora"] = {"enabled": False}
    conf.clear_cache()
    try:
        out, err, code = run_command("aurora_verify")
    finally:
        options.clear()
        options.update(saved)
        conf.clear_cache()
    assert code == 1
    assert "FAIL  read replayed after its backend was terminated mid-query" in out
    assert "FAIL  transaction cut mid-way raised TransactionRolledBack" in out
    assert "PASS  syntax error surfaced at once" in out
    assert "3 of 4 checks failed: read replayed" in err
    assert leftover_tables() == []


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.django_db(transaction=True)
def test_verify_reports_its_faults_itself_not_as_error_log_lines():
    """The faults it injects on purpose are in its own output; orca_db's log
    lines about them are held back (before: ``ERROR orca_db.retry: execute on
    database 'default' raised after 1 attempt(s)`` next to "4/4 passed")."""
    handler = Records()
    logger = logging.getLogger("orca_db")
    logger.addHandler(handler)
    saved = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        out, err, code = run_command("aurora_verify", "-v", "2")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
    assert code == 0, out + err
    about_default = [
        r for r in handler.records if getattr(r, "orca_db", {}).get("database") == "default"
    ]
    assert about_default == [], [r.getMessage() for r in about_default]
    assert re.search(r"Injected on purpose: 3 fault\(s\), which provoked [1-9]\d* retry", out)
    assert re.search(r"injected: pg_terminate_backend\(\d+\) while its SELECT ran", out)
    assert re.search(r"retry event: execute recovered after \d+ attempt\(s\)", out)
    # The log works again afterwards.
    assert logging.getLogger("orca_db.retry").filters == []


# ----- aurora_blockers --------------------------------------------------------


@pytest.fixture
def sessions():
    opened = []

    def open_session(application_name: str):
        conn = session(application_name=application_name)
        opened.append(conn)
        return conn

    yield open_session
    for conn in opened:
        conn.close()


def blockers_by_application(*args: str) -> dict[str, dict]:
    out, err, code = run_command("aurora_blockers", "--json", *args)
    assert code == 0, err
    return {s["application_name"]: s for s in json.loads(out)["sessions"]}


@pytest.mark.django_db(transaction=True)
def test_blockers_lists_idle_in_transaction_and_advisory_lock(sessions):
    in_transaction = sessions("orca-idle-in-tx")
    in_transaction.autocommit = False
    in_transaction.cursor().execute("SELECT count(*) FROM testapp_note")
    sessions("orca-advisory").cursor().execute("SELECT pg_advisory_lock(4242)")
    sessions("orca-idle")

    found = blockers_by_application()
    kinds = {name: [r["kind"] for r in s["reasons"]] for name, s in found.items()}
    assert kinds["orca-idle-in-tx"][0] == "idle_in_transaction"
    assert "table_locks" in kinds["orca-idle-in-tx"]
    assert "testapp_note (AccessShareLock)" in found["orca-idle-in-tx"]["reasons"][1]["detail"]
    assert found["orca-idle-in-tx"]["state"] == "idle in transaction"
    assert kinds["orca-advisory"] == ["advisory_locks"]
    assert "4242 (ExclusiveLock)" in found["orca-advisory"]["reasons"][0]["detail"]
    assert kinds["orca-idle"] == ["connected"]
    # Its own session is not listed.
    own = connections["default"].cursor().connection.info.backend_pid
    assert own not in {s["pid"] for s in found.values()}

    assert "orca-idle" not in blockers_by_application("--no-idle")


@pytest.mark.django_db(transaction=True)
def test_blockers_lists_long_queries_listen_and_temporary_tables(sessions):
    sessions("orca-listen").cursor().execute("LISTEN orca_channel")
    temp = sessions("orca-temp")
    temp.cursor().execute("CREATE TEMPORARY TABLE orca_scratch (id integer)")
    sleeper = sessions("orca-sleeper")
    thread = threading.Thread(target=lambda: sleeper.cursor().execute("SELECT pg_sleep(3)"))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            found = blockers_by_application("--long-query", "0")
            if found.get("orca-sleeper", {}).get("state") == "active":
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        thread.join()
    assert found["orca-sleeper"]["reasons"][0]["kind"] == "long_query"
    assert found["orca-sleeper"]["query"] == "SELECT pg_sleep(3)"
    assert [r["kind"] for r in found["orca-listen"]["reasons"]] == ["listen"]
    data = json.loads(run_command("aurora_blockers", "--json")[0])
    if connections["default"].pg_version >= 160000:
        # From PostgreSQL 16 the table is traced to the session that made it.
        mine = {s["application_name"]: s for s in data["sessions"]}
        assert mine["orca-temp"]["reasons"] == [
            {"kind": "temporary_tables", "detail": "temporary tables: orca_scratch"}
        ]
    else:
        # Before, it is listed apart, with its schema.
        tables = [t for temp in data["unattributed_temporary_tables"] for t in temp["tables"]]
        assert "orca_scratch" in tables


@pytest.mark.django_db(transaction=True)
def test_blockers_counts_each_session_once(sessions):
    """Five sessions, one with a temporary table: five sessions, whether or
    not PostgreSQL can tie the table to its session (fails before the fix:
    the untied table was counted as a sixth)."""
    names = [f"orca-count-{i}" for i in range(5)]
    for name in names:
        conn = sessions(name)
    conn.cursor().execute("CREATE TEMPORARY TABLE orca_counted (id integer)")
    out, err, code = run_command("aurora_blockers", "--json")
    assert code == 0, err
    data = json.loads(out)
    mine = [s for s in data["sessions"] if s["application_name"] in names]
    assert len(mine) == 5
    # Every entry is a session (the suite's own connections may be listed too).
    assert all(s["pid"] is not None for s in data["sessions"])
    text, _, _ = run_command("aurora_blockers")
    summary = text.splitlines()[-1]
    assert summary.startswith(f"{len(data['sessions'])} session(s) on 'default'"), summary
    if connections["default"].pg_version < 160000:
        assert "temporary tables in pg_temp_" in text and "orca_counted" in text


@pytest.mark.django_db(transaction=True)
def test_blockers_table_output(sessions):
    conn = sessions("orca-table-output")
    conn.autocommit = False
    conn.cursor().execute("SELECT 1 /* " + "x" * 200 + " */")
    out, err, code = run_command("aurora_blockers")
    assert code == 0, err
    header, *rows, summary = out.splitlines()
    assert header.split()[:3] == ["PID", "AGE", "USER"]
    line = next(row for row in rows if "orca-table-output" in row)
    assert "idle in transaction for" in line
    assert line.endswith("...")
    assert "can block a scaling point" in summary
