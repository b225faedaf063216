"""The Aurora Serverless simulator, seen by a plain driver connection (the
driver of this run) and checked on the server directly."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import threading
import time

import pytest
from django.db import connections

from orca_db.testing.simulator import (
    SCALE_EVENT_MESSAGE,
    SCALE_POINT_MESSAGE,
    AuroraSimulator,
)
from tests.driver import DRIVER
from tests.sim_clients import (
    DISCONNECTED,
    backend_alive,
    connect,
    driver,
    on_server,
    query,
    server,
    sqlstate,
    through,
)
from tests.waiting import wait_until

# ----- plain forwarding -------------------------------------------------------


def test_queries_pass_through_with_the_servers_backend_pid(aurora_simulator):
    conn = through(aurora_simulator)
    try:
        [(pid, answer)] = query(conn, "SELECT pg_backend_pid(), 41 + 1")
        assert answer == 42
        # The pid (and cancel key) the client knows are the server's own.
        assert pid == conn.info.backend_pid
        assert backend_alive(pid)
        assert aurora_simulator.stats["active"] == 1
    finally:
        conn.close()
    aurora_simulator.wait_for(lambda s: s["active"] == 0)
    assert aurora_simulator.stats["connections"] == 1


def test_ssl_request_is_answered_no(aurora_simulator):
    conn = through(aurora_simulator, sslmode="prefer")
    try:
        assert query(conn, "SELECT 1") == [(1,)]
    finally:
        conn.close()
    with pytest.raises(driver.OperationalError, match="server does not support SSL"):
        through(aurora_simulator, sslmode="require")


def test_large_results_and_copy_pass_through(aurora_simulator):
    conn = through(aurora_simulator)
    try:
        rows = query(conn, "SELECT i, repeat('x', 1000) FROM generate_series(1, 5000) i")
        assert len(rows) == 5000 and rows[-1][0] == 5000
    finally:
        conn.close()


def test_django_settings_point_at_the_proxy(aurora_simulator):
    base = {"ENGINE": "orca_db.backends.aurora", "HOST": "db", "PORT": "5432", "NAME": "x"}
    settings = aurora_simulator.django_settings(base)
    assert settings == {**base, "HOST": aurora_simulator.host, "PORT": str(aurora_simulator.port)}
    assert base["HOST"] == "db"


# ----- startup rejected past the scale point --------------------------------


def test_rejected_startups_see_auroras_text(aurora_simulator):
    aurora_simulator.reject_startups(2)
    for _ in range(2):
        with pytest.raises(driver.OperationalError) as caught:
            through(aurora_simulator)
        assert f"FATAL:  {SCALE_POINT_MESSAGE}" in str(caught.value)
    conn = through(aurora_simulator)
    conn.close()
    stats = aurora_simulator.stats
    assert stats["rejected"] == 2 and stats["connections"] == 3


# ----- scale event ----------------------------------------------------------


def test_scale_event_sends_auroras_fatal(aurora_simulator):
    conn = through(aurora_simulator)
    try:
        pid = conn.info.backend_pid
        assert aurora_simulator.scale_event() == 1
        assert not backend_alive(pid)
        if DRIVER == "psycopg":
            with pytest.raises(driver.errors.AdminShutdown) as caught:
                query(conn, "SELECT 1")
            assert str(caught.value) == SCALE_EVENT_MESSAGE
            assert sqlstate(caught.value) == "57P01"
        else:
            # libpq (>= 14) hands psycopg2 only the end of the stream, as it
            # does for a real server's FATAL; but read while idle, the FATAL
            # is passed to the notice processor with its exact text.
            with pytest.raises(driver.OperationalError, match=DISCONNECTED):
                for _ in range(3):  # the FATAL, then the end of the stream
                    conn.poll()
            assert f"FATAL:  {SCALE_EVENT_MESSAGE}\n" in conn.notices
    finally:
        conn.close()
    assert aurora_simulator.stats["terminated"] == 1


def test_scale_event_rolls_back_the_servers_transaction(aurora_simulator):
    admin = server()
    query(admin, "CREATE TABLE sim_probe (id int)")
    conn = through(aurora_simulator)
    try:
        conn.autocommit = False
        query(conn, "INSERT INTO sim_probe VALUES (1)")
        [(xid,)] = query(conn, "SELECT pg_current_xact_id()::text")
        query(conn, "SELECT pg_advisory_xact_lock(4242)")
        pid = conn.info.backend_pid

        assert aurora_simulator.scale_event() == 1

        # Checked on the server, around the proxy: the backend is gone, its
        # transaction aborted, its lock released, its row never visible.
        assert not backend_alive(pid)
        assert query(admin, "SELECT pg_xact_status(%s::xid8)", [xid]) == [("aborted",)]
        assert query(admin, "SELECT pg_try_advisory_lock(4242)") == [(True,)]
        assert query(admin, "SELECT count(*) FROM sim_probe") == [(0,)]
        with pytest.raises(driver.OperationalError):
            query(conn, "COMMIT")
    finally:
        conn.close()
        query(admin, "DROP TABLE sim_probe")
        admin.close()


def test_scale_event_ends_a_running_statement(aurora_simulator):
    conn = through(aurora_simulator)
    pid = conn.info.backend_pid
    errors: list[BaseException] = []

    def run():
        try:
            query(conn, "SELECT pg_sleep(60)")
        except driver.OperationalError as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_until(
            lambda: on_server(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event = 'PgSleep'", [pid]
            )
        )
        assert aurora_simulator.scale_event() == 1
        worker.join(timeout=20)
        assert not worker.is_alive()
        assert not backend_alive(pid)
        [error] = errors
        if DRIVER == "psycopg":
            assert str(error) == SCALE_EVENT_MESSAGE
        else:
            assert DISCONNECTED in str(error)
    finally:
        worker.join(timeout=20)
        conn.close()


# ----- pause and resume -----------------------------------------------------


def test_paused_connect_is_held_until_resume(aurora_simulator):
    aurora_simulator.pause()
    connected_at: list[float] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def open_one():
        try:
            conn = through(aurora_simulator)
            connected_at.append(time.monotonic())
            query(conn, "SELECT 1")
            conn.close()
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=open_one)
    worker.start()
    try:
        aurora_simulator.wait_for(lambda s: s["holding"] == 1)
        # Held: the TCP connection is accepted, the startup goes nowhere.
        assert not done.wait(0.3)
        resumed_at = time.monotonic()
        aurora_simulator.resume()
        assert done.wait(10)
    finally:
        aurora_simulator.resume()
        worker.join(timeout=10)
    assert not errors
    [at] = connected_at
    assert at > resumed_at
    assert at - resumed_at < 1.0  # a generous bound; benchmarks/ measures it
    stats = aurora_simulator.stats
    assert stats["held"] == 1 and stats["holding"] == 0


def test_pause_leaves_open_sessions_alone_and_can_resume_by_itself(aurora_simulator):
    conn = through(aurora_simulator)
    try:
        aurora_simulator.pause(resume_after=0.2)
        assert query(conn, "SELECT 1") == [(1,)]
        late = through(aurora_simulator)  # held about 0.2 s
        late.close()
        assert aurora_simulator.stats["held"] == 1
        assert not aurora_simulator.paused
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("failure", "text"),
    [
        ("eof", DISCONNECTED),
        ("too_many_connections", "FATAL:  sorry, too many clients already"),
        ("pg_hba", 'FATAL:  no pg_hba.conf entry for host "127.0.0.1"'),
        ("starting_up", "FATAL:  the database system is starting up"),
    ],
)
def test_resume_storm_fails_some_connects_fast(aurora_simulator, failure, text):
    # Half the connects during the pause fail at once; the others are held.
    aurora_simulator.pause(storm=0.5, storm_failure=failure)
    held: list = []
    worker = threading.Thread(target=lambda: held.append(through(aurora_simulator)))
    worker.start()
    try:
        aurora_simulator.wait_for(lambda s: s["holding"] == 1)
        with pytest.raises(driver.OperationalError) as caught:
            through(aurora_simulator)
        assert text in str(caught.value)
    finally:
        aurora_simulator.resume()
        worker.join(timeout=10)
    [conn] = held
    assert query(conn, "SELECT 1") == [(1,)]
    conn.close()
    stats = aurora_simulator.stats
    assert stats["storm_failed"] == 1 and stats["held"] == 1


# ----- drop -----------------------------------------------------------------


def test_drop_cuts_with_no_message(aurora_simulator):
    conn = through(aurora_simulator)
    try:
        pid = conn.info.backend_pid
        assert aurora_simulator.drop_connections() == 1
        with pytest.raises(driver.OperationalError) as caught:
            query(conn, "SELECT 1")
        assert DISCONNECTED in str(caught.value)
        assert "FATAL" not in str(caught.value)
        # The idle backend reads the end of its stream and exits.
        wait_until(lambda: not backend_alive(pid))
    finally:
        conn.close()
    assert aurora_simulator.stats["dropped"] == 1


# ----- cancel ---------------------------------------------------------------


@pytest.mark.skipif(
    DRIVER == "psycopg2",
    reason="psycopg2's cancel() holds the GIL while it waits for the server: "
    "it deadlocks with a simulator in the same process (docs/simulator.md)",
)
def test_cancel_request_reaches_the_server(aurora_simulator):
    conn = through(aurora_simulator)
    timer = threading.Timer(0.2, conn.cancel_safe)
    timer.start()
    try:
        with pytest.raises(driver.errors.QueryCanceled):
            query(conn, "SELECT pg_sleep(30)")
        assert query(conn, "SELECT 1") == [(1,)]
    finally:
        timer.join()
        conn.close()
    assert aurora_simulator.stats["cancel_requests"] == 1


# ----- many connections, shutdown -------------------------------------------


def test_200_concurrent_connections(aurora_simulator):
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        conns = list(
            pool.map(lambda _: through(aurora_simulator, application_name="sim200"), range(200))
        )
        try:
            pids = list(pool.map(lambda c: query(c, "SELECT pg_backend_pid()")[0][0], conns))
            assert len(set(pids)) == 200
            assert on_server(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sim200'"
            ) == [(200,)]
            assert aurora_simulator.stats["active"] == 200
        finally:
            for conn in conns:
                conn.close()
    aurora_simulator.wait_for(lambda s: s["active"] == 0)


def test_stop_closes_every_connection():
    settings = connections["default"].settings_dict
    sim = AuroraSimulator(settings["HOST"], settings["PORT"]).start()
    conn = through(sim)
    pid = conn.info.backend_pid
    sim.pause()
    errors: list[BaseException] = []

    def held_connect():
        try:
            through(sim)
        except driver.OperationalError as exc:
            errors.append(exc)

    worker = threading.Thread(target=held_connect)
    worker.start()
    sim.wait_for(lambda s: s["holding"] == 1)
    sim.stop()
    sim.stop()  # twice is harmless
    worker.join(timeout=10)
    assert len(errors) == 1
    with pytest.raises(driver.OperationalError):
        query(conn, "SELECT 1")
    conn.close()
    wait_until(lambda: not backend_alive(pid))
    with pytest.raises(driver.OperationalError):
        through(sim)


# ----- command line ---------------------------------------------------------


def test_command_line(tmp_path):
    settings = connections["default"].settings_dict
    process = subprocess.Popen(
        [
            sys.executable, "-m", "orca_db.testing.simulator",
            "--upstream", f"{settings['HOST']}:{settings['PORT']}",
            "--listen", "127.0.0.1:0",
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        banner = process.stdout.readline()
        port = int(banner.split(" -> ")[0].rsplit(":", 1)[1])
        process.stdin.write("reject 1\n")
        process.stdin.flush()
        assert "rejected=0" in process.stdout.readline()  # the counters after it
        with pytest.raises(driver.OperationalError, match=SCALE_POINT_MESSAGE):
            connect("127.0.0.1", port)
        connect("127.0.0.1", port).close()
        process.stdin.write("limit 0\n")
        process.stdin.flush()
        process.stdout.readline()
        with pytest.raises(driver.OperationalError, match="too many clients already"):
            connect("127.0.0.1", port)
        process.stdin.write("limit off\nsilence\n")
        process.stdin.flush()
        process.stdout.readline()
        assert process.stdout.readline().startswith("silenced 0 sessions")
        process.stdout.readline()
        process.stdin.write("stats\nquit\n")
        process.stdin.flush()
        assert "rejected=1 " in (last := process.stdout.readline()) and "limited=1 " in last
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.skipif(
    bool(os.environ.get("ORCA_DB_TEST_DATABASE_URL")), reason="needs the suite's own server"
)
def test_upstream_over_a_unix_socket():
    from orca_db.testing.postgres import shared_server

    server_process = shared_server()
    with AuroraSimulator(str(server_process.base), server_process.port) as sim:
        conn = through(sim)
        try:
            assert query(conn, "SELECT 1") == [(1,)]
        finally:
            conn.close()
