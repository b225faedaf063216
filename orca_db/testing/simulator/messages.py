"""What the simulator itself says to clients: Aurora's texts and the
ErrorResponses PostgreSQL sends when it refuses a connection."""

from __future__ import annotations

from .. import pgwire

SCALE_EVENT_MESSAGE = "terminating connection due to serverless scale event timeout"
SCALE_POINT_MESSAGE = (
    "terminating connection because backend initialization completed past serverless scale point"
)
# Aurora's SQLSTATE for the startup rejection is not documented; neither
# driver exposes one for an error at connect time anyway.
SCALE_POINT_SQLSTATE = "57P01"
ADMIN_SHUTDOWN = "57P01"
TOO_MANY_CONNECTIONS = "53300"
CANNOT_CONNECT_NOW = "57P03"

#: How connections that fail fast during a resume storm fail.
STORM_FAILURES = ("eof", "too_many_connections", "pg_hba", "starting_up")


def fatal(sqlstate: str, message: str) -> bytes:
    return pgwire.error_response("FATAL", sqlstate, message)


def scale_event() -> bytes:
    return fatal(ADMIN_SHUTDOWN, SCALE_EVENT_MESSAGE)


def scale_point() -> bytes:
    return fatal(SCALE_POINT_SQLSTATE, SCALE_POINT_MESSAGE)


def too_many_connections() -> bytes:
    # PostgreSQL's text when max_connections is reached (Aurora's too).
    return fatal(TOO_MANY_CONNECTIONS, "sorry, too many clients already")


def starting_up() -> bytes:
    # What the postmaster answers before recovery lets connections in.
    return fatal(CANNOT_CONNECT_NOW, "the database system is starting up")


def pg_hba(peer_host: str, parameters: dict[str, str]) -> bytes:
    user = parameters.get("user", "")
    database = parameters.get("database", user)
    return fatal(
        "28000",
        f'no pg_hba.conf entry for host "{peer_host}", user "{user}", '
        f'database "{database}", no encryption',
    )


def storm_failure(kind: str, peer_host: str, parameters: dict[str, str]) -> bytes:
    """The last bytes a connection failed by a resume storm receives
    (none for ``"eof"``: the stream just ends)."""
    if kind == "too_many_connections":
        return too_many_connections()
    if kind == "pg_hba":
        return pg_hba(peer_host, parameters)
    if kind == "starting_up":
        return starting_up()
    return b""
