"""What became of a COMMIT whose reply was lost.

A COMMIT whose reply never came may or may not have committed. Before
COMMIT ``retry_atomic`` reads the transaction's id, assigning one if the
transaction has none yet (rule 5 of docs/retry-safety.md: a transaction
that took no id can still have effects at COMMIT, a ``NOTIFY``), with the
identity of the cluster it runs on (``system_identifier``, read once per
connection); after a lost reply a new connection first checks that it
reached the same cluster (a blue/green switchover moves the endpoint to
another one, with its own transaction ids: its answer would be about
another transaction), then asks ``pg_xact_status(id)``: "committed"
(return the result, run the on_commit callbacks Django dropped), "aborted"
(run everything again), "in progress" (the old backend has not noticed its
client is gone: wait a moment, then end it so that the status becomes
final). Another cluster, or one whose identity cannot be read, is
``OutcomeUnknown``. Every connection that dies while asking is replaced,
within the operation's deadline (the retry engine asks again).

Part of the core: it imports no framework. The protocol itself runs at the
DB-API level: :func:`read_transaction_id` on the transaction's cursor before
COMMIT, :func:`resolve` with an ``ask`` function on a new connection after
a lost reply (:func:`dbapi_ask` makes one from a DB-API connection). The
Django host's entry points (:func:`transaction_id`,
:func:`transaction_status`) talk to its connection object through
``cursor()``, ``ensure_connection()`` and ``connection``, catch only what
the host's error table says a failed query raises, and the errors are the
host's ``OutcomeUnknown``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from .classify import Failure, classify, driver_error
from .outcomes import CORE_ERRORS, ErrorTable, OutcomeUnknown, TransactionRolledBack

logger = logging.getLogger("orca_db.retry")

# The transaction's id, assigned now if it has none: a transaction that
# took none so far (NOTIFY only, advisory locks, reads) can still have
# effects at COMMIT, and only an id lets another session ask what became of
# it. A standby cannot assign one, and nothing committed there has effects:
# there, no id means nothing to resolve.
_XACT_ID_SQL = (
    "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_current_xact_id_if_assigned() "
    "ELSE pg_current_xact_id() END)::text, pg_backend_pid()"
)
# The cluster's identity: ``system_identifier``, chosen at initdb and kept by
# every physical replica (Aurora's readers and failovers share one cluster
# volume and one xid space); a blue/green switchover's green cluster is
# another cluster. ``pg_control_system()`` is executable by PUBLIC on
# PostgreSQL 15 (checked; no superuser, no pg_monitor), but a provider may
# revoke it, and the application's transaction must never fail on it: the
# privilege is checked at executor start-up even in a CASE branch never
# taken, so the call is made through ``query_to_xml``, which plans its text
# only when the branch runs. NULL where it may not be called: a lost COMMIT
# is then OutcomeUnknown.
_CLUSTER_SQL = (
    "CASE WHEN has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE') "
    "THEN substring(query_to_xml('SELECT system_identifier AS s "
    "FROM pg_catalog.pg_control_system()', false, true, '')::text FROM '<s>([0-9]+)</s>') END"
)
_XACT_ID_AND_CLUSTER_SQL = _XACT_ID_SQL + ", " + _CLUSTER_SQL
_XACT_STATUS_SQL = "SELECT pg_xact_status(%s::xid8)"
# The old backend may still be finishing the COMMIT (or not have noticed yet
# that its client is gone): how long to wait for it before ending it.
_IN_PROGRESS_WAIT = 1.0
_IN_PROGRESS_POLL = 0.02
# Ends the old backend only while it still runs that very transaction (a pid
# can be reused): its transaction then commits or aborts, and says which.
_TERMINATE_SQL = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE pid = %s AND backend_xid = %s::xid8::xid"
)


@dataclasses.dataclass
class LostCommit:
    """A COMMIT sent, whose reply never came."""

    xid: str | None
    backend_pid: int | None
    #: The ``system_identifier`` of the cluster the transaction ran on
    #: (``None``: it could not be read).
    cluster: str | None
    result: Any
    hooks: list
    cause: BaseException
    failure: Failure


#: transaction_status(): the new connection reached another cluster.
OTHER_CLUSTER = "another cluster"


#: Runs one query (SQL, parameters) and returns the first column of its row;
#: ``None`` for a query that failed for good (logged); raises when the
#: connection died (the caller asks again on another).
Ask = Callable[[str, list], Any]


def transaction_status(connection, lost_connection, pending: LostCommit, operation) -> str | None:
    """:func:`resolve` on the host's connection object (Django's): never on
    the connection that was lost, which is dropped first."""
    assert pending.xid is not None  # a transaction without one had nothing to lose
    if connection.connection is lost_connection:
        drop(connection)  # never ask the connection that was lost
    connection.ensure_connection()
    return resolve(functools.partial(_query, connection, operation), pending, operation)


def resolve(ask: Ask, pending: LostCommit, operation) -> str | None:
    """What became of the transaction whose COMMIT reply was lost:
    "committed", "aborted", "in progress" (still, after waiting and ending
    the old backend), ``OTHER_CLUSTER`` (the new connection reached another
    cluster than the transaction's), or ``None`` (the server cannot tell,
    or the cluster's identity could not be read). Asked through ``ask`` on a
    new connection; a connection that dies while asking raises, and the
    caller's retry engine asks again on another one within the deadline
    (``operation``'s)."""
    assert pending.xid is not None  # a transaction without one had nothing to lose
    cluster = ask("SELECT " + _CLUSTER_SQL, [])
    if pending.cluster is None or cluster is None:
        return None  # no proof that this is the transaction's cluster
    if cluster != pending.cluster:
        # Another cluster's pg_xact_status speaks of another transaction
        # with the same number: never asked.
        return OTHER_CLUSTER
    started = time.monotonic()
    budget = min(2 * _IN_PROGRESS_WAIT, max(0.0, operation.remaining()))
    terminated = False
    while True:
        status = ask(_XACT_STATUS_SQL, [pending.xid])
        waited = time.monotonic() - started
        if status != "in progress" or waited >= budget:
            return status
        if not terminated and waited >= budget / 2:
            # Still "in progress": the old backend has not noticed that its
            # client is gone (a silent network). Ending it makes it finish
            # the COMMIT (a commit record being written cannot be
            # interrupted) or abort; either way the status becomes final.
            terminated = True
            ask(_TERMINATE_SQL, [pending.backend_pid, pending.xid])
        time.sleep(_IN_PROGRESS_POLL)


def _query(connection, operation, sql: str, params: list) -> Any:
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]
    except operation.settings.errors.database as error:
        if classify(error).retryable:
            # This connection died too: the engine asks again on a new one
            # (the next attempt reconnects), within the deadline.
            drop(connection)
            raise
        _failed_for_good(sql, operation, error)
        return None


def _failed_for_good(sql: str, operation, error: BaseException) -> None:
    # "transaction ID is in the future": another server's history; not
    # allowed to end another role's backend: keep waiting.
    logger.warning(
        "%s failed on database %r: %s",
        sql.split("(")[0],
        operation.alias,
        type(driver_error(error)).__name__,
    )


def dbapi_ask(dbapi_connection: Any, operation) -> Ask:
    """An :data:`Ask` on a DB-API connection in autocommit (a host below
    Django's cursor: SQLAlchemy's ``connection.connection.dbapi_connection``).
    A failure a retry can cure raises (the caller replaces the connection);
    any other is logged and answers ``None``."""

    def ask(sql: str, params: list) -> Any:
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(sql, params)
                return cursor.fetchone()[0]
            finally:
                cursor.close()
        except Exception as error:
            if classify(error).retryable:
                raise
            _failed_for_good(sql, operation, error)
            return None

    return ask


def read_transaction_id(cursor: Any) -> tuple[str | None, int, str | None]:
    """On the open transaction's DB-API cursor, before COMMIT: its id
    (assigned now if need be), its backend's pid and its cluster's identity,
    in one round trip: the :class:`LostCommit` fields a lost reply needs."""
    cursor.execute(_XACT_ID_AND_CLUSTER_SQL)
    xid, pid, cluster = cursor.fetchone()
    return xid, pid, cluster


def unresolved(
    alias: str, pending: LostCommit, status: str | None, errors: ErrorTable = CORE_ERRORS
) -> OutcomeUnknown:
    """The error for a lost COMMIT the server could not resolve (the class
    of ``errors``, the host's table)."""
    unknown = errors.of(OutcomeUnknown)
    lost = (
        f"The connection to database {alias!r} was lost while COMMIT was in flight "
        f"({pending.failure.error_type})"
    )
    if status == OTHER_CLUSTER:
        return unknown(
            f"{lost}, and the new connection reached another cluster (another "
            f"system_identifier: a blue/green switchover?), whose transaction ids are not "
            f"this transaction's: whether it committed cannot be told."
        )
    why = status or "unknown"
    if pending.cluster is None:
        why = "the cluster's identity (pg_control_system) could not be read"
    return unknown(
        f"{lost} and the server cannot tell whether the transaction committed (status: {why})."
    )


def question_failed(
    alias: str, pending: LostCommit, error: BaseException, errors: ErrorTable = CORE_ERRORS
) -> OutcomeUnknown:
    """The error for a lost COMMIT that could not be asked about: the new
    connection was refused for good (a login refused, a session rule 1
    will not restore: ``SessionStateLost``, whose "start over" would run
    again what may have committed)."""
    return errors.of(OutcomeUnknown)(
        f"The connection to database {alias!r} was lost while COMMIT was in flight "
        f"({pending.failure.error_type}), and asking whether it committed failed "
        f"({type(driver_error(error)).__name__}): the transaction may or may not have "
        f"committed."
    )


def drop(connection) -> None:
    """Give up a connection that was lost; its session comes back on the
    next one (the aurora engine), or is simply gone (any other)."""
    lose = getattr(connection, "_orca_lose_connection", None)
    if lose is not None:
        lose()
    else:
        connection.close()


def transaction_id(connection) -> tuple[str | None, int, str | None]:
    """The open transaction's id (assigned now if need be), its backend's
    pid, and the identity of the cluster it runs on. The identity is read
    once per driver connection (a session never changes cluster), in the
    same round trip as the id."""
    driver = connection.connection
    known = getattr(connection, "_orca_cluster_identity", None)
    # Through Django's cursor: execute wrappers, the debug log and
    # assertNumQueries see it, as they see every query sent.
    with connection.cursor() as cursor:
        if known is not None and known[0] is driver:
            cursor.execute(_XACT_ID_SQL)
            xid, pid = cursor.fetchone()
            return xid, pid, known[1]
        cursor.execute(_XACT_ID_AND_CLUSTER_SQL)
        xid, pid, cluster = cursor.fetchone()
    connection._orca_cluster_identity = (driver, cluster)
    return xid, pid, cluster


def commit_error(error: BaseException, handled: BaseException | None = None) -> BaseException:
    """The error the COMMIT itself raised. Django may mask it: after a failed
    COMMIT, leaving the atomic block may reconnect, and that can fail too.

    ``handled`` is the exception the application was handling when the run
    began (``retry_atomic`` called in an ``except`` block): Python chains it
    to everything raised since, and it says nothing of this COMMIT."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None or seen is handled:
            break
        if isinstance(seen, (OutcomeUnknown, TransactionRolledBack)):
            return seen
        seen = seen.__context__
    return error
