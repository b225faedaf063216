"""Which database errors a scale event (or a pause, a restart, a dropped
connection) explains, and what each one proves.

The facts behind every rule are in docs/errors.md. Both drivers are handled
through :mod:`orca_db.drivers`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Final

from .drivers import sqlstate as _sqlstate

# SQLSTATEs a retry can cure: the server or the connection went away.
_RETRYABLE_SQLSTATES: Final = frozenset(
    {
        "57P01",  # admin_shutdown: scale event timeout, pg_terminate_backend
        "57P02",  # crash_shutdown: another backend crashed, all were reset
        "57P03",  # cannot_connect_now: starting up / shutting down
        "57P05",  # idle_session_timeout: the session was closed while idle
        "25P03",  # idle_in_transaction_session_timeout (a FATAL: session gone)
        "53300",  # too_many_connections: a resume storm, a full cluster
        "08000",  # connection_exception
        "08001",  # sqlclient_unable_to_establish_sqlconnection
        "08003",  # connection_does_not_exist
        "08004",  # sqlserver_rejected_establishment_of_sqlconnection
        "08006",  # connection_failure
        "08007",  # transaction_resolution_unknown
    }
)

# The server is overloaded or not ready: a fleet of clients retrying fast
# keeps it so. These back off with full jitter up to a larger cap.
_STORM_SQLSTATES: Final = frozenset({"53300", "57P03"})

# The transaction lost a race with another one and was rolled back by the
# server: the textbook cure is to run the whole transaction again, which
# retry_atomic does; a single statement is never replayed for them.
_CONFLICT_SQLSTATES: Final = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
    }
)

# The server itself aborted the statement before ending the session: its
# termination is processed at an interrupt check, never between a commit and
# the reply that reports it, so the statement cannot have committed.
# (57P02 is sent from a signal handler at any moment, so it proves nothing.)
_PROOF_SQLSTATES: Final = frozenset({"57P01", "57P03"})


class _Pattern:
    """A regular expression compiled on its first search: only a failure
    needs these, and compiling them at import cost a Lambda cold start more
    than the rest of this module."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, *args: Any):
        self._args = args
        self._compiled: re.Pattern[str] | None = None

    def search(self, text: str) -> re.Match[str] | None:
        if self._compiled is None:
            self._compiled = re.compile(*self._args)
        return self._compiled.search(text)


# Errors no retry can cure; they surface at once even though the driver
# reports them as OperationalError at connect time with no SQLSTATE.
_FATAL_TEXT: Final = _Pattern(
    r"password authentication failed"
    r"|authentication failed for user"
    r"|role \".*\" does not exist"
    r"|database \".*\" does not exist"
    r"|no pg_hba\.conf entry"
    r"|permission denied for database"
    r"|could not translate host name"
    r"|Name or service not known"
    r"|nodename nor servname provided"
    r"|invalid (?:dsn|connection option|integer value|sslmode value)"
    r"|missing \"=\" after"
    r"|SSL is not enabled on the server"
    r"|server does not support SSL",
    re.IGNORECASE,
)

# Text of a terminating FATAL written by the server: it ended the session
# before (or instead of) running what was sent.
_SERVER_TERMINATED_TEXT: Final = _Pattern(
    r"terminating connection due to (?:serverless scale event timeout"
    r"|administrator command)"
    r"|terminating connection because backend initialization completed past"
    r" serverless scale point"
    r"|the database system is (?:starting up|shutting down|in recovery mode"
    r"|not yet accepting connections|not accepting connections)",
    re.IGNORECASE,
)

# Text of a connection that died or could not be made (no SQLSTATE arrives).
_DISCONNECT_TEXT: Final = _Pattern(
    r"server closed the connection unexpectedly"
    r"|SSL connection has been closed unexpectedly"
    r"|SSL SYSCALL error"
    r"|EOF detected"
    r"|terminating connection"
    r"|could not receive data from server"
    r"|could not send data to server"
    r"|consuming input failed"
    r"|connection not open"
    r"|no connection to the server"
    r"|the connection is lost"
    r"|lost synchronization with server"
    r"|Connection refused"
    r"|Connection reset by peer"
    r"|Broken pipe"
    r"|timeout expired"
    r"|connection timeout expired"
    r"|could not connect to server"
    r"|server is not accepting connections"
    r"|sorry, too many clients already"
    r"|remaining connection slots are reserved"
    r"|the database system is",
    re.IGNORECASE,
)

# Text of a server (or PgBouncer) that is full or not ready yet, at connect
# time where no SQLSTATE reaches the client.
_STORM_TEXT: Final = _Pattern(
    r"sorry, too many clients already"
    r"|remaining connection slots are reserved"
    r"|the database system is (?:starting up|not yet accepting connections"
    r"|not accepting connections)"
    r"|no more connections allowed"
    r"|server login has been failing",
    re.IGNORECASE,
)

# PgBouncer reports its own errors as 08P01 (protocol_violation), a code
# that otherwise means a client bug and is never retried. These messages
# mean the query never reached a server: safe to send again.
_PGBOUNCER_NOT_SENT_TEXT: Final = _Pattern(
    r"query_wait_timeout"
    r"|no more connections allowed"
    r"|server login has been failing"
    r"|pgbouncer cannot connect to server"
    r"|client_login_timeout"
    r"|client_idle_timeout",
    re.IGNORECASE,
)
# The server connection died under a linked client (mid-statement or
# mid-transaction: what was in flight may have run), or its idle
# transaction was ended: a lost connection like any other.
_PGBOUNCER_LOST_TEXT: Final = _Pattern(
    r"server conn crashed\?|idle transaction timeout",
    re.IGNORECASE,
)

# DNS said "try again" (EAI_AGAIN: Lambda's VPC resolver under load): the
# connect never started.
_DNS_TEMPORARY_TEXT: Final = _Pattern(r"Temporary failure in name resolution", re.IGNORECASE)

# The connection was already closed on our side: nothing was sent. psycopg 3
# says "the connection is lost" when libpq has no socket any more (PQsocket
# -1), which it asks before it sends anything.
_CLOSED_BEFORE_SEND_TEXT: Final = _Pattern(
    r"connection already closed|the connection is closed|cursor already closed"
    r"|the connection is lost",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """What one database error means for a retry."""

    #: A retry (on a new connection) may cure it.
    retryable: bool
    #: The statement or COMMIT provably did not take effect on the server.
    not_applied: bool
    #: The driver exception class name, e.g. ``AdminShutdown``.
    error_type: str
    sqlstate: str | None
    message: str
    #: The connection was already closed on our side: nothing was sent.
    closed_before_send: bool = False
    #: The server is full or starting (a resume storm): back off harder.
    storm: bool = False
    #: A serialization failure or deadlock: the server rolled the
    #: transaction back; re-running the whole transaction is the cure.
    conflict: bool = False


#: The backend found the idle connection closed by the server before it
#: sent anything on it (a scale event between two statements): nothing of
#: what comes next was sent.
SERVER_CLOSED: Final = Failure(
    retryable=True,
    not_applied=True,
    error_type="ServerClosedConnection",
    sqlstate=None,
    message="the server had closed the idle connection before anything was sent on it",
    closed_before_send=True,
)


def driver_error(exc: BaseException) -> BaseException:
    """The driver exception behind Django's wrapper of it (or ours).

    Only wrappers are unwrapped: ``django.db.utils`` re-raises a driver error
    as its own class ``from`` it, and ``orca_db.exceptions`` do the same.
    Anything else (``TransactionManagementError``, chained by Django to the
    possibly stale error that once broke the transaction) is judged as
    itself: the statement it refused never reached the server."""
    for _ in range(3):
        module = type(exc).__module__
        if module not in ("django.db.utils", "orca_db.exceptions") or exc.__cause__ is None:
            return exc
        exc = exc.__cause__
    return exc


def _while_interrupted(error: BaseException) -> bool:
    """Raised while handling an interrupted statement (psycopg 3 waits
    again on the socket to cancel a query stopped by Ctrl-C): the statement
    had been sent, whatever the text says."""
    return isinstance(error.__context__, KeyboardInterrupt) or (
        type(error.__context__).__name__ == "CancelledError"
    )


def classify(exc: BaseException) -> Failure:
    """Classify ``exc`` (a driver error, or Django's wrapper of one)."""
    inner = driver_error(exc)
    if type(inner).__module__.startswith("orca_db.data_api"):
        # The Data API engine's errors carry AWS's facts (a paused cluster,
        # throttling, a lost answer): its own rules, same Failure.
        from .data_api.classify import classify_data_api

        return classify_data_api(inner)  # type: ignore[arg-type]
    sqlstate = _sqlstate(inner)
    message = str(inner).strip()
    error_type = type(inner).__name__
    if sqlstate == "08P01":
        return _pgbouncer(error_type, message)
    if sqlstate is not None:
        return Failure(
            retryable=sqlstate in _RETRYABLE_SQLSTATES,
            not_applied=sqlstate in _PROOF_SQLSTATES,
            error_type=error_type,
            sqlstate=sqlstate,
            message=message,
            storm=sqlstate in _STORM_SQLSTATES,
            conflict=sqlstate in _CONFLICT_SQLSTATES,
        )
    if not _is_connection_level(inner):
        return Failure(False, False, error_type, None, message)
    if _DNS_TEMPORARY_TEXT.search(message):
        return Failure(True, True, error_type, None, message)
    if _FATAL_TEXT.search(message):
        return Failure(False, False, error_type, None, message)
    if _SERVER_TERMINATED_TEXT.search(message):
        storm = bool(_STORM_TEXT.search(message))
        return Failure(True, True, error_type, None, message, storm=storm)
    if _STORM_TEXT.search(message) or _PGBOUNCER_NOT_SENT_TEXT.search(message):
        # At connect time: the server (or PgBouncer) refused the session.
        return Failure(True, True, error_type, None, message, storm=True)
    if _CLOSED_BEFORE_SEND_TEXT.search(message) and not _while_interrupted(inner):
        return Failure(True, True, error_type, None, message, closed_before_send=True)
    if _DISCONNECT_TEXT.search(message):
        return Failure(True, False, error_type, None, message)
    return Failure(False, False, error_type, None, message)


def _pgbouncer(error_type: str, message: str) -> Failure:
    if _PGBOUNCER_NOT_SENT_TEXT.search(message):
        storm = bool(_STORM_TEXT.search(message))
        return Failure(True, True, error_type, "08P01", message, storm=storm)
    if _PGBOUNCER_LOST_TEXT.search(message):
        return Failure(True, False, error_type, "08P01", message)
    # A real protocol violation, or PgBouncer's query_timeout (the query
    # may have run and would run as long again): surfaces unchanged.
    return Failure(False, False, error_type, "08P01", message)


def _is_connection_level(exc: BaseException) -> bool:
    # Disconnections arrive as OperationalError (or InterfaceError for a
    # connection closed on our side); any other class is an application error
    # that merely mentions similar words.
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"OperationalError", "InterfaceError"}:
        return True
    # psycopg2 raises its base DatabaseError itself (never a subclass, no
    # SQLSTATE) when the connection dies before libpq marks it bad: "SSL
    # SYSCALL error: EOF detected", "could not receive data from server:
    # Connection timed out" (what TCP keepalives and tcp_user_timeout give).
    return type(exc).__name__ == "DatabaseError"
