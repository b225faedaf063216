"""retry_atomic against a real PostgreSQL with real faults (pg_terminate_backend)."""

from __future__ import annotations

import logging
import queue
import random
import socket
import threading
import time

import pytest
from django.db import IntegrityError, connection, connections, transaction

import orca_db
from orca_db.backends.aurora.base import DatabaseWrapper
from orca_db.exceptions import OutcomeUnknown, RetriesExhausted, TransactionRolledBack
from orca_db.testing.postgres import PostgresServer
from orca_db.transaction import retry_atomic
from tests.conftest import admin_connection
from tests.testapp.models import Note, Tag

pytestmark = pytest.mark.django_db(transaction=True)


def server_rows(prefix: str) -> dict[str, tuple[int, int]]:
    """{note text: (notes with it, tags of them)} for notes starting with
    ``prefix``, counted on the server over another connection."""
    admin = admin_connection()
    try:
        cur = admin.cursor()
        cur.execute(
            "SELECT n.text, count(DISTINCT n.id), count(t.id) FROM testapp_note n "
            "LEFT JOIN testapp_tag t ON t.note_id = n.id WHERE n.text LIKE %s GROUP BY n.text",
            [prefix + "%"],
        )
        rows = {text: (notes, tags) for text, notes, tags in cur.fetchall()}
        cur.execute(
            "SELECT count(*) FROM testapp_tag t JOIN testapp_note n ON n.id = t.note_id "
            "WHERE n.text LIKE %s",
            [prefix + "%"],
        )
        return rows
    finally:
        admin.close()


def run_transactions(move, prefix: str, *, budget: float) -> dict[str, str]:
    """Up to 300 transactions ``move(key)`` (fewer on a very slow machine:
    at most ``budget`` seconds); each key's outcome, "ok" or "unknown"."""
    outcomes: dict[str, str] = {}
    give_up_at = time.monotonic() + budget
    for i in range(300):
        if time.monotonic() > give_up_at:
            break
        key = f"{prefix}{i:04d}"
        try:
            assert move(key) == key
            outcomes[key] = "ok"
        except OutcomeUnknown:
            outcomes[key] = "unknown"
    return outcomes


def assert_exactly_once(prefix: str, outcomes: dict[str, str]) -> None:
    """On the server: every acknowledged transaction once and whole (a note,
    two tags), every unknown one once and whole or not at all, no others."""
    rows = server_rows(prefix)
    for key, outcome in outcomes.items():
        expected = [(1, 2)] if outcome == "ok" else [None, (1, 2)]
        assert rows.get(key) in expected, key
    assert set(rows) <= set(outcomes)


def backend_pid(alias: str = "default") -> int:
    connections[alias].ensure_connection()
    return connections[alias].connection.info.backend_pid


def write_note(text: str, tags: int = 2) -> int:
    note = Note.objects.create(text=text)
    Tag.objects.bulk_create([Tag(note=note, name=f"{text}/{i}") for i in range(tags)])
    return note.pk


# ----- the three forms ----------------------------------------------------------


def test_forms_decorator_with_options_and_direct_call():
    @retry_atomic
    def plain(text):
        return write_note(text)

    @retry_atomic(using="default", deadline=5)
    def with_options(text):
        return write_note(text)

    assert isinstance(plain("form-a"), int)
    assert isinstance(with_options("form-b"), int)
    assert isinstance(retry_atomic(write_note, "form-c", tags=1), int)
    assert plain.__name__ == "plain"
    assert orca_db.retry_atomic is retry_atomic
    assert server_rows("form-") == {"form-a": (1, 2), "form-b": (1, 2), "form-c": (1, 1)}


def test_errors_of_the_function_surface_unchanged_and_roll_back(events):
    calls = []

    @retry_atomic
    def fails():
        calls.append(1)
        write_note("err-1")
        raise ValueError("application bug")

    with pytest.raises(ValueError, match="application bug"):
        fails()

    @retry_atomic
    def duplicate_pk():
        calls.append(2)
        note = Note.objects.create(text="err-2")
        Note.objects.create(id=note.id, text="err-2")

    with pytest.raises(IntegrityError):
        duplicate_pk()
    assert calls == [1, 2]  # never run again
    assert server_rows("err-") == {}
    assert events == []


# ----- scale events in the transaction ------------------------------------------


def test_killed_mid_transaction_runs_again_exactly_once(kill_backend, events):
    runs = []

    @retry_atomic
    def move(text):
        runs.append(backend_pid())
        note = Note.objects.create(text=text)
        if len(runs) == 1:
            kill_backend()  # a scale event between two statements
        Tag.objects.create(note=note, name="x")
        return note.text

    assert move("mid-1") == "mid-1"
    assert len(runs) == 2 and runs[0] != runs[1]
    assert server_rows("mid-") == {"mid-1": (1, 1)}
    assert [(e.phase, e.outcome, e.attempts) for e in events] == [("transaction", "recovered", 2)]


def test_killed_mid_statement_runs_again(backend_killer, events):
    runs = []

    @retry_atomic
    def slow():
        runs.append(1)
        write_note("slow-1")
        if len(runs) == 1:
            backend_killer.kill_when_running(backend_pid(), "pg_sleep")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.2)")

    slow()
    backend_killer.join()
    assert len(runs) == 2
    assert server_rows("slow-") == {"slow-1": (1, 2)}


def test_idle_connection_killed_before_the_block_is_replaced_without_a_rerun(kill_backend, events):
    old = backend_pid()
    kill_backend()
    runs = []

    @retry_atomic
    def work():
        runs.append(backend_pid())
        write_note("idle-1")

    work()
    assert len(runs) == 1 and runs[0] != old
    assert server_rows("idle-") == {"idle-1": (1, 2)}
    assert [(e.phase, e.outcome, e.error_type) for e in events] == [
        ("transaction", "recovered", "ServerClosedConnection")
    ]


def test_nested_retry_atomic_behaves_like_atomic_and_the_outermost_retries(kill_backend):
    inner_runs, outer_runs = [], []

    @retry_atomic
    def inner():
        inner_runs.append(1)
        write_note("nest-inner")
        if len(inner_runs) == 1:
            kill_backend()
        Note.objects.count()

    @retry_atomic
    def outer():
        outer_runs.append(1)
        write_note("nest-outer")
        inner()

    outer()
    assert len(outer_runs) == 2 and len(inner_runs) == 2
    assert server_rows("nest-") == {"nest-inner": (1, 2), "nest-outer": (1, 2)}

    # Inside a plain atomic block, the inner one does not retry by itself.
    inner_runs.clear()
    with pytest.raises(TransactionRolledBack), transaction.atomic():
        inner()
    assert len(inner_runs) == 1


def test_deadline_runs_out_as_retries_exhausted(kill_backend, events):
    runs = []

    @retry_atomic(deadline=0.5)
    def always_killed():
        runs.append(1)
        write_note("dl-1")
        kill_backend()
        Note.objects.count()

    with pytest.raises(RetriesExhausted):
        always_killed()
    assert len(runs) >= 2
    assert server_rows("dl-") == {}
    assert [(e.phase, e.outcome) for e in events] == [("transaction", "exhausted")]


def test_on_commit_callbacks_run_once_after_the_run_that_committed(kill_backend):
    called = []

    @retry_atomic
    def work():
        transaction.on_commit(lambda: called.append(len(called)))
        write_note("hook-1")
        if not called and not getattr(work, "killed", False):
            work.killed = True
            kill_backend()
        Note.objects.count()

    work()
    assert called == [0]


def commit_resolutions(caplog) -> list[str]:
    return [
        r.orca_db["status"]
        for r in caplog.records
        if getattr(r, "orca_db", {}).get("kind") == "commit_resolution"
    ]


def test_random_scale_events_over_a_few_hundred_transactions(events, caplog):
    """A killer thread ends the backend at random moments (between
    statements, mid-statement, during COMMIT, while idle): every transaction
    is on the server exactly once, whole, or raised OutcomeUnknown and is
    there whole or not at all. About a third of the transactions get one
    kill each, at a random delay from their start."""
    targets: queue.Queue = queue.Queue()
    kills = []
    rng = random.Random(6)

    def killer():
        admin = admin_connection()
        try:
            cur = admin.cursor()
            while (target := targets.get()) is not None:
                pid, delay = target
                time.sleep(delay)
                cur.execute("SELECT pg_terminate_backend(%s)", [pid])
                kills.append(pid)
        finally:
            admin.close()

    targeted = set()

    @retry_atomic(deadline=20)
    def move(key: str):
        if key not in targeted and rng.random() < 0.35:
            targeted.add(key)
            targets.put((connection.connection.info.backend_pid, rng.uniform(0, 0.015)))
        note = Note.objects.create(text=key)
        Tag.objects.create(note=note, name="a")
        Tag.objects.create(note=note, name="b")
        return key

    caplog.set_level(logging.INFO, logger="orca_db.retry")
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        outcomes = run_transactions(move, "rnd-", budget=25)
    finally:
        targets.put(None)
        thread.join(timeout=10)
    assert_exactly_once("rnd-", outcomes)
    reruns = sum(e.attempts - 1 for e in events if e.phase == "transaction")
    summary = {
        "transactions": len(outcomes),
        "kills": len(kills),
        "ok": list(outcomes.values()).count("ok"),
        "unknown": list(outcomes.values()).count("unknown"),
        "transactions_with_a_fault": sum(1 for e in events if e.phase == "transaction"),
        "reruns": reruns,
        "lost_commits_resolved": commit_resolutions(caplog),
    }
    print(f"random faults: {summary}")
    assert len(outcomes) >= 50 and summary["transactions_with_a_fault"] >= 10


# ----- a COMMIT lost in flight ----------------------------------------------------


@pytest.fixture
def slow_commit():
    """COMMIT of a transaction that inserted a 'slowcommit...' note sleeps in a
    deferred trigger (before the commit record): killed there, it aborts."""
    admin = admin_connection()
    cur = admin.cursor()
    cur.execute(
        "CREATE FUNCTION orca_txn_slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$"
    )
    cur.execute(
        "CREATE CONSTRAINT TRIGGER orca_txn_slow_commit AFTER INSERT ON testapp_note "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.text LIKE 'slowcommit%') "
        "EXECUTE FUNCTION orca_txn_slow_commit()"
    )
    try:
        yield
    finally:
        cur.execute("DROP TRIGGER orca_txn_slow_commit ON testapp_note")
        cur.execute("DROP FUNCTION orca_txn_slow_commit()")
        admin.close()


def test_commit_killed_before_it_committed_is_resolved_as_aborted_and_run_again(
    slow_commit, backend_killer, events
):
    runs = []

    @retry_atomic
    def work():
        runs.append(1)
        if len(runs) == 1:
            backend_killer.kill_when_running(backend_pid(), "COMMIT")
        write_note("slowcommit-a")

    work()
    backend_killer.join()
    assert len(runs) == 2
    assert server_rows("slowcommit-") == {"slowcommit-a": (1, 2)}
    assert [(e.phase, e.outcome, e.attempts) for e in events] == [("transaction", "recovered", 2)]


def test_commit_lost_without_resolution_is_outcome_unknown(slow_commit, backend_killer, events):
    @retry_atomic(resolve_commit=False)
    def work():
        backend_killer.kill_when_running(backend_pid(), "COMMIT")
        write_note("slowcommit-b")

    with pytest.raises(OutcomeUnknown):
        work()
    backend_killer.join()
    assert server_rows("slowcommit-") == {}
    assert [(e.phase, e.outcome) for e in events] == [("transaction", "raised")]


@pytest.fixture
def kill_at_commit(kill_backend, monkeypatch):
    """Kill the backend right before the next COMMIT is sent (once): the
    client sees the COMMIT fail and cannot tell whether it arrived."""
    fired = []
    original = connection._commit

    def commit():
        if not fired:
            fired.append(kill_backend())
        return original()

    monkeypatch.setattr(connection, "_commit", commit)
    return fired


def test_read_only_transaction_with_a_lost_commit_is_resolved_too(kill_at_commit, events):
    # A transaction with no id yet can still have effects at COMMIT (a
    # NOTIFY): it gets one before COMMIT, and its lost COMMIT is resolved
    # like any other (here: aborted, so it runs again), never guessed.
    runs = []

    @retry_atomic(resolve_commit=True)
    def read():
        runs.append(1)
        return Note.objects.count()

    assert read() == 0
    assert kill_at_commit and runs == [1, 1]
    assert [(e.phase, e.outcome, e.attempts) for e in events] == [("transaction", "recovered", 2)]


def test_by_default_reads_are_not_resolved(kill_at_commit, events):
    # The default asks for the transaction id only after a write: a lost
    # COMMIT of a transaction that only read is not worth a round trip on
    # every read transaction, and is reported as it is.
    @retry_atomic
    def read():
        return Note.objects.count()

    with pytest.raises(OutcomeUnknown, match="not asked for reads"):
        read()
    assert [(e.phase, e.outcome) for e in events] == [("transaction", "raised")]


def test_write_with_a_lost_commit_that_never_arrived_runs_again(kill_at_commit, events):
    runs = []

    @retry_atomic
    def write():
        runs.append(1)
        return write_note("lost-1")

    write()
    assert kill_at_commit and runs == [1, 1]
    assert server_rows("lost-") == {"lost-1": (1, 2)}


def test_commits_killed_in_flight_are_never_duplicated_nor_lost(slow_commit, events):
    """Kill the backend at random moments of a slow COMMIT (inside the
    deferred trigger, before the commit record). Each case ends in success
    with exactly one copy, or OutcomeUnknown with zero or one."""
    rng = random.Random(7)
    counts = {"ok_first_run": 0, "ok_after_rerun": 0, "unknown": 0}
    for i in range(8):
        key = f"slowcommit-{i:02d}"
        runs = []
        killer_done = threading.Event()

        def kill_later(pid, delay, killer_done=killer_done):
            admin = admin_connection()
            try:
                time.sleep(delay)  # somewhere inside the 0.3 s COMMIT
                admin.cursor().execute("SELECT pg_terminate_backend(%s)", [pid])
            finally:
                admin.close()
                killer_done.set()

        @retry_atomic
        def work(key=key, runs=runs):
            runs.append(1)
            write_note(key, tags=1)
            if len(runs) == 1:
                pid = connection.connection.info.backend_pid
                delay = rng.uniform(0.05, 0.25)
                threading.Thread(target=kill_later, args=(pid, delay), daemon=True).start()

        try:
            work()
            counts["ok_first_run" if len(runs) == 1 else "ok_after_rerun"] += 1
            assert server_rows(key) == {key: (1, 1)}
        except OutcomeUnknown:
            counts["unknown"] += 1
            assert server_rows(key) in ({}, {key: (1, 1)})
        assert killer_done.wait(5)
    print(f"COMMIT killed in flight (before the commit record): {counts}")
    assert sum(counts.values()) == 8


# ----- a COMMIT lost after the commit record: synchronous replication --------------


@pytest.fixture(scope="module")
def sync_rep_server():
    server = PostgresServer().start()
    try:
        server.execute("CREATE TABLE item (id serial PRIMARY KEY, key text NOT NULL)")
        server.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
        server.execute("SELECT pg_reload_conf()")
        # The reload is asynchronous: wait until new sessions see it.
        deadline = time.monotonic() + 10
        while server.execute("SHOW synchronous_standby_names") != [("nobody",)]:
            assert time.monotonic() < deadline, "configuration reload never took effect"
            time.sleep(0.01)
        yield server
    finally:
        server.destroy()


@pytest.fixture
def sync_rep_db(sync_rep_server):
    """An alias on a disposable server whose COMMITs wait forever for a
    synchronous standby that does not exist: the commit record is written,
    the reply never comes until the backend is ended."""
    alias = "syncrep"
    # Registered as a dynamic connection (not in settings), which Django's
    # test case lets the test use.
    connections[alias] = DatabaseWrapper(
        {
            **connections["default"].settings_dict,
            **sync_rep_server.django_settings(),
            "OPTIONS": {"aurora": {"deadline": 10}},
        },
        alias,
    )
    try:
        yield alias
    finally:
        connections[alias].close()
        del connections[alias]


def _item_count(server, key: str) -> int:
    return server.execute("SELECT count(*) FROM item WHERE key = %s", [key])[0][0]


def _wait_for_commit_wait(server, pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = server.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event = 'SyncRep'", [pid]
        )
        if rows:
            return
        time.sleep(0.01)
    raise TimeoutError(f"backend {pid} never waited for the standby")


def test_commit_killed_after_the_commit_record_is_resolved_as_committed(
    sync_rep_server, sync_rep_db, events
):
    runs = []
    db = connections[sync_rep_db]

    def kill_in_commit(pid):
        _wait_for_commit_wait(sync_rep_server, pid)
        sync_rep_server.execute("SELECT pg_terminate_backend(%s)", [pid])

    @retry_atomic(using=sync_rep_db)
    def work():
        runs.append(1)
        with db.cursor() as cursor:
            # The test servers run with synchronous_commit off.
            cursor.execute("SET LOCAL synchronous_commit = on")
            cursor.execute("INSERT INTO item (key) VALUES ('k1')")
        helper.append(
            threading.Thread(target=kill_in_commit, args=(db.connection.info.backend_pid,))
        )
        helper[-1].start()
        return "done"

    helper: list[threading.Thread] = []
    assert work() == "done"
    helper[0].join(timeout=10)
    assert runs == [1]  # not run again: it had committed
    assert _item_count(sync_rep_server, "k1") == 1
    assert [(e.phase, e.outcome, e.attempts) for e in events] == [("transaction", "recovered", 1)]


def test_commit_lost_on_a_silent_network_ends_the_old_backend_then_resolves(
    sync_rep_server, sync_rep_db, events, caplog
):
    caplog.set_level(logging.INFO, logger="orca_db.retry")
    """The client side of the socket is shut down while COMMIT waits: the
    server does not notice, the transaction stays 'in progress'; the
    resolution ends the old backend, whose commit record already exists."""
    db = connections[sync_rep_db]
    runs = []

    def cut_client_socket(pid, fd):
        _wait_for_commit_wait(sync_rep_server, pid)
        sock = socket.socket(fileno=__import__("os").dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()

    @retry_atomic(using=sync_rep_db)
    def work():
        runs.append(1)
        with db.cursor() as cursor:
            # The test servers run with synchronous_commit off.
            cursor.execute("SET LOCAL synchronous_commit = on")
            cursor.execute("INSERT INTO item (key) VALUES ('k2')")
        args = (db.connection.info.backend_pid, db.connection.fileno())
        helper.append(threading.Thread(target=cut_client_socket, args=args))
        helper[-1].start()
        return "done"

    helper: list[threading.Thread] = []
    assert work() == "done"
    helper[0].join(timeout=10)
    assert runs == [1]
    assert _item_count(sync_rep_server, "k2") == 1
    assert commit_resolutions(caplog) == ["committed"]
    assert [(e.phase, e.outcome, e.attempts) for e in events] == [("transaction", "recovered", 1)]


def test_server_down_at_the_start_is_retried_then_retries_exhausted(postgres_server, events):
    postgres_server.stop()
    alias = "down"
    connections[alias] = DatabaseWrapper(
        {**connection.settings_dict, **postgres_server.django_settings()}, alias
    )
    runs = []

    @retry_atomic(using=alias, deadline=1.0)
    def work():
        runs.append(1)

    started = time.monotonic()
    try:
        with pytest.raises(RetriesExhausted):
            work()
    finally:
        connections[alias].close()
        del connections[alias]
    assert runs == []  # never started: nothing was sent
    assert time.monotonic() - started < 2.0
    assert [(e.phase, e.outcome) for e in events] == [("transaction", "exhausted")]
    assert events[0].attempts > 2


# ----- the Aurora simulator ----------------------------------------------------------


@pytest.fixture
def simulated_alias(aurora_simulator):
    alias = "simulated"
    connections[alias] = DatabaseWrapper(
        aurora_simulator.django_settings(connection.settings_dict), alias
    )
    try:
        yield alias
    finally:
        connections[alias].close()
        del connections[alias]


def test_simulated_scale_events_over_a_few_hundred_transactions(
    aurora_simulator, simulated_alias, events, caplog
):
    """Scale events from the simulator (the backend really ends, the client
    gets 57P01 or, on psycopg2, a bare EOF): each transaction is on the
    server exactly once, whole. Every fifth transaction asks for a scale
    event, fired a random moment later (0-10 ms: before, inside or after
    its statements); the number of faults does not depend on how fast the
    machine is."""
    caplog.set_level(logging.INFO, logger="orca_db.retry")
    requests: queue.Queue = queue.Queue()
    ended = []

    def scaler():
        rng = random.Random(8)
        while requests.get() is not None:
            time.sleep(rng.uniform(0, 0.01))
            ended.append(aurora_simulator.scale_event())

    started = []

    @retry_atomic(using=simulated_alias, deadline=20)
    def move(key: str):
        if key not in started:
            started.append(key)
            if len(started) % 5 == 0:
                requests.put(key)
        note = Note.objects.using(simulated_alias).create(text=key)
        Tag.objects.using(simulated_alias).create(note=note, name="a")
        Tag.objects.using(simulated_alias).create(note=note, name="b")
        return key

    thread = threading.Thread(target=scaler, daemon=True)
    thread.start()
    try:
        outcomes = run_transactions(move, "sim-", budget=60)
        requests.put(None)
        thread.join(timeout=30)
        # The last scale event may land after the last transaction.
        move("sim-after")
    finally:
        requests.put(None)
        thread.join(timeout=30)
    outcomes["sim-after"] = "ok"
    assert_exactly_once("sim-", outcomes)
    summary = {
        "transactions": len(outcomes),
        "scale_events": len(ended),
        "sessions_ended": sum(ended),
        "ok": list(outcomes.values()).count("ok"),
        "unknown": list(outcomes.values()).count("unknown"),
        "transactions_with_a_fault": sum(1 for e in events if e.phase == "transaction"),
        "reruns": sum(e.attempts - 1 for e in events if e.phase == "transaction"),
        "lost_commits_resolved": commit_resolutions(caplog),
    }
    print(f"simulated scale events: {summary}")
    assert len(outcomes) == 301 and len(ended) == 60
    # Each scale event is met by the transaction it hit or by the next one,
    # which finds its connection closed; five transactions apart, two can
    # only meet the same transaction on a scaler lagging far behind.
    assert summary["transactions_with_a_fault"] >= 30
