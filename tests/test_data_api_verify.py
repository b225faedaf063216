"""``aurora_verify`` on the Data API engine, through the local endpoint: its
four checks pass, and it names the engine's transport, not a driver it does
not use.

Before: 3 of 4 checks failed ("has no retry layer"; the read and the
transaction were cut by killing a backend of a second driver connection the
engine never uses), and the driver read "psycopg".
"""

from __future__ import annotations

import json

import pytest
from django.db import connections

from tests.commands import run_command


@pytest.fixture(autouse=True)
def _database_access(django_db_setup, django_db_blocker):
    # As a shell would: no test transaction around the command, any alias.
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def data_api_alias(data_api_connection):
    """``data_api_connection`` as a configured alias, as a project has it."""
    connections.settings["data_api"] = data_api_connection.settings_dict
    try:
        yield "data_api"
    finally:
        del connections.settings["data_api"]


def test_verify_passes_on_the_data_api_engine(data_api_alias):
    out, err, code = run_command("aurora_verify", "--database", data_api_alias, "-v", "2")
    assert code == 0, out + err
    assert out.count("PASS") == 4, out
    assert "FAIL" not in out
    assert "no retry layer" not in out
    assert "psycopg" not in out.splitlines()[0], out
    assert "orca_db.backends.aurora_data_api, RDS Data API" in out.splitlines()[0]
    assert "All 4 checks passed." in out


def test_verify_json_on_the_data_api_engine(data_api_alias):
    out, err, code = run_command("aurora_verify", "--database", data_api_alias, "--json")
    assert code == 0, out + err
    data = json.loads(out)
    assert data["passed"] is True, data
    assert data["driver"].startswith("RDS Data API")


def test_a_transaction_whose_session_was_terminated_is_rolled_back_at_once(
    data_api_alias, data_api_endpoint
):
    """pg_terminate_backend of the session a Data API transaction runs on
    (what aurora_verify does, what a scale event does): the next statement
    of the transaction meets 57P01, which proves that statement did not run
    but also that the transaction is gone. Before: it was sent again in the
    same transaction until the deadline (761 attempts in 60 s), then
    RetriesExhausted."""
    from django.db import transaction

    from orca_db.exceptions import TransactionRolledBack
    from tests.conftest import admin_connection

    connection = connections[data_api_alias]
    connection.settings_dict["OPTIONS"]["aurora"]["deadline"] = 10
    with pytest.raises(TransactionRolledBack):
        with transaction.atomic(using=data_api_alias), connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
            admin = admin_connection()
            try:
                admin.cursor().execute("SELECT pg_terminate_backend(%s)", [pid])
            finally:
                admin.close()
            calls = data_api_endpoint.stats["calls"]
            cursor.execute("SELECT 1")
    # Counted, not timed: the statement and the rollback of the transaction
    # given up, a handful of calls (before: the statement was sent again
    # until the deadline, about 120 times in these 10 s).
    assert data_api_endpoint.stats["calls"] - calls <= 10
