"""DB-API 2.0 exceptions for the RDS Data API, and how an AWS error becomes
one of them.

Errors of the database itself (``DatabaseErrorException``) become the
DB-API class of their SQLSTATE, read from the message the Data API relays
(``...; SQLState: 23505``), as psycopg does: Django then raises its own
``IntegrityError``, ``DataError``... Errors of the Data API service keep
their AWS name as the class name (``DatabaseResumingException``), so logs and
retry events say what AWS said.

``sqlstate``: the server's SQLSTATE when the Data API relayed one; for an
error of the service, the SQLSTATE a PostgreSQL connection would have
reported for the same event (a resuming database: 57P03, "the database
system is starting up"; a reply that never arrived: 08006, a connection lost
mid-call). That keeps ``orca_db.classify`` judging them as it judges the
connection engines' errors (docs/data-api.md#errors).
"""

from __future__ import annotations

import re
from typing import Any, Final


class Warning(Exception):  # the DB-API's name, shadowing the builtin
    pass


class Error(Exception):
    #: The server's SQLSTATE, or the equivalent one (module docstring).
    sqlstate: str | None = None
    #: The AWS error code (``DatabaseResumingException``), or None.
    aws_code: str | None = None

    def __init__(
        self, message: str = "", *, sqlstate: str | None = None, aws_code: str | None = None
    ):
        super().__init__(message)
        if sqlstate is not None:
            self.sqlstate = sqlstate
        if aws_code is not None:
            self.aws_code = aws_code

    @property
    def pgcode(self) -> str | None:
        """psycopg2's name for ``sqlstate``."""
        return self.sqlstate


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


# ----- errors of the Data API service -------------------------------------------


class DatabaseResumingException(OperationalError):
    """The Aurora Serverless v2 instance was paused; the call woke it and
    ran nothing. Wait a few seconds and try again."""

    sqlstate = "57P03"


class ThrottlingException(OperationalError):
    """The call was refused before it ran (request rate)."""

    sqlstate = "57P03"


class TransactionNotFoundException(OperationalError):
    """The transaction is gone: rolled back by the server (a scale event, a
    restart, three minutes without a call), or never existed."""

    sqlstate = "08003"


class StatementTimeoutException(OperationalError):
    """The statement outlasted the call's time limit (45 s) and was
    cancelled (or goes on running with ``continueAfterTimeout``)."""

    sqlstate = "57014"


class ReplyLost(OperationalError):
    """The call was sent, and its answer never came (connection closed or
    timed out, a 5xx from the service): it may or may not have run."""

    sqlstate = "08006"


class EndpointUnreachable(OperationalError):
    """The HTTPS connection could not be made: nothing was sent."""

    sqlstate = "08001"


class LimitExceeded(OperationalError):
    """A limit of the Data API (docs/data-api.md#limits): the message names
    it and what to do."""


class ServiceError(OperationalError):
    """Another error of the Data API service (bad ARN, secret, permissions,
    a database that does not exist...): waiting will not fix it."""


# ----- SQLSTATE -> class, as psycopg maps them -----------------------------------

_CLASS_BY_SQLSTATE_PREFIX: Final = {
    "0A": NotSupportedError,
    "21": ProgrammingError,  # cardinality violation
    "22": DataError,
    "23": IntegrityError,
    "24": InternalError,
    "25": InternalError,
    "26": InternalError,
    "27": InternalError,
    "28": OperationalError,
    "2B": InternalError,
    "2D": InternalError,
    "2F": InternalError,
    "34": InternalError,
    "38": InternalError,
    "39": InternalError,
    "3B": InternalError,
    "3D": ProgrammingError,
    "3F": ProgrammingError,
    "40": OperationalError,  # TransactionRollbackError in psycopg
    "42": ProgrammingError,
    "44": ProgrammingError,
    "53": OperationalError,
    "54": OperationalError,
    "55": OperationalError,
    "57": OperationalError,
    "58": OperationalError,
    "F0": InternalError,
    "HV": OperationalError,
    "P0": InternalError,
    "XX": InternalError,
}

_SQLSTATE_IN_MESSAGE: Final = re.compile(r"SQLState:\s*([0-9A-Z]{5})")


def sqlstate_in(message: str) -> str | None:
    match = _SQLSTATE_IN_MESSAGE.search(message)
    return match.group(1) if match else None


def database_error(message: str) -> DatabaseError:
    """A ``DatabaseErrorException`` as the DB-API class of its SQLSTATE."""
    sqlstate = sqlstate_in(message)
    cls = _CLASS_BY_SQLSTATE_PREFIX.get(sqlstate[:2], DatabaseError) if sqlstate else DatabaseError
    return cls(message, sqlstate=sqlstate, aws_code="DatabaseErrorException")


# ----- AWS errors -> classes -----------------------------------------------------

_SERVICE_CLASSES: Final[dict[str, type[Error]]] = {
    "DatabaseResumingException": DatabaseResumingException,
    "ThrottlingException": ThrottlingException,
    "TooManyRequestsException": ThrottlingException,
    "TransactionNotFoundException": TransactionNotFoundException,
    "StatementTimeoutException": StatementTimeoutException,
    # Answers of a service that did not get to run the call, or cannot say:
    # the 5xx faults of the model. Judged as a lost reply.
    "InternalServerErrorException": ReplyLost,
    "ServiceUnavailableError": ReplyLost,
    "DatabaseUnavailableException": ReplyLost,
}

# The service's own messages worth recognising (docs/data-api.md#limits).
_RESPONSE_TOO_LARGE: Final = re.compile(r"response (?:size|exceeded)|size limit", re.I)


def from_client_error(code: str, message: str) -> Error:
    """The exception for an AWS error answer ``code``/``message``."""
    if code == "DatabaseErrorException":
        return database_error(message)
    cls = _SERVICE_CLASSES.get(code)
    if cls is not None:
        return cls(f"{code}: {message}" if message else code, aws_code=code)
    if code == "BadRequestException" and _RESPONSE_TOO_LARGE.search(message):
        return LimitExceeded(
            f"{code}: {message} The Data API returns at most 1 MiB per call; the "
            f"statement did run (a write was applied). Select fewer rows or columns "
            f"(LIMIT/OFFSET, keyset pagination) or use a connection engine for this "
            f"query.",
            aws_code=code,
        )
    if code == "BadRequestException" and sqlstate_in(message):
        return database_error(message)  # older clusters relay SQL errors this way
    return ServiceError(f"{code}: {message}" if message else code, aws_code=code)


def from_exception(error: BaseException) -> Error:
    """The exception for what boto3 raised (``ClientError`` or a botocore
    transport error); anything else is returned as an ``InterfaceError``."""
    response: Any = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        info = response["Error"]
        return from_client_error(str(info.get("Code") or ""), str(info.get("Message") or ""))
    name = type(error).__name__
    if name in ("EndpointConnectionError", "ConnectTimeoutError"):
        return EndpointUnreachable(f"{name}: {error}")
    if name in (
        "ConnectionClosedError",
        "ReadTimeoutError",
        "HTTPClientError",
        "SSLError",
        "ProxyConnectionError",
        "ConnectionError",
    ):
        return ReplyLost(f"{name}: {error}")
    return InterfaceError(f"{name}: {error}")


def ends_transaction(error: Error) -> bool:
    """Whether a statement's ``error`` leaves its transaction unusable: gone
    (a scale event, a pause, its expiry), or in a state nobody knows (the
    reply was lost, the statement may still run). An SQL error only aborts
    the transaction, as in PostgreSQL: roll back (to a savepoint) and go on."""
    if isinstance(
        error,
        (
            TransactionNotFoundException,
            ReplyLost,
            DatabaseResumingException,
            ThrottlingException,
            EndpointUnreachable,
        ),
    ):
        return True
    sqlstate = error.sqlstate or ""
    return sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")


def aborts_transaction(error: Error | None) -> bool:
    """Whether PostgreSQL refused or cancelled the statement: its transaction
    then takes nothing but a rollback (to a savepoint)."""
    return isinstance(error, StatementTimeoutException) or (
        error is not None and error.aws_code == "DatabaseErrorException"
    )


def cause_of(exc: BaseException) -> Error | None:
    """The Data API error behind ``exc``: itself, or what a retry layer
    raised in its place (``TransactionRolledBack`` from it)."""
    if isinstance(exc, Error):
        return exc
    cause = exc.__cause__
    return cause if isinstance(cause, Error) else None


def nothing_ran(error: Error | None) -> bool:
    return isinstance(
        error,
        (DatabaseResumingException, ThrottlingException, EndpointUnreachable),
    )
