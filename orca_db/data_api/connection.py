"""A DB-API 2.0 connection over the RDS Data API.

Nothing is connected: a ``Connection`` holds the cluster, the secret and
the database, and each statement is one HTTPS call. Outside autocommit a
transaction starts with the first statement (``BeginTransaction``, as
psycopg sends ``BEGIN`` with the first statement) and every statement
carries its id; ``commit()``/``rollback()`` end it.

Every call goes through :attr:`Connection.caller`, which by default sends it
once; both hosts install one that retries (:mod:`.retrying`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from . import errors
from .call import Call
from .client import rds_data_client, region_of
from .cursor import Cursor
from .shims import PsycopgShims

#: What ``CommitTransaction`` answers when it committed.
COMMITTED = "Transaction Committed"
#: A transaction the Data API has not seen a call for in this long is gone.
IDLE_LIMIT = 180.0
_ISOLATION_LEVELS = {
    "read uncommitted": "READ UNCOMMITTED",
    "read committed": "READ COMMITTED",
    "repeatable read": "REPEATABLE READ",
    "serializable": "SERIALIZABLE",
}


class Connection(PsycopgShims):
    def __init__(
        self,
        *,
        database: str,
        resource_arn: str,
        secret_arn: str,
        schema: str | None = None,
        isolation_level: Any = None,
        continue_after_timeout: bool = False,
        client: Any = None,
        connect_timeout: float | None = None,
    ):
        self.database = database
        self.resource_arn = resource_arn
        self.secret_arn = secret_arn
        self.schema = schema
        self.continue_after_timeout = continue_after_timeout
        #: As given (a ``psycopg.IsolationLevel``, as Django's backend keeps it).
        self.isolation_level = isolation_level
        self._isolation_sql = _isolation_sql(isolation_level)
        self._client = client
        self._connect_timeout = connect_timeout
        #: Runs one call; replaced by the engine with a retrying one.
        self.caller: Callable[[Call], dict] = Call.send
        #: Runs the rollback of a transaction given up (after it was lost,
        #: or at close); errors are ignored.
        self.cleanup: Callable[[Call], dict] = Call.send
        self.closed = False
        #: The open transaction's id, once its first statement began it.
        self.transaction_id: str | None = None
        #: Why the transaction of this block is gone (raised again by every
        #: statement until rollback()): never begin another one silently in
        #: the middle of a block.
        self.lost: errors.Error | None = None
        #: A transaction of this connection was lost: Django should replace
        #: it (``is_usable()``), ``retry_atomic`` runs its block again.
        self.broken = False
        #: A statement failed in the open transaction: PostgreSQL refuses
        #: every other one until a rollback (to a savepoint).
        self.aborted = False
        self._autocommit = True
        self._last_call = time.monotonic()

    # ----- DB-API ----------------------------------------------------------------

    def cursor(self, *args: Any, **kwargs: Any) -> Cursor:
        self._check_open()
        return Cursor(self)

    @property
    def autocommit(self) -> bool:
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        if value and (self.transaction_id is not None or self.lost is not None):
            raise errors.ProgrammingError(
                "can't change autocommit while a transaction is open: commit or roll back"
            )
        self._autocommit = bool(value)

    def set_isolation_level(self, level: Any) -> None:
        """The isolation level of the transactions begun from now on
        (``None``: the server's default); not while one is open."""
        if self.transaction_id is not None or self.lost is not None:
            raise errors.ProgrammingError(
                "can't change the isolation level while a transaction is open: commit or roll back"
            )
        self._isolation_sql = _isolation_sql(level)
        self.isolation_level = level

    def commit(self) -> None:
        self._check_open()
        if self.lost is not None:
            lost, self.lost = self.lost, None
            raise errors.TransactionNotFoundException(
                f"Cannot commit: the transaction is gone ({lost}); nothing of it was committed."
            ) from lost
        if self.transaction_id is None:
            return  # nothing was sent: nothing to commit
        call = self._call("CommitTransaction", {"transactionId": self.transaction_id})
        try:
            response = self.caller(call)
        except Exception as exc:
            if not errors.nothing_ran(errors.cause_of(exc)):
                # Committed or not, this transaction is finished for us: a
                # rollback now could only race the COMMIT it follows.
                self.transaction_id = None
            raise
        self.transaction_id = None
        self.aborted = False
        status = response.get("transactionStatus")
        if status not in (None, COMMITTED):
            raise errors.OperationalError(f"CommitTransaction answered {status!r}")

    def rollback(self) -> None:
        self._check_open()
        self.lost = None
        self.aborted = False
        transaction_id, self.transaction_id = self.transaction_id, None
        if transaction_id is None:
            return
        try:
            self.caller(self._call("RollbackTransaction", {"transactionId": transaction_id}))
        except errors.TransactionNotFoundException:
            pass  # already rolled back (by a scale event, or its expiry)

    def close(self) -> None:
        if self.closed:
            return
        transaction_id, self.transaction_id = self.transaction_id, None
        if transaction_id is not None:
            self._roll_back_quietly(transaction_id)
        self.lost = None
        self.closed = True

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----- calls -----------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            kwargs = {}
            if self._connect_timeout is not None:
                kwargs["connect_timeout"] = self._connect_timeout
            self._client = rds_data_client(region_of(self.resource_arn), **kwargs)
        return self._client

    def execute(self, sql: str, parameters: list[dict], statement: Any) -> dict:
        """Run one statement; ``statement`` is the SQL as the application
        wrote it (placeholders and all), for judging and reporting."""
        request: dict[str, Any] = {
            "sql": sql,
            "includeResultMetadata": True,
            "resultSetOptions": {"decimalReturnType": "STRING", "longReturnType": "LONG"},
        }
        if parameters:
            request["parameters"] = parameters
        if self.continue_after_timeout:
            request["continueAfterTimeout"] = True
        return self._statement("ExecuteStatement", request, statement, many=False)

    def execute_batch(self, sql: str, parameter_sets: list[list[dict]], statement: Any) -> dict:
        request = {"sql": sql, "parameterSets": parameter_sets}
        return self._statement("BatchExecuteStatement", request, statement, many=True)

    def _statement(self, operation: str, request: dict, statement: Any, many: bool) -> dict:
        self._check_open()
        if self.lost is not None:
            raise errors.TransactionNotFoundException(
                f"The transaction is gone ({self.lost}); roll back and run it again."
            ) from self.lost
        if not self._autocommit:
            self._begin()
            request["transactionId"] = self.transaction_id
        call = self._call(operation, request, statement=statement, many=many)
        try:
            response = self.caller(call)
        except Exception as exc:
            error = errors.cause_of(exc)
            if call.in_transaction and errors.aborts_transaction(error):
                # PostgreSQL ignores everything but a rollback from now on.
                self.aborted = True
            if not call.in_transaction or error is None or not errors.ends_transaction(error):
                raise
            if isinstance(error, errors.TransactionNotFoundException) and call.idle > IDLE_LIMIT:
                expired = errors.TransactionNotFoundException(
                    f"{error} (no call used the transaction for {call.idle:.0f} s: the Data API "
                    f"ends a transaction after {IDLE_LIMIT:.0f} s without one; keep "
                    f"transactions short, or use a connection engine for this work)",
                    aws_code=error.aws_code,
                )
                self._lose(expired)
                if exc is error:
                    raise expired from None
            else:
                self._lose(error)
            raise
        # Only a ROLLBACK (TO SAVEPOINT) succeeds in an aborted transaction.
        self.aborted = False
        return response

    def _begin(self) -> None:
        if self.transaction_id is not None:
            return
        try:
            response = self.caller(self._call("BeginTransaction", {}))
        except Exception as exc:
            error = errors.cause_of(exc)
            if error is not None and errors.ends_transaction(error):
                self.broken = True  # for retry_atomic: run the block again
            raise
        self.transaction_id = response["transactionId"]
        # A new transaction on a transport that works: what was lost before
        # is behind us.
        self.broken = False
        if self._isolation_sql:
            # Must be the first statement of the transaction, as psycopg's
            # BEGIN ISOLATION LEVEL is.
            self.execute(f"SET TRANSACTION ISOLATION LEVEL {self._isolation_sql}", [], None)

    def _lose(self, error: errors.Error) -> None:
        """The transaction cannot go on (its outcome would be unknown, or it
        is gone): roll it back if it may still exist, and remember why."""
        transaction_id, self.transaction_id = self.transaction_id, None
        self.lost = error
        self.broken = True
        if transaction_id is not None and not isinstance(
            error, errors.TransactionNotFoundException
        ):
            self._roll_back_quietly(transaction_id)

    def _roll_back_quietly(self, transaction_id: str) -> None:
        """Roll back a transaction this connection gives up: its locks would
        otherwise stay taken until the Data API ends it, 3 minutes after its
        last call. Through :attr:`cleanup`, which may retry a refusal
        (throttled) but raises nothing."""
        call = self._call("RollbackTransaction", {"transactionId": transaction_id})
        with contextlib.suppress(Exception):
            self.cleanup(call)

    def _call(self, operation: str, request: dict, *, statement: Any = None, many: bool = False):
        now = time.monotonic()
        idle, self._last_call = now - self._last_call, now
        base = {"resourceArn": self.resource_arn, "secretArn": self.secret_arn}
        if operation in ("ExecuteStatement", "BatchExecuteStatement", "BeginTransaction"):
            base["database"] = self.database
            if self.schema:
                base["schema"] = self.schema
        return Call(
            connection=self,
            operation=operation,
            request={**base, **request},
            statement=statement,
            many=many,
            in_transaction="transactionId" in request or operation == "BeginTransaction",
            idle=idle,
        )

    def _check_open(self) -> None:
        if self.closed:
            raise errors.InterfaceError("connection already closed")


def _isolation_sql(level: Any) -> str | None:
    if level is None:
        return None
    name = getattr(level, "name", level)
    text = str(name).replace("_", " ").lower()
    if text not in _ISOLATION_LEVELS:
        raise errors.ProgrammingError(f"unknown isolation level {level!r}")
    return _ISOLATION_LEVELS[text]
