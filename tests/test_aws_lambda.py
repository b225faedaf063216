"""database_handler against a real PostgreSQL, a silent host and real faults."""

from __future__ import annotations

import socket
import time
import uuid

import pytest
from django.db import connection, connections

from orca_db.aws_lambda import database_handler
from orca_db.backends.aurora.base import DatabaseWrapper
from orca_db.events import lambda_request_id
from orca_db.exceptions import RetriesExhausted
from orca_db.testing.ports import reserve_port
from tests.conftest import admin_connection
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


class FakeContext:
    """The part of Lambda's context object the decorator uses."""

    def __init__(self, remaining_ms: int):
        self.aws_request_id = str(uuid.uuid4())
        self._ends_at = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends_at - time.monotonic()) * 1000))


def backend_alive(pid: int) -> bool:
    admin = admin_connection()
    try:
        cur = admin.cursor()
        cur.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return bool(cur.fetchall())
    finally:
        admin.close()


def wait_until_gone(pid: int, timeout: float = 5.0) -> bool:
    """The server ends a backend shortly after its client closed: wait
    (bounded) for that instead of checking once."""
    deadline = time.monotonic() + timeout
    while backend_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def other_client_backends() -> int:
    admin = admin_connection()
    try:
        cur = admin.cursor()
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return cur.fetchone()[0]
    finally:
        admin.close()


def wait_until_no_client_backends(timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while other_client_backends():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_connections_are_closed_after_each_invocation(events):
    pids = []

    @database_handler
    def handler(event, context):
        Note.objects.create(text=event["text"])
        pids.append(connection.connection.info.backend_pid)
        return {"ok": True}

    for i in range(3):
        assert handler({"text": f"l{i}"}, FakeContext(10_000)) == {"ok": True}
        assert connection.connection is None
        assert wait_until_gone(pids[-1])
        # Nothing of this test run is connected to the database any more.
        assert wait_until_no_client_backends()
    assert len(set(pids)) == 3


def test_connections_are_closed_when_the_handler_raises():
    pids = []

    @database_handler
    def handler(event, context):
        Note.objects.count()
        pids.append(connection.connection.info.backend_pid)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        handler({}, FakeContext(10_000))
    assert connection.connection is None
    assert wait_until_gone(pids[0])


def test_a_connection_from_before_a_freeze_is_not_used(kill_backend, events):
    # A connection made during init, then cut while the process was frozen.
    Note.objects.count()
    stale = kill_backend()
    pids = []

    @database_handler
    def handler(event, context):
        pids.append(connection.connection.info.backend_pid if connection.connection else None)
        Note.objects.create(text="after-thaw")
        pids.append(connection.connection.info.backend_pid)

    handler({}, FakeContext(10_000))
    assert pids[0] is None  # closed before the handler ran
    assert pids[1] != stale
    assert Note.objects.filter(text="after-thaw").count() == 1
    assert events == []  # nothing had to be retried


def test_retry_events_carry_the_request_id(kill_backend, events):
    context = FakeContext(10_000)

    @database_handler
    def handler(event, context):
        Note.objects.count()
        kill_backend()
        return Note.objects.count()  # a read: retried on a new connection

    assert handler({}, context) == 0
    assert [e.lambda_request_id for e in events] == [context.aws_request_id]
    assert lambda_request_id.get() is None


@pytest.fixture
def silent_host():
    """A host that accepts TCP connections and never answers, as a paused
    Aurora cluster holds connections while it resumes."""
    with reserve_port() as reserved, socket.socket() as listener:
        listener.bind(("127.0.0.1", reserved.port))
        listener.listen(64)
        yield reserved.port


@pytest.fixture
def paused_alias(silent_host):
    alias = "paused"
    # A dynamic connection (not in settings), which Django's test case allows.
    connections[alias] = DatabaseWrapper(
        {**connection.settings_dict, "HOST": "127.0.0.1", "PORT": str(silent_host)},
        alias,
    )
    try:
        yield alias
    finally:
        connections[alias].close()
        del connections[alias]


def test_paused_cluster_raises_retries_exhausted_within_the_remaining_time(paused_alias, events):
    @database_handler
    def handler(event, context):
        with connections[paused_alias].cursor() as cursor:
            cursor.execute("SELECT 1")

    context = FakeContext(3_000)
    started = time.monotonic()
    with pytest.raises(RetriesExhausted):
        handler({}, context)
    elapsed = time.monotonic() - started
    print(f"paused cluster, 3 s remaining, margin 1000 ms: RetriesExhausted after {elapsed:.2f} s")
    assert elapsed < 3.0
    assert context.get_remaining_time_in_millis() > 0
    assert [(e.phase, e.outcome, e.lambda_request_id) for e in events] == [
        ("connect", "exhausted", context.aws_request_id)
    ]
    assert connections[paused_alias].connection is None


def test_stopped_server_raises_retries_exhausted_within_the_remaining_time(postgres_server, events):
    postgres_server.stop()
    alias = "stopped"
    connections[alias] = DatabaseWrapper(
        {**connection.settings_dict, **postgres_server.django_settings()}, alias
    )

    @database_handler(margin_ms=500)
    def handler(event, context):
        connections[alias].ensure_connection()

    context = FakeContext(3_000)
    started = time.monotonic()
    try:
        with pytest.raises(RetriesExhausted):
            handler({}, context)
    finally:
        del connections[alias]
    elapsed = time.monotonic() - started
    print(f"stopped server, 3 s remaining, margin 500 ms: RetriesExhausted after {elapsed:.2f} s")
    # Refused connects fail at once: it stops within one backoff of the cap.
    assert 2.0 < elapsed < 3.0
    assert events[-1].attempts > 5


def test_paused_simulated_cluster_raises_retries_exhausted_in_time(aurora_simulator, events):
    alias = "simulated"
    connections[alias] = DatabaseWrapper(
        aurora_simulator.django_settings(connection.settings_dict), alias
    )
    aurora_simulator.pause()

    @database_handler
    def handler(event, context):
        return connections[alias].cursor().execute("SELECT 1")

    context = FakeContext(3_000)
    started = time.monotonic()
    try:
        with pytest.raises(RetriesExhausted):
            handler({}, context)
    finally:
        aurora_simulator.resume()
        del connections[alias]
    elapsed = time.monotonic() - started
    print(f"simulator paused, 3 s remaining, margin 1 s: RetriesExhausted after {elapsed:.2f} s")
    assert elapsed < 3.0
    assert aurora_simulator.stats["held"] >= 1
    assert wait_until_no_client_backends()
