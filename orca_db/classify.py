"""Which database errors a scale event (or a pause, a restart, a dropped
connection) explains, and what each one proves.

The facts behind every rule are in docs/errors.md. Both drivers are handled
through :mod:`orca_db.drivers`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final

from .drivers import sqlstate as _sqlstate
from .error_texts import (
    CLOSED_BEFORE_SEND_TEXT,
    DISCONNECT_TEXT,
    DNS_TEMPORARY_TEXT,
    FATAL_TEXT,
    PGBOUNCER_LOST_TEXT,
    PGBOUNCER_NOT_SENT_TEXT,
    SERVER_TERMINATED_TEXT,
    STORM_TEXT,
)
from .outcomes import ConnectTimeout, ScaleEventError

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
    as its own class ``from`` it (recognised by its module's name: the core
    imports no framework), SQLAlchemy raises a ``DBAPIError`` whose ``orig``
    is its cause (recognised by that), and the outcomes of
    ``orca_db.outcomes`` (every host's subclasses of them) do the same.
    Anything else (``TransactionManagementError``, chained by Django to the
    possibly stale error that once broke the transaction) is judged as
    itself: the statement it refused never reached the server."""
    for _ in range(3):
        cause = exc.__cause__
        wrapper = (
            isinstance(exc, ScaleEventError)
            or type(exc).__module__ == "django.db.utils"
            or getattr(exc, "orig", None) is cause
        )
        if not wrapper or cause is None:
            return exc
        exc = cause
    return exc


#: A transport's errors (their base class) -> its own rules: errors that
#: carry other facts than a PostgreSQL session's (the Data API's: a paused
#: cluster, throttling, a lost answer). The transport registers them; the
#: core never imports a transport.
_TRANSPORTS: dict[type[BaseException], Callable[[Any], Failure]] = {}


def register_transport(errors: type[BaseException], rule: Callable[[Any], Failure]) -> None:
    """Judge ``errors`` (a class and its subclasses) by ``rule``."""
    _TRANSPORTS[errors] = rule


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
    for errors, rule in _TRANSPORTS.items():
        if isinstance(inner, errors):
            return rule(inner)
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
    if DNS_TEMPORARY_TEXT.search(message):
        return Failure(True, True, error_type, None, message)
    if FATAL_TEXT.search(message):
        return Failure(False, False, error_type, None, message)
    if SERVER_TERMINATED_TEXT.search(message):
        storm = bool(STORM_TEXT.search(message))
        return Failure(True, True, error_type, None, message, storm=storm)
    if STORM_TEXT.search(message) or PGBOUNCER_NOT_SENT_TEXT.search(message):
        # At connect time: the server (or PgBouncer) refused the session.
        return Failure(True, True, error_type, None, message, storm=True)
    if CLOSED_BEFORE_SEND_TEXT.search(message) and not _while_interrupted(inner):
        return Failure(True, True, error_type, None, message, closed_before_send=True)
    if DISCONNECT_TEXT.search(message):
        return Failure(True, False, error_type, None, message)
    return Failure(False, False, error_type, None, message)


def _pgbouncer(error_type: str, message: str) -> Failure:
    if PGBOUNCER_NOT_SENT_TEXT.search(message):
        storm = bool(STORM_TEXT.search(message))
        return Failure(True, True, error_type, "08P01", message, storm=storm)
    if PGBOUNCER_LOST_TEXT.search(message):
        return Failure(True, False, error_type, "08P01", message)
    # A real protocol violation, or PgBouncer's query_timeout (the query
    # may have run and would run as long again): surfaces unchanged.
    return Failure(False, False, error_type, "08P01", message)


def _is_connection_level(exc: BaseException) -> bool:
    # Disconnections arrive as OperationalError (or InterfaceError for a
    # connection closed on our side); any other class is an application error
    # that merely mentions similar words.
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"OperationalError", "InterfaceError"} or isinstance(exc, ConnectTimeout):
        return True
    # psycopg2 raises its base DatabaseError itself (never a subclass, no
    # SQLSTATE) when the connection dies before libpq marks it bad: "SSL
    # SYSCALL error: EOF detected", "could not receive data from server:
    # Connection timed out" (what TCP keepalives and tcp_user_timeout give).
    return type(exc).__name__ == "DatabaseError"
