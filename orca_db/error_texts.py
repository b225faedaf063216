"""What servers, PgBouncer and the drivers say when no SQLSTATE reaches the
client (connect-time FATALs, dead sockets), as patterns for
:mod:`orca_db.classify`. Each pattern's comment says what its text proves;
the facts are in docs/errors.md."""

from __future__ import annotations

import re
from typing import Any, Final


class Pattern:
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
FATAL_TEXT: Final = Pattern(
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
SERVER_TERMINATED_TEXT: Final = Pattern(
    r"terminating connection due to (?:serverless scale event timeout"
    r"|administrator command)"
    r"|terminating connection because backend initialization completed past"
    r" serverless scale point"
    r"|the database system is (?:starting up|shutting down|in recovery mode"
    r"|not yet accepting connections|not accepting connections)",
    re.IGNORECASE,
)

# Text of a connection that died or could not be made (no SQLSTATE arrives).
DISCONNECT_TEXT: Final = Pattern(
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
STORM_TEXT: Final = Pattern(
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
PGBOUNCER_NOT_SENT_TEXT: Final = Pattern(
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
PGBOUNCER_LOST_TEXT: Final = Pattern(
    r"server conn crashed\?|idle transaction timeout",
    re.IGNORECASE,
)

# DNS said "try again" (EAI_AGAIN: Lambda's VPC resolver under load): the
# connect never started.
_DNS_TEMPORARY = r"Temporary failure in name resolution"
DNS_TEMPORARY_TEXT: Final = Pattern(_DNS_TEMPORARY, re.IGNORECASE)

# Nothing answered at the address a connect tried: no PostgreSQL there (yet).
# Not a fact for classify: the WARNING of orca_db.connect_notice.
NO_ANSWER_TEXT: Final = Pattern(
    r"Connection refused|No route to host|Network is unreachable|Host is unreachable"
    rf"|{_DNS_TEMPORARY}",
    re.IGNORECASE,
)

# The connection was already closed on our side: nothing was sent. psycopg 3
# says "the connection is lost" when libpq has no socket any more (PQsocket
# -1), which it asks before it sends anything.
CLOSED_BEFORE_SEND_TEXT: Final = Pattern(
    r"connection already closed|the connection is closed|cursor already closed"
    r"|the connection is lost",
    re.IGNORECASE,
)
