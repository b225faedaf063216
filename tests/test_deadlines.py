"""Every wait ends on time: Lambda deadlines, a server that stops answering,
connects that libpq cannot bound, and event storage that never extends an
operation. Real server, the simulator, a silent host."""

from __future__ import annotations

import socket
import time

import pytest
from django.db import connection, connections, transaction
from django.test import override_settings

from orca_db.aws_lambda import database_handler
from orca_db.backends.aurora.base import DatabaseWrapper
from orca_db.exceptions import (
    DeadlineExceeded,
    OutcomeUnknown,
    RetriesExhausted,
    WriteDeadlineExceeded,
)
from orca_db.testing.ports import free_port
from orca_db_app import receivers
from orca_db_app.models import RetryEvent
from tests import cut_off_messages as cut
from tests.driver import DRIVER
from tests.test_aws_lambda import FakeContext, wait_until_gone
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


def wrapper_on(alias: str, settings_dict: dict) -> DatabaseWrapper:
    connections[alias] = DatabaseWrapper(settings_dict, alias)
    return connections[alias]


@pytest.fixture
def simulated(aurora_simulator):
    """An alias through the simulator, whose application sets a long
    connect_timeout (as check W003 asks)."""
    alias = "simulated"
    settings_dict = aurora_simulator.django_settings(connection.settings_dict)
    settings_dict = {**settings_dict, "OPTIONS": {"connect_timeout": 10}}
    wrapper_on(alias, settings_dict)
    yield alias
    connections[alias].close()
    del connections[alias]


# ----- connects ---------------------------------------------------------------------


def test_paused_cluster_with_a_long_connect_timeout_ends_within_the_remaining_time(
    aurora_simulator, simulated, events
):
    """On main: RetriesExhausted after 12 s with 3 s left, then storing the
    event opened another connection into the paused cluster."""
    aurora_simulator.pause()

    @database_handler
    def handler(event, context):
        with connections[simulated].cursor() as cursor:
            cursor.execute("SELECT 1")

    context = FakeContext(3_000)
    started = time.monotonic()
    try:
        with pytest.raises(RetriesExhausted):
            handler({}, context)
        elapsed = time.monotonic() - started
        held = aurora_simulator.stats["held"]
    finally:
        aurora_simulator.resume()
    print(f"paused, connect_timeout 10, 3 s left: RetriesExhausted after {elapsed:.2f} s")
    assert elapsed < 3.0
    assert [(e.phase, e.outcome) for e in events] == [("connect", "exhausted")]
    # Each held connection is an attempt of the operation itself: at most
    # one per second of the budget, none made to store the event.
    assert held == events[0].attempts


def test_paused_cluster_event_is_stored_once_the_cluster_is_back(
    aurora_simulator, simulated, events
):
    """Its event goes to the paused database itself: deferred (no connection
    into the paused cluster), then written after the outage, not lost."""
    db = connections[simulated]
    aurora_simulator.pause()

    @database_handler
    def handler(event, context):
        db.connect()  # (ensure_connection is fenced off by Django's tests)

    try:
        with override_settings(ORCA_DB_EVENTS_DATABASE=None), _events_into(simulated):
            with pytest.raises(RetriesExhausted):
                handler({}, FakeContext(3_000))
            assert aurora_simulator.stats["held"] == events[0].attempts
            assert receivers.deferred_count() == 1
            assert not RetryEvent.objects.exists()
            aurora_simulator.resume()

            @database_handler
            def healthy(event, context):
                db.connect()
                with db.cursor() as cursor:
                    cursor.execute("SELECT 1")

            healthy({}, FakeContext(10_000))  # the end of the invocation writes it
    finally:
        aurora_simulator.resume()
    assert receivers.deferred_count() == 0
    stored = RetryEvent.objects.get()
    assert (stored.database, stored.outcome) == (simulated, "exhausted")


def _events_into(alias: str):
    """Route the events of the dynamic alias ``alias`` to itself, as they
    would be routed for an alias of DATABASES."""
    from unittest import mock

    return mock.patch.object(receivers, "_target", lambda event: alias)


def test_event_of_a_paused_database_goes_to_a_second_database_at_once(
    aurora_simulator, simulated, events
):
    db = connections[simulated]
    db.settings_dict["OPTIONS"]["aurora"] = {"deadline": 1.0}
    aurora_simulator.pause()
    seen = []

    @database_handler
    def handler(event, context):
        with pytest.raises(RetriesExhausted):
            db.connect()
        seen.append((receivers.deferred_count(), RetryEvent.objects.count()))

    try:
        with override_settings(ORCA_DB_EVENTS_DATABASE="default"):
            handler({}, FakeContext(10_000))
    finally:
        aurora_simulator.resume()
    assert seen == [(0, 1)]  # written before the operation returned
    stored = RetryEvent.objects.get()
    assert (stored.database, stored.phase, stored.outcome) == (simulated, "connect", "exhausted")


def test_connect_with_less_than_libpq_minimum_left_is_bounded(events):
    """libpq rounds a connect_timeout below 2 s up to 2 s; with 1.3 s left
    the attempt is abandoned at the bound instead."""
    listener = socket.socket()
    port = free_port()  # reserved: not another run's stopped server's port
    listener.bind(("127.0.0.1", port))
    listener.listen(8)
    alias = "silent"
    wrapper_on(alias, {**connection.settings_dict, "HOST": "127.0.0.1", "PORT": str(port)})

    @database_handler(margin_ms=500)
    def handler(event, context):
        connections[alias].ensure_connection()

    started = time.monotonic()
    try:
        with pytest.raises(RetriesExhausted):
            handler({}, FakeContext(1_800))
    finally:
        listener.close()
        del connections[alias]
    elapsed = time.monotonic() - started
    print(f"silent host, 1.3 s left: RetriesExhausted after {elapsed:.2f} s")
    assert elapsed < 1.8


# ----- statements -------------------------------------------------------------------


def test_a_read_the_server_never_answers_is_cut_at_the_lambda_deadline(events):
    """The server stops answering mid-query (here: it is busy for 30 s).
    On main the invocation waited the 30 s."""
    pids = []

    @database_handler
    def handler(event, context):
        connection.ensure_connection()
        pids.append(connection.connection.info.backend_pid)
        with connection.cursor() as cursor:
            # The server notices its client went away within 0.1 s (PG 14+;
            # docs/backend.md recommends it), instead of sleeping on.
            cursor.execute("SET client_connection_check_interval = 100")
            cursor.execute("SELECT pg_sleep(30)")

    context = FakeContext(3_000)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as raised:
        handler({}, context)
    elapsed = time.monotonic() - started
    print(f"silent server mid-query, 3 s left: DeadlineExceeded after {elapsed:.2f} s")
    assert elapsed < 3.0
    assert not isinstance(raised.value, OutcomeUnknown)
    assert connection.connection is None


def test_a_write_cut_at_the_deadline_says_its_outcome_is_unknown():
    @database_handler
    def handler(event, context):
        with connection.cursor() as cursor:
            cursor.execute("SET client_connection_check_interval = 100")
            cursor.execute(
                "INSERT INTO testapp_note (text, created) SELECT 'slow', now() FROM pg_sleep(30)"
            )

    with pytest.raises(WriteDeadlineExceeded) as raised:
        handler({}, FakeContext(2_500))
    assert isinstance(raised.value, OutcomeUnknown)


def test_statement_deadline_outside_lambda(extra_options):
    db = extra_options(statement_deadline=0.5)
    db.ensure_connection()
    pid = db.connection.info.backend_pid
    with db.cursor() as cursor:
        cursor.execute("SET client_connection_check_interval = 100")
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded), db.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(30)")
    assert time.monotonic() - started < 5
    # The connection was closed; the next statement gets a new one.
    with db.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert db.connection.info.backend_pid != pid
    # The server ended the cut statement's backend too (it checks its client).
    assert wait_until_gone(pid, timeout=10)


def test_statement_deadline_leaves_quick_statements_alone(extra_options):
    db = extra_options(statement_deadline=5)
    for _ in range(50):
        with db.cursor() as cursor:
            cursor.execute("SELECT 1")
    assert Note.objects.using(db.alias).count() == 0


@pytest.fixture
def extra_options():
    made = []

    def make(**aurora):
        alias = f"opts{len(made)}"
        settings_dict = {**connection.settings_dict, "OPTIONS": {"aurora": aurora}}
        made.append(wrapper_on(alias, settings_dict))
        return made[-1]

    yield make
    for db in made:
        db.close()
        del connections[db.alias]


# ----- the deadline counts from the first attempt --------------------------------------


@pytest.mark.skipif(
    DRIVER == "psycopg2",
    reason="psycopg2 loses the server's 57P01 here, so the statement (which calls a "
    "function with side effects) is not replayed at all",
)
def test_the_deadline_counts_from_the_start_of_the_first_attempt(extra_options, events):
    """Each attempt ends its own session after 0.6 s (a 57P01: safe to run
    again). With a 1 s deadline from the first attempt's start there is room
    for two attempts at most; counted from the first failure (main) there
    was room for three."""
    db = extra_options(deadline=1.0)
    with pytest.raises(RetriesExhausted), db.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.6), pg_terminate_backend(pg_backend_pid())")
    assert events[-1].attempts <= 2


# ----- a network that goes silent ---------------------------------------------------


def test_a_silent_network_mid_query_ends_within_the_remaining_time(
    aurora_simulator, simulated, events
):
    """The simulator stops carrying bytes both ways, closing nothing, while
    the query runs: on main the invocation never returned."""
    db = connections[simulated]

    @database_handler
    def handler(event, context):
        db.connect()
        with db.cursor() as cursor:
            cursor.execute("SELECT 1")
            aurora_simulator.silence()
            cursor.execute("SELECT count(*) FROM pg_class")

    context = FakeContext(3_000)
    started = time.monotonic()
    try:
        with pytest.raises(DeadlineExceeded) as raised:
            handler({}, context)
        elapsed = time.monotonic() - started
    finally:
        aurora_simulator.unsilence()
    print(f"silent network mid-query, 3 s left: DeadlineExceeded after {elapsed:.2f} s")
    assert elapsed < 3.0
    assert not isinstance(raised.value, OutcomeUnknown)  # a read
    assert str(raised.value) == cut.READ.format(alias=simulated)
    assert db.connection is None
    # The cut client is noticed by the simulator: its server session closes.
    aurora_simulator.wait_for(lambda stats: stats["active"] == 0, timeout=10)


def test_a_silent_network_bounds_a_write_with_statement_deadline(aurora_simulator, simulated):
    db = connections[simulated]
    db.settings_dict["OPTIONS"]["aurora"] = {"statement_deadline": 1.0}
    db.connect()
    with db.cursor() as cursor:
        cursor.execute("SELECT 1")
        aurora_simulator.silence()
        started = time.monotonic()
        try:
            with pytest.raises(WriteDeadlineExceeded) as raised:
                cursor.execute("CREATE TEMPORARY TABLE silenced (x int)")
        finally:
            aurora_simulator.unsilence()
    assert time.monotonic() - started < 5.0
    assert str(raised.value) == cut.WRITE.format(alias=simulated)


def test_a_silent_network_bounds_commit_with_statement_deadline(aurora_simulator, simulated):
    """COMMIT is a statement too: on a network gone silent it is cut at the
    deadline, and its outcome is unknown."""
    db = connections[simulated]
    db.settings_dict["OPTIONS"]["aurora"] = {"statement_deadline": 1.0}
    db.connect()
    started = None
    try:
        with (
            pytest.raises(WriteDeadlineExceeded) as raised,
            transaction.atomic(using=simulated),
        ):
            Note.objects.using(simulated).create(text="silenced-commit")
            aurora_simulator.silence(new_connections=False)
            started = time.monotonic()
    finally:
        aurora_simulator.unsilence()
    assert started is not None and time.monotonic() - started < 5.0
    assert str(raised.value) == cut.COMMIT.format(alias=simulated)
    with db.cursor() as cursor:  # and the next use connects again
        cursor.execute("SELECT 1")


def test_a_silent_network_at_commit_ends_within_the_remaining_time(aurora_simulator, simulated):
    @database_handler
    def handler(event, context):
        with transaction.atomic(using=simulated):
            Note.objects.using(simulated).create(text="silenced-commit")
            aurora_simulator.silence()

    started = time.monotonic()
    try:
        with pytest.raises(WriteDeadlineExceeded):
            handler({}, FakeContext(3_000))
    finally:
        aurora_simulator.unsilence()
    assert time.monotonic() - started < 3.0


# ----- every blocking call, not only statements (rule 2) ----------------------------


@pytest.fixture
def safety_net(aurora_simulator):
    """Ends a silence that the code under test failed to cut, so that a
    failing test fails instead of hanging (it asserts on the time taken)."""
    import threading

    timer = threading.Timer(12.0, aurora_simulator.unsilence)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()
    aurora_simulator.unsilence()


def _timed(function) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        function()
    except BaseException as error:
        return time.monotonic() - started, error
    return time.monotonic() - started, None


def test_leaving_atomic_with_an_exception_on_a_silent_network_ends_at_the_cap(
    aurora_simulator, simulated, safety_net
):
    """On main: ROLLBACK waited until the network came back (12 s here,
    as long as TCP allows in production) under a 2 s cap."""

    @database_handler
    def handler(event, context):
        with transaction.atomic(using=simulated):
            Note.objects.using(simulated).create(text="rolled-back")
            aurora_simulator.silence(new_connections=False)
            raise ValueError("the application's own error")

    elapsed, error = _timed(lambda: handler({}, FakeContext(3_000)))
    print(f"ROLLBACK on a silent network, 2 s cap: {elapsed:.2f} s")
    assert isinstance(error, ValueError)  # the application's error, not the rollback's
    assert elapsed < 3.0
    aurora_simulator.unsilence()
    assert not Note.objects.filter(text="rolled-back").exists()


def test_rollback_on_a_silent_network_is_cut_and_says_the_server_rolls_back(
    aurora_simulator, simulated, safety_net
):
    """rollback() called by the application (no atomic block) is cut at the
    cap; the error says that the server rolls the transaction back."""
    db = connections[simulated]

    @database_handler
    def handler(event, context):
        db.set_autocommit(False)
        Note.objects.using(simulated).create(text="rolled-back")
        aurora_simulator.silence(new_connections=False)
        db.rollback()

    elapsed, error = _timed(lambda: handler({}, FakeContext(3_000)))
    print(f"rollback() on a silent network, 2 s cap: {elapsed:.2f} s")
    assert isinstance(error, DeadlineExceeded), error
    assert not isinstance(error, OutcomeUnknown)
    assert "the server rolls it back" in str(error)
    assert elapsed < 3.0
    aurora_simulator.unsilence()
    assert not Note.objects.filter(text="rolled-back").exists()


def test_rollback_on_a_silent_network_is_cut_at_statement_deadline(
    aurora_simulator, simulated, safety_net
):
    db = connections[simulated]
    db.settings_dict["OPTIONS"]["aurora"] = {"statement_deadline": 1.0}

    def work():
        db.set_autocommit(False)
        try:
            Note.objects.using(simulated).create(text="rolled-back")
            aurora_simulator.silence(new_connections=False)
            db.rollback()
        finally:
            aurora_simulator.unsilence()
            db.set_autocommit(True)

    elapsed, error = _timed(work)
    assert isinstance(error, DeadlineExceeded), error
    assert elapsed < 5.0
    assert str(error) == cut.ROLLBACK.format(alias=simulated)


def test_leaving_atomic_on_a_silent_network_keeps_the_session_for_the_next_connection(
    aurora_simulator, simulated, safety_net
):
    """The ROLLBACK cut at statement_deadline loses the connection, not the
    application's session: Django's close() after the failed rollback is no
    fresh start, and the next connection gets the search_path back."""
    db = connections[simulated]
    db.settings_dict["OPTIONS"]["aurora"] = {"statement_deadline": 1.0}
    with db.cursor() as cursor:
        cursor.execute("SET search_path TO pg_catalog, public")

    def work():
        with transaction.atomic(using=simulated):
            Note.objects.using(simulated).create(text="rolled-back")
            aurora_simulator.silence(new_connections=False)
            raise ValueError("the application's own error")

    elapsed, error = _timed(work)
    aurora_simulator.unsilence()
    assert isinstance(error, ValueError)
    assert elapsed < 5.0
    assert db.connection is None
    with db.cursor() as cursor:
        cursor.execute("SHOW search_path")
        assert cursor.fetchone() == ("pg_catalog, public",)
    assert db.get_autocommit()  # as before the block
    assert not Note.objects.filter(text="rolled-back").exists()


def test_after_a_cut_rollback_the_applications_autocommit_setting_holds(
    aurora_simulator, simulated, safety_net
):
    """set_autocommit(False), rollback() cut: the work that follows on the
    next connection is still in a transaction, not committed statement by
    statement."""
    db = connections[simulated]
    db.settings_dict["OPTIONS"]["aurora"] = {"statement_deadline": 1.0}
    db.set_autocommit(False)
    try:
        Note.objects.using(simulated).create(text="rolled-back")
        aurora_simulator.silence(new_connections=False)
        with pytest.raises(DeadlineExceeded):
            db.rollback()
        aurora_simulator.unsilence()
        Note.objects.using(simulated).create(text="not-yet")
        assert not db.get_autocommit()
        assert not Note.objects.filter(text="not-yet").exists()  # uncommitted
        db.rollback()
    finally:
        db.set_autocommit(True)
    assert not Note.objects.filter(text__in=["rolled-back", "not-yet"]).exists()


def test_the_applications_close_after_a_cut_rollback_starts_a_clean_session(
    aurora_simulator, simulated, safety_net
):
    db = connections[simulated]
    db.settings_dict["OPTIONS"]["aurora"] = {"statement_deadline": 1.0}
    with db.cursor() as cursor:
        cursor.execute("SHOW search_path")
        default = cursor.fetchone()
        cursor.execute("SET search_path TO pg_catalog, public")
    db.set_autocommit(False)
    try:
        Note.objects.using(simulated).create(text="rolled-back")
        aurora_simulator.silence(new_connections=False)
        with pytest.raises(DeadlineExceeded):
            db.rollback()
        aurora_simulator.unsilence()
        db.close()  # "each job gets a fresh session"
    finally:
        db.set_autocommit(True)
    with db.cursor() as cursor:
        cursor.execute("SHOW search_path")
        assert cursor.fetchone() == default


def test_a_savepoint_rollback_on_a_silent_network_ends_at_the_cap(
    aurora_simulator, simulated, safety_net
):
    @database_handler
    def handler(event, context):
        with transaction.atomic(using=simulated):
            Note.objects.using(simulated).create(text="outer")
            with transaction.atomic(using=simulated):
                Note.objects.using(simulated).create(text="inner")
                aurora_simulator.silence(new_connections=False)
                raise ValueError("the application's own error")

    elapsed, error = _timed(lambda: handler({}, FakeContext(3_000)))
    print(f"savepoint rollback on a silent network, 2 s cap: {elapsed:.2f} s")
    assert isinstance(error, ValueError)
    assert elapsed < 3.0
    aurora_simulator.unsilence()
    assert not Note.objects.filter(text__in=["outer", "inner"]).exists()


def _notes(n: int) -> None:
    Note.objects.bulk_create(Note(text=f"row{i}") for i in range(n))


def test_a_fetch_from_a_server_side_cursor_on_a_silent_network_ends_at_the_cap(
    aurora_simulator, simulated, safety_net
):
    """QuerySet.iterator() fetches its rows in chunks from a server-side
    cursor: each fetch is a round trip, bounded like a statement."""
    _notes(5)
    db = connections[simulated]

    @database_handler
    def handler(event, context):
        rows = Note.objects.using(simulated).order_by("pk").iterator(chunk_size=1)
        next(rows)
        aurora_simulator.silence(new_connections=False)
        list(rows)

    elapsed, error = _timed(lambda: handler({}, FakeContext(3_000)))
    print(f"server-side cursor fetch on a silent network, 2 s cap: {elapsed:.2f} s")
    assert isinstance(error, DeadlineExceeded), error
    assert not isinstance(error, OutcomeUnknown)  # a read
    assert elapsed < 3.0
    assert db.connection is None


def test_a_fetch_from_a_server_side_cursor_is_cut_at_statement_deadline(
    aurora_simulator, simulated, safety_net
):
    _notes(5)
    db = connections[simulated]
    db.settings_dict["OPTIONS"]["aurora"] = {"statement_deadline": 1.0}

    def work():
        with transaction.atomic(using=simulated):
            rows = Note.objects.using(simulated).order_by("pk").iterator(chunk_size=1)
            next(rows)
            aurora_simulator.silence(new_connections=False)
            list(rows)

    elapsed, error = _timed(work)
    assert isinstance(error, DeadlineExceeded), error
    assert elapsed < 5.0


def test_connection_set_up_on_a_silent_network_ends_at_the_cap(
    aurora_simulator, simulated, safety_net
):
    """Django's init_connection_state sets TimeZone when the database's
    time zone is not the server's; its reply never comes."""
    db = connections[simulated]
    db.settings_dict["TIME_ZONE"] = "Asia/Tokyo"
    aurora_simulator.lose_replies(1, contains="TimeZone", silent=True)

    @database_handler
    def handler(event, context):
        db.connect()

    elapsed, error = _timed(lambda: handler({}, FakeContext(3_000)))
    print(f"connection set-up on a silent network, 2 s cap: {elapsed:.2f} s")
    assert isinstance(error, RetriesExhausted), error  # a connect that timed out
    assert elapsed < 3.0


def test_session_restore_on_a_silent_network_ends_at_the_cap(
    aurora_simulator, simulated, safety_net
):
    """The connection is replaced after a scale event; the session's
    search_path is applied again on the new one, and that reply never
    comes."""
    db = connections[simulated]

    @database_handler
    def handler(event, context):
        with db.cursor() as cursor:
            cursor.execute("SET search_path TO public")
            aurora_simulator.lose_replies(1, contains="search_path", silent=True)
            aurora_simulator.drop_connections()
            cursor.execute("SELECT 1")

    elapsed, error = _timed(lambda: handler({}, FakeContext(3_000)))
    print(f"session restore on a silent network, 2 s cap: {elapsed:.2f} s")
    assert isinstance(error, RetriesExhausted), error  # a connect that timed out
    assert elapsed < 3.0


def test_the_end_of_a_request_never_connects_into_a_database_that_did_not_come_back(
    aurora_simulator, simulated, events
):
    """deadline 3 against a paused cluster: on main the request took 5.0 s,
    the last 2 s spent at request_finished connecting into the same paused
    cluster to store the deferred event."""
    from django.core.signals import request_finished, request_started

    db = connections[simulated]
    db.settings_dict["OPTIONS"]["aurora"] = {"deadline": 3.0}
    aurora_simulator.pause()

    def request():
        request_started.send(sender=None)
        try:
            with pytest.raises(RetriesExhausted):
                db.connect()
        finally:
            request_finished.send(sender=None)

    try:
        with override_settings(ORCA_DB_EVENTS_DATABASE=None), _events_into(simulated):
            elapsed, error = _timed(request)
            held = aurora_simulator.stats["held"]
            assert receivers.deferred_count() == 1
            aurora_simulator.resume()
            # Once the database answers again, the event is written.
            db.connect()
            receivers.flush_deferred_events()
    finally:
        aurora_simulator.resume()
    print(f"request with deadline 3 against a paused cluster: {elapsed:.2f} s")
    assert error is None, error
    # The count says it (no connection made to store the event); the time
    # bound only tells the 2 s connect of before from a loaded machine.
    assert held == events[0].attempts
    assert elapsed < 4.5
    assert receivers.deferred_count() == 0
    assert RetryEvent.objects.get().outcome == "exhausted"


@pytest.mark.parametrize("connected", ["before the cap", "inside the cap"])
def test_a_call_nobody_listed_is_cut_at_the_cap_too(
    aurora_simulator, simulated, safety_net, connected
):
    """A driver call straight on the connection (no Django cursor, no
    orca-db call site) on a silent network: the watch held on the
    connection for as long as the cap is open cuts it as well."""
    from orca_db.deadlines import deadline_cap

    db = connections[simulated]
    if connected == "before the cap":
        db.connect()
    # An alias of DATABASES, as an application's are (connections.all()
    # lists only those).
    connections.settings[simulated] = db.settings_dict

    def work():
        with deadline_cap(2.0):
            if db.connection is None:
                db.connect()
            aurora_simulator.silence(new_connections=False)
            cursor = db.connection.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()

    try:
        elapsed, error = _timed(work)
    finally:
        del connections.settings[simulated]
    print(f"a raw driver call on a silent network ({connected}), 2 s cap: {elapsed:.2f} s")
    assert error is not None  # the driver's own lost-connection error
    assert elapsed < 3.0


def test_storing_an_event_on_a_network_gone_silent_ends_within_store_time(
    aurora_simulator, simulated, safety_net, events, monkeypatch
):
    """The INSERT of the event never gets its reply: the store (connect,
    insert, close) ends within STORE_TIME, not the events connection's
    5 s statement deadline, and the event waits, not lost."""
    # A store time well below the statement deadline, so that a loaded
    # machine cannot blur the two (the bound below has seconds to spare).
    monkeypatch.setattr(receivers, "STORE_TIME", 1.0)
    db = connections[simulated]
    db.connect()
    with override_settings(ORCA_DB_EVENTS_DATABASE=None), _events_into(simulated):
        aurora_simulator.lose_replies(1, contains="retryevent", silent=True)
        aurora_simulator.drop_connections()
        started = time.monotonic()
        with db.cursor() as cursor:
            cursor.execute("SELECT 1")  # recovered; its event goes to the same database
        elapsed = time.monotonic() - started
    print(f"storing an event on a silent network: the read took {elapsed:.2f} s")
    assert [e.outcome for e in events] == ["recovered"]
    # STORE_TIME (1 s here) and the reconnect; the statement deadline alone
    # (before: 5.15 s) would take 5 s at least.
    assert elapsed < receivers.EVENTS_STATEMENT_DEADLINE - 1
    assert receivers.deferred_count() == 1
