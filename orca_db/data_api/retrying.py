"""The Data API transport on orca-db's retry core (``orca_db.retry``):
which calls are retried, and what is raised instead.

Below both hosts: the Django engine (``orca_db.backends.aurora_data_api``)
and the SQLAlchemy dialect (``orca_db.sqlalchemy.data_api``) install a
:class:`RetryingCaller` on each connection, with a function that gives the
settings now (the host's ``RetrySettings``, whose error table names the
classes raised: Django's ``orca_db.exceptions``, or the core's
``orca_db.outcomes``, which the dialect raises as ``orca_db.sqlalchemy``'s).

Every Data API call (statement, batch, begin, commit, rollback) is one
operation of the core: one deadline, one backoff, one ``RetryEvent`` when it
settled after a retryable failure. The guarantees are the connection
engines' (docs/retry-safety.md):

- a call that provably ran nothing (paused database, throttled, no HTTPS
  connection made) is retried, whatever it was;
- a call whose answer never came is retried if it was a read outside a
  transaction (or ``retry_writes`` is on); a write is ``OutcomeUnknown``,
  a ``CommitTransaction`` too;
- a transaction that is gone, or whose state nobody knows, is
  ``TransactionRolledBack``: nothing of it was committed (orca-db never sends
  ``CommitTransaction`` for it, and rolls it back, or the Data API does
  after three minutes). ``orca_db.retry_atomic`` runs it again;
- SQL errors and timeouts surface at once, unchanged.

Inside an operation of the core that already retries (``retry_atomic``),
a call is made once and its error goes up unchanged: that operation judges
it, and reports the one event.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

from orca_db import decisions
from orca_db.classify import Failure, classify, driver_error
from orca_db.deadlines import TimedOut, cap_left, run_within
from orca_db.options import RetrySettings
from orca_db.outcomes import (
    DeadlineExceeded,
    OutcomeUnknown,
    TransactionRolledBack,
    WriteDeadlineExceeded,
)
from orca_db.retry import Operation, active_operation, recover
from orca_db.sql import is_replayable_read

from . import errors
from .call import Call

#: SQLSTATE read_only_sql_transaction: a replayed "read" tried to write.
_READ_ONLY_VIOLATION = "25006"

#: Seconds a rollback of a transaction given up may be retried for.
CLEANUP_DEADLINE = 10.0

_PHASES = {
    "ExecuteStatement": "execute",
    "BatchExecuteStatement": "execute",
    "BeginTransaction": "transaction",
    "CommitTransaction": "transaction",
    "RollbackTransaction": "transaction",
}


class RetryingCaller:
    """``Connection.caller`` for a host's connections: one call, and on a
    retryable failure, the core's retries. ``alias`` is the name events and
    messages carry; ``settings()`` the host's retry settings as configured
    now. With ``cleanup``, the caller of the rollbacks a connection sends
    when it gives a transaction up: retried even inside another operation
    (whose judge never sees them), within at most ``CLEANUP_DEADLINE``
    seconds, as the locks are held until it runs."""

    def __init__(self, alias: str, settings: Callable[[], RetrySettings], *, cleanup: bool = False):
        self.alias = alias
        self.settings = settings
        self.cleanup = cleanup

    def __call__(self, call: Call) -> dict:
        send = _rollback_done_if_gone(call) if self.cleanup else call.send
        settings = self.settings()
        send = _bounded(send, call, self.alias, settings)
        try:
            return send()
        except errors.Error as error:
            first = error
        if self.cleanup:
            settings = dataclasses.replace(
                settings, deadline=min(settings.deadline, CLEANUP_DEADLINE)
            )
        elif active_operation(self.alias) is not None:
            raise first
        if not settings.enabled:
            raise first
        failure = classify(first)
        if not failure.retryable:
            raise first
        operation = Operation(
            self.alias,
            _PHASES[call.operation],
            settings,
            statement=call.statement if call.statement is not None else call.operation,
        )
        judge = _Judge(self.alias, call, settings)

        def replay() -> dict:
            # Rule 3 (docs/retry-safety.md): a read replayed because it is a
            # read runs READ ONLY, as on the connection engines.
            if judge.read_replay:
                return _read_only(self.alias, call, settings)
            return send()

        return recover(operation, first, replay, judge)


def _bounded(
    send: Callable[[], dict], call: Call, alias: str, settings: RetrySettings
) -> Callable[[], dict]:
    """Each HTTPS call waited for at most what is left of the Lambda
    function's time, and at most ``statement_deadline``: as a statement on
    a connection, a call still running then is given up
    (``DeadlineExceeded``; for a write, whose outcome is then unknown,
    ``WriteDeadlineExceeded``).

    The retry deadline is not a bound here, as it is not one for a statement
    on a connection: it decides whether another attempt starts. Cutting the
    last attempt at it would turn a paused cluster's certain "nothing ran"
    into an unknown outcome for a write whenever that attempt began just
    before the deadline."""

    def bounded() -> dict:
        limits = [t for t in (cap_left(), settings.statement_deadline) if t is not None]
        if not limits:
            return send()
        try:
            return run_within(max(0.0, min(limits)), send)
        except TimedOut:
            read = not call.in_transaction and is_replayable_read(call.statement)
            # A transaction whose BeginTransaction was given up was never
            # known to the client: nothing can have run in it.
            if read or call.operation in ("BeginTransaction", "RollbackTransaction"):
                kind, end = DeadlineExceeded, "."
            else:
                kind, end = WriteDeadlineExceeded, "; it may or may not have been applied."
            raise settings.errors.of(kind)(
                f"A Data API call ({call.operation}) on database {alias!r} was still "
                f"running at its deadline and was given up{end}"
            ) from None

    return bounded


def _from_the_database(error: BaseException) -> bool:
    """An error PostgreSQL sent, relayed by the Data API (not the service's
    own refusal: paused, throttled, unreachable)."""
    return getattr(driver_error(error), "aws_code", None) == "DatabaseErrorException"


def _rollback_done_if_gone(call: Call) -> Callable[[], dict]:
    """For a cleanup rollback, a transaction already gone (a pause or a scale
    event ended it) is the rollback done, not a failure."""

    def send() -> dict:
        try:
            return call.send()
        except errors.TransactionNotFoundException:
            return {"transactionStatus": "Rollback Complete"}

    return send


def _read_only(alias: str, call: Call, settings: RetrySettings) -> dict:
    """Run a read again in a READ ONLY transaction of its own (four calls:
    begin, ``SET TRANSACTION READ ONLY``, the read, rollback): should it write
    after all (a view or a function behind it), the server refuses instead
    of applying it a second time. Each call is bounded like any other; a
    failure of the transaction calls is judged as a failure of the read."""
    base = {k: v for k, v in call.request.items() if k in ("resourceArn", "secretArn")}
    opening = {k: v for k, v in call.request.items() if k in ("database", "schema")}

    def one(operation: str, request: dict) -> dict:
        part = dataclasses.replace(call, operation=operation, request=request)
        return _bounded(part.send, part, alias, settings)()

    transaction_id = one("BeginTransaction", {**base, **opening})["transactionId"]
    in_transaction = {**base, "transactionId": transaction_id}
    try:
        one(
            "ExecuteStatement",
            {**in_transaction, **opening, "sql": "SET TRANSACTION READ ONLY"},
        )
        response = one("ExecuteStatement", {**call.request, "transactionId": transaction_id})
        # The rows are in the response: rolled back, not committed, so
        # that what READ ONLY lets through (a NOTIFY, a setting changed by
        # a function behind a view) does not happen a second time.
        one("RollbackTransaction", in_transaction)
    except errors.Error as error:
        with contextlib.suppress(Exception):
            one("RollbackTransaction", in_transaction)
        if error.sqlstate == _READ_ONLY_VIOLATION:
            raise settings.errors.of(OutcomeUnknown)(
                f"A statement on database {alias!r} judged a read was replayed after its "
                f"answer was lost, and tried to write: its first run may have been applied."
            ) from error
        raise
    return response


class _Judge:
    def __init__(self, alias: str, call: Call, settings: RetrySettings):
        self.alias = alias
        self.call = call
        self.settings = settings
        #: The call may run again because it is a read: under READ ONLY.
        self.read_replay = False

    def __call__(self, error: BaseException, core_failure: Failure) -> BaseException | None:
        failure = classify(error)
        if not failure.retryable:
            return error  # a conflict reaching a single call: surfaced as it is
        operation = self.call.operation
        gone = isinstance(error, errors.TransactionNotFoundException)
        if operation in ("BeginTransaction", "RollbackTransaction"):
            # A BEGIN that may have run left at most an empty transaction
            # that expires; a ROLLBACK twice is one rollback.
            return error if gone else None
        if operation == "CommitTransaction":
            if failure.not_applied and not gone:
                return None  # refused before it ran: the transaction is still open
            if gone:
                return self._rolled_back(failure)
            return self.settings.errors.of(OutcomeUnknown)(
                f"The answer to CommitTransaction on database {self.alias!r} was lost "
                f"({failure.error_type}); the transaction may or may not have committed."
            )
        if self.call.in_transaction:
            if failure.not_applied and not gone and not _from_the_database(error):
                return None  # the service refused it: run it again in the transaction
            # Gone, or the database ended the transaction's session (57P01
            # relayed): the statement did not run, nor will the transaction.
            return self._rolled_back(failure)
        if failure.not_applied and not (
            _from_the_database(error) and decisions.commits_along_the_way(self.call.statement)
        ):
            # The service refused it, or the database ended it unrun; a
            # 57P01/57P03 proves only that its own transaction did not
            # commit (F2): not what commits along the way or elsewhere.
            return None
        if self.settings.retry_writes:
            return None  # vouched for by the application
        # A batch is many statements: a proof about one says nothing of the rest.
        if not self.call.many and is_replayable_read(self.call.statement):
            self.read_replay = self.call.operation == "ExecuteStatement"
            return None
        return self.settings.errors.of(OutcomeUnknown)(
            f"The answer to a write on database {self.alias!r} was lost "
            f"({failure.error_type}); it may or may not have been applied, and was "
            f"not retried."
        )

    def _rolled_back(self, failure: Failure) -> TransactionRolledBack:
        idle = self.call.idle
        why = (
            f" after {idle:.0f} s without a call (the Data API ends a transaction after "
            f"3 minutes without one)"
            if idle > 180
            else ""
        )
        return self.settings.errors.of(TransactionRolledBack)(
            f"The transaction on database {self.alias!r} was lost ({failure.error_type})"
            f"{why}: it is rolled back, nothing of it was committed. Leave the atomic "
            f"block and run it again (orca_db.retry_atomic does)."
        )
