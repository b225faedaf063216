"""Regressions found by running Django's own test suite on the aurora
engine (scripts/django_suite.py)."""

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError

from orca_db.classify import classify
from orca_db.testing.postgres import shared_server
from tests.testapp.models import Note


def _closed_connection_error() -> Exception:
    conn = shared_server().connect()
    conn.close()
    try:
        conn.cursor().execute("SELECT 1")
    except Exception as error:
        return error
    raise AssertionError("a closed connection executed a query")


def test_transaction_management_error_is_not_a_scale_event():
    # Django chains it to the error that once broke the transaction, which
    # may be a lost connection from long ago; the statement it refused never
    # reached the server and no retry can cure it.
    stale = _closed_connection_error()
    assert classify(stale).retryable
    try:
        raise TransactionManagementError("broken transaction") from stale
    except TransactionManagementError as error:
        failure = classify(error)
    assert not failure.retryable
    assert failure.error_type == "TransactionManagementError"


@pytest.mark.django_db(transaction=True)
def test_broken_transaction_after_client_close_keeps_the_connection():
    # transactions.tests: a connection closed inside atomic() leaves a stale
    # rollback_exc behind; a later broken transaction must raise Django's
    # TransactionManagementError, not close the (healthy) connection.
    with transaction.atomic():
        Note.objects.create(text="kept?")
        connection.close()
        with pytest.raises(Exception):  # noqa: B017 (any database error)
            Note.objects.create(text="refused")  # sets connection.rollback_exc
    with transaction.atomic():
        connection.cursor().execute("SELECT 1")
        with pytest.raises(Exception), transaction.atomic():  # noqa: B017
            connection.savepoint_ids.append("no_such_savepoint")
        with pytest.raises(TransactionManagementError):
            connection.cursor().execute("SELECT 3")
        assert connection.connection is not None and not connection.connection.closed
        connection.savepoint_ids.pop()


@pytest.mark.django_db
def test_cursor_closed_by_the_caller_is_not_replayed():
    # backends.tests.BackendTestCase.test_cursor_contextmanager: psycopg2
    # says "cursor already closed" both for this and for a lost connection.
    with connection.cursor() as cursor:
        pass
    with pytest.raises(connection.features.closed_cursor_error_class):
        cursor.execute("SELECT 1")
