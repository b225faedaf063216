"""Commit resolution at the DB-API level (orca_db.commit_resolution): what a
host below Django's cursor (SQLAlchemy's run_transaction) calls with plain
driver connections, against the real server. No Django connection is used."""

from __future__ import annotations

import pytest

from orca_db.classify import SERVER_CLOSED
from orca_db.commit_resolution import LostCommit, dbapi_ask, read_transaction_id, resolve
from orca_db.options import RetrySettings
from orca_db.retry import Operation
from tests import sim_clients
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db  # the test server; its connections unused


def transaction():
    """A driver connection with an open transaction that has an id."""
    conn = sim_clients.server()
    conn.autocommit = False
    cursor = conn.cursor()
    xid, pid, cluster = read_transaction_id(cursor)
    assert xid is not None and cluster is not None
    pending = LostCommit(xid, pid, cluster, None, [], ConnectionError("lost"), SERVER_CLOSED)
    return conn, pending


def ask_on_a_new_connection(pending: LostCommit) -> str | None:
    operation = Operation("unit", "transaction", RetrySettings(deadline=30))
    other = sim_clients.server()
    try:
        return resolve(dbapi_ask(other, operation), pending, operation)
    finally:
        other.close()


@pytest.mark.parametrize(("end", "status"), [("commit", "committed"), ("rollback", "aborted")])
def test_a_finished_transaction_is_told_from_another_connection(end, status):
    conn, pending = transaction()
    try:
        getattr(conn, end)()
        assert ask_on_a_new_connection(pending) == status
    finally:
        conn.close()


def test_one_still_in_progress_is_ended_and_then_told():
    """The old backend has not noticed its client is gone: it is ended, and
    its transaction is then aborted for good."""
    conn, pending = transaction()
    try:
        assert ask_on_a_new_connection(pending) == "aborted"
        wait_until(lambda: not sim_clients.backend_alive(pending.backend_pid), timeout=30)
    finally:
        conn.close()


def test_another_cluster_is_never_asked():
    conn, pending = transaction()
    try:
        conn.commit()
        pending.cluster = "another"
        assert ask_on_a_new_connection(pending) == "another cluster"
    finally:
        conn.close()
