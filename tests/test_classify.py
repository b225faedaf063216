"""Classification of real driver errors: produced by a real server where a
test can make it happen, else instances of the drivers' own classes carrying
the texts quoted in docs/errors.md."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.utils import OperationalError as DjangoOperationalError

from orca_db.classify import classify, driver_error
from tests.driver import DRIVER

if DRIVER == "psycopg":
    import psycopg as Database
    from psycopg import errors
else:
    import psycopg2 as Database
    from psycopg2 import errors


def real_error(sql: str) -> BaseException:
    with connection.cursor() as cursor:
        try:
            cursor.execute(sql)
        except Exception as exc:
            return exc
    raise AssertionError(f"{sql!r} raised nothing")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "sql",
    [
        "SELEC 1",  # syntax error
        "SELECT 1/0",  # division by zero
        "SELECT * FROM no_such_table",
        "SELECT 'x'::int",
    ],
)
def test_application_errors_are_not_retryable(sql):
    failure = classify(real_error(sql))
    assert not failure.retryable and failure.sqlstate is not None


@pytest.mark.parametrize(
    "sqlstate_class, sqlstate",
    [
        ("AdminShutdown", "57P01"),
        ("CrashShutdown", "57P02"),
        ("CannotConnectNow", "57P03"),
        ("TooManyConnections", "53300"),
        ("IdleInTransactionSessionTimeout", "25P03"),
        ("ConnectionFailure", "08006"),
        ("TransactionResolutionUnknown", "08007"),
    ],
)
def test_connection_sqlstates_are_retryable(sqlstate_class, sqlstate):
    error = getattr(errors, sqlstate_class)("x")
    failure = classify(error) if DRIVER == "psycopg" else classify_with_code(error, sqlstate)
    assert failure.retryable
    assert failure.not_applied is (sqlstate in ("57P01", "57P03"))


@pytest.mark.parametrize(
    "sqlstate_class, sqlstate",
    [
        ("SerializationFailure", "40001"),
        ("DeadlockDetected", "40P01"),
        ("QueryCanceled", "57014"),
        ("InvalidPassword", "28P01"),
        ("InvalidAuthorizationSpecification", "28000"),
        ("InvalidCatalogName", "3D000"),
        ("UniqueViolation", "23505"),
        ("LockNotAvailable", "55P03"),
    ],
)
def test_other_sqlstates_are_not_retryable(sqlstate_class, sqlstate):
    error = getattr(errors, sqlstate_class)("x")
    failure = classify(error) if DRIVER == "psycopg" else classify_with_code(error, sqlstate)
    assert not failure.retryable


def classify_with_code(error, sqlstate):
    # psycopg2's error classes take their pgcode from the server's reply; a
    # bare instance has none, so give it the one the server would send.
    class WithCode(type(error)):
        pgcode = sqlstate

    WithCode.__name__ = type(error).__name__
    WithCode.__module__ = type(error).__module__
    return classify(WithCode(*error.args))


SERVER_CLOSED = (
    "server closed the connection unexpectedly\n\tThis probably means the server "
    "terminated abnormally\n\tbefore or while processing the request.\n"
)


@pytest.mark.parametrize(
    "message, retryable, not_applied",
    [
        # Aurora, at connect time (no SQLSTATE reaches the client)
        (
            'connection to server at "h", port 5432 failed: FATAL:  terminating connection '
            "because backend initialization completed past serverless scale point",
            True,
            True,
        ),
        # Aurora, in flight, as psycopg2 shows it over SSL
        (
            "terminating connection due to serverless scale event timeout\n"
            "SSL connection has been closed unexpectedly",
            True,
            True,
        ),
        (SERVER_CLOSED, True, False),
        ("SSL connection has been closed unexpectedly", True, False),
        ("SSL SYSCALL error: EOF detected", True, False),
        ("consuming input failed: " + SERVER_CLOSED, True, False),
        ('connection to server at "h", port 5432 failed: timeout expired', True, False),
        (
            'connection to server at "127.0.0.1", port 1 failed: Connection refused\n'
            "\tIs the server running on that host and accepting TCP/IP connections?",
            True,
            False,
        ),
        ("FATAL:  the database system is starting up", True, True),
        # refused at connect time: the session never started
        ("FATAL:  sorry, too many clients already", True, True),
        ("FATAL:  remaining connection slots are reserved for roles with privileges", True, True),
        # EAI_AGAIN: the resolver asked us to try again (Lambda's VPC DNS)
        (
            'could not translate host name "db.cluster.example" to address: '
            "Temporary failure in name resolution",
            True,
            True,
        ),
        # never retried
        ('FATAL:  password authentication failed for user "orca"', False, False),
        ('FATAL:  role "nobody" does not exist', False, False),
        ('FATAL:  database "nope" does not exist', False, False),
        ('could not translate host name "no.such.host" to address', False, False),
        (
            'could not translate host name "no.such.host" to address: Name or service not known',
            False,
            False,
        ),
        ('FATAL:  no pg_hba.conf entry for host "1.2.3.4"', False, False),
    ],
)
def test_messages_without_sqlstate(message, retryable, not_applied):
    failure = classify(Database.OperationalError(message))
    assert (failure.retryable, failure.not_applied) == (retryable, not_applied)
    assert failure.sqlstate is None


def test_connection_closed_on_our_side_means_nothing_was_sent():
    text = "connection already closed" if DRIVER == "psycopg2" else "the connection is closed"
    cls = Database.InterfaceError if DRIVER == "psycopg2" else Database.OperationalError
    failure = classify(cls(text))
    assert failure.retryable and failure.not_applied and failure.closed_before_send


@pytest.mark.skipif(DRIVER != "psycopg", reason="psycopg 3's words")
def test_no_socket_any_more_means_nothing_was_sent_unless_interrupted():
    """psycopg 3 asks libpq for the socket before sending anything: "the
    connection is lost" (none any more) proves the statement never left;
    except while it cancels a statement interrupted after it was sent."""
    assert classify(Database.OperationalError("the connection is lost")).closed_before_send
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise Database.OperationalError("the connection is lost")  # noqa: B904
    except Database.OperationalError as error:
        failure = classify(error)
    assert failure.retryable and not failure.closed_before_send


def test_similar_words_in_an_application_error_do_not_count():
    # A ProgrammingError whose text mentions a lost connection is still an
    # application error.
    assert not classify(Database.ProgrammingError(SERVER_CLOSED)).retryable


def test_django_wrapped_errors_are_unwrapped():
    inner = Database.OperationalError(SERVER_CLOSED)
    try:
        try:
            raise inner
        except Exception as exc:
            raise DjangoOperationalError(str(exc)) from exc
    except DjangoOperationalError as wrapped:
        assert driver_error(wrapped) is inner
        assert classify(wrapped).retryable


@pytest.mark.parametrize(
    "message, storm",
    [
        ("FATAL:  sorry, too many clients already", True),
        ("FATAL:  the database system is starting up", True),
        ("FATAL:  the database system is not yet accepting connections", True),
        (
            "FATAL:  terminating connection because backend initialization completed past "
            "serverless scale point",
            False,
        ),
        (SERVER_CLOSED, False),
        ('connection to server at "h", port 5432 failed: Connection refused', False),
    ],
)
def test_a_full_or_starting_server_is_a_storm(message, storm):
    """Storms back off with full jitter up to a larger cap (orca_db.backoff)."""
    assert classify(Database.OperationalError(message)).storm is storm


def test_storm_sqlstates():
    for name, code in (("TooManyConnections", "53300"), ("CannotConnectNow", "57P03")):
        error = getattr(errors, name)("x")
        failure = classify(error) if DRIVER == "psycopg" else classify_with_code(error, code)
        assert failure.storm
    error = errors.AdminShutdown("x")
    failure = classify(error) if DRIVER == "psycopg" else classify_with_code(error, "57P01")
    assert not failure.storm


@pytest.mark.parametrize(
    "message, retryable, not_applied",
    [
        # waited in PgBouncer's queue, never sent to a server
        ("query_wait_timeout", True, True),
        ("no more connections allowed (max_client_conn)", True, True),
        ("server login has been failing, try again later (server_login_retry)", True, True),
        ("pgbouncer cannot connect to server", True, True),
        ("client_login_timeout (server down)", True, True),
        # the server connection died under the client: what was in flight
        # may have run
        ("server conn crashed?", True, False),
        ("idle transaction timeout", True, False),
        # PgBouncer ended a query that ran too long: it may have run, and
        # would run as long again
        ("query timeout", False, False),
        # a real protocol violation
        ("invalid message format", False, False),
    ],
)
def test_pgbouncer_errors(message, retryable, not_applied):
    """PgBouncer sends its own errors as 08P01 (protocol_violation)."""
    error = errors.ProtocolViolation(message)
    failure = classify(error) if DRIVER == "psycopg" else classify_with_code(error, "08P01")
    assert (failure.retryable, failure.not_applied) == (retryable, not_applied)


def test_conflicts_are_not_retried_alone_but_marked():
    for name, code in (("SerializationFailure", "40001"), ("DeadlockDetected", "40P01")):
        error = getattr(errors, name)("x")
        failure = classify(error) if DRIVER == "psycopg" else classify_with_code(error, code)
        assert failure.conflict and not failure.retryable


@pytest.mark.parametrize(
    "message",
    [
        "SSL SYSCALL error: EOF detected",
        "SSL SYSCALL error: Connection timed out",
        "could not receive data from server: Connection timed out",
    ],
)
def test_a_bare_database_error_for_a_lost_connection_is_a_lost_reply(message):
    """psycopg2 raises its base DatabaseError, not OperationalError, when the
    connection dies before libpq marks it bad (TCP keepalives and
    tcp_user_timeout give exactly these): a lost reply, proving nothing."""
    failure = classify(Database.DatabaseError(message))
    assert failure.retryable and not failure.not_applied and not failure.closed_before_send


def test_a_bare_database_error_with_another_text_is_not_retried():
    assert not classify(Database.DatabaseError("something else went wrong")).retryable
