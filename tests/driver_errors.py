"""Real driver exceptions, without a server, for the unit tests of the retry
core (tests/test_decisions.py, tests/test_retry_loop.py).

Each is an instance of the driver's own class (the driver of this run,
tests/driver.py) carrying the text the server or libpq writes
(docs/errors.md). psycopg 3's classes carry their SQLSTATE; psycopg2 takes
it from the server's reply, so a bare instance is given the one the server
would send (as tests/test_classify.py does).
"""

from __future__ import annotations

from tests.driver import DRIVER

if DRIVER == "psycopg":
    import psycopg as Database
    from psycopg import errors
    from psycopg import sql as composition
else:
    import psycopg2 as Database
    from psycopg2 import errors
    from psycopg2 import sql as composition

__all__ = ["DRIVER", "Database", "composition", "lost_reply", "not_sent", "server_error"]


def server_error(class_name: str, sqlstate: str, message: str) -> BaseException:
    """An error the server sent with ``sqlstate``, as the driver raises it."""
    cls = getattr(errors, class_name)
    if DRIVER == "psycopg":
        assert cls.sqlstate == sqlstate
        return cls(message)

    class WithCode(cls):
        pgcode = sqlstate

    WithCode.__name__ = cls.__name__
    WithCode.__qualname__ = cls.__qualname__
    WithCode.__module__ = cls.__module__
    return WithCode(message)


#: libpq's words for a connection that died under a statement (no SQLSTATE).
SERVER_CLOSED_TEXT = (
    "server closed the connection unexpectedly\n\tThis probably means the server "
    "terminated abnormally\n\tbefore or while processing the request.\n"
)


def lost_reply(message: str = SERVER_CLOSED_TEXT) -> BaseException:
    """The connection died with the statement in flight: no SQLSTATE."""
    return Database.OperationalError(message)


def not_sent() -> BaseException:
    """The connection was already closed on our side when the statement
    was to be sent: each driver's own error and words for it."""
    if DRIVER == "psycopg2":
        return Database.InterfaceError("connection already closed")
    return Database.OperationalError("the connection is closed")
