"""The PostgreSQL side of the local Data API endpoint: sessions, Data API
transactions, and the per-call limits.

A transaction owns one server session from ``BeginTransaction`` to its end;
a statement outside one borrows an idle session and gives it back after
``DISCARD ALL``, so no session state (``SET``, temporary tables, advisory
locks) survives from one call to the next: code that relies on it fails
here as it would on the real Data API, which runs each call on whichever
pooled session it picks.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from . import pg
from .errors import ApiError, database_error
from .pool import SessionPool


@dataclasses.dataclass
class Limits:
    """The Data API's limits; shorten them in tests."""

    #: Bytes of one response (the Data API: 1 MiB).
    response_bytes: int = 1 << 20
    #: Seconds one call may run (the Data API: 45).
    call_seconds: float = 45.0
    #: Seconds a transaction lives without a call (the Data API: 180).
    transaction_idle_seconds: float = 180.0
    #: Bytes of one request (the Data API: 4 MiB).
    request_bytes: int = 4 << 20


@dataclasses.dataclass
class Transaction:
    id: str
    session: pg.Session
    database: str
    last_call: float = dataclasses.field(default_factory=time.monotonic)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class Backend:
    def __init__(
        self,
        server: dict[str, Any],
        limits: Limits,
        count: Callable[[str], None],
    ):
        self.limits = limits
        self.count = count
        self.pool = SessionPool(server)
        self._lock = threading.Lock()
        self._transactions: dict[str, Transaction] = {}
        #: Why transactions ended other than by a commit or a rollback
        #: ("ended by a scale event", "expired"), by id, for the log.
        self.ended: dict[str, str] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(64, "data-api-statement")

    # ----- statements ----------------------------------------------------------------

    def execute(
        self,
        database: str,
        statements: list[tuple[str, list | None]],
        transaction_id: str | None,
        continue_after_timeout: bool,
    ) -> tuple:
        """Run one statement (or a batch: the same statement with each set
        of arguments): ``(columns, rows, rowcount, type names by OID)``."""
        sql = statements[0][0]
        if transaction_id is None:
            if _creates_database(sql):
                self.pool.drop_idle()
            session = self.pool.acquire(database)
            return self._limited(session, statements, continue_after_timeout, None)
        transaction = self.transaction(transaction_id)
        if not transaction.lock.acquire(blocking=False):
            raise ApiError(
                "BadRequestException",
                f"Transaction {transaction_id} is running another statement; the Data API "
                f"runs one statement at a time per transaction",
            )
        transaction.last_call = time.monotonic()
        return self._limited(transaction.session, statements, continue_after_timeout, transaction)

    def _limited(self, session, statements, continue_after_timeout, transaction) -> tuple:
        def done(_: Any = None) -> None:
            if transaction is None:
                self.pool.release(session)
            else:
                transaction.last_call = time.monotonic()
                transaction.lock.release()

        future = self._executor.submit(self._run, session, statements)
        try:
            return future.result(timeout=self.limits.call_seconds)
        except concurrent.futures.TimeoutError:
            self.count("timeouts")
            if continue_after_timeout:
                future.add_done_callback(done)
                done = _nothing  # the statement goes on; `done` runs when it ends
            else:
                session.cancel()
                with contextlib.suppress(Exception):
                    future.result(timeout=30)
            raise ApiError(
                "StatementTimeoutException",
                f"The statement ran longer than {self.limits.call_seconds:g} s, the Data "
                f"API's limit per call"
                + (" (it goes on running: continueAfterTimeout)" if continue_after_timeout else ""),
            ) from None
        except pg.driver_errors() as error:
            raise self._driver_error(session, error, commit=False) from None
        finally:
            done()

    def _run(self, session: pg.Session, statements: list[tuple[str, list | None]]) -> tuple:
        if len(statements) == 1:
            columns, rows, rowcount = session.run(*statements[0])
            types = session.type_names([c[1] for c in columns]) if columns else {}
            return columns, rows, rowcount, types
        # A batch applies as a whole or not at all, in its transaction or
        # in one of its own.
        own = not session.in_transaction
        if own:
            session.run("BEGIN", None)
        try:
            for sql, args in statements:
                session.run(sql, args)
        except BaseException:
            if own:
                with contextlib.suppress(Exception):
                    session.run("ROLLBACK", None)
            raise
        if own:
            session.run("COMMIT", None)
        return None, [], -1, {}

    def _driver_error(self, session: pg.Session, error: BaseException, *, commit: bool) -> ApiError:
        if session.pid in self.pool.terminated or session.closed:
            if commit:
                # A COMMIT cut by the session's end may have committed.
                return ApiError("InternalServerErrorException", "")
            return database_error(
                "FATAL: terminating connection due to administrator command", "57P01"
            )
        self.count("sql_errors")
        return database_error(pg.error_message(error), pg.sqlstate(error))

    # ----- transactions --------------------------------------------------------------

    def begin(self, database: str) -> str:
        session = self.pool.acquire(database)
        try:
            session.run("BEGIN", None)
        except pg.driver_errors() as error:
            self.pool.release(session)
            raise self._driver_error(session, error, commit=False) from None
        session.in_transaction = True
        transaction = Transaction(secrets.token_urlsafe(48), session, database)
        with self._lock:
            self._transactions[transaction.id] = transaction
        return transaction.id

    def transaction(self, transaction_id: str) -> Transaction:
        with self._lock:
            transaction = self._transactions.get(transaction_id)
        if transaction is None:
            raise ApiError(
                "TransactionNotFoundException", f"Transaction {transaction_id} is not found"
            )
        return transaction

    def finish(self, transaction_id: str, sql: str) -> None:
        """``COMMIT`` or ``ROLLBACK`` the transaction, and forget it."""
        transaction = self.transaction(transaction_id)
        if not transaction.lock.acquire(blocking=False):
            raise ApiError(
                "BadRequestException",
                f"Transaction {transaction_id} is running a statement; it cannot end now",
            )
        session = transaction.session
        with self._lock:
            self._transactions.pop(transaction_id, None)
        try:
            session.run(sql, None)
        except pg.driver_errors() as error:
            raise self._driver_error(session, error, commit=sql == "COMMIT") from None
        finally:
            session.in_transaction = False
            transaction.lock.release()
            self.pool.release(session)

    def end_transactions(self, reason: str, *, everything: bool = True) -> int:
        """End every open transaction as the server's end would (their
        sessions terminated: rolled back, locks released); with
        ``everything``, the sessions running autocommit statements too."""
        with self._lock:
            transactions = list(self._transactions.values())
            self._transactions.clear()
            for transaction in transactions:
                self.ended[transaction.id] = reason
        victims = [t.session for t in transactions]
        if everything:
            victims += [s for s in self.pool.busy() if s not in victims]
        self.pool.drop_idle()
        self.pool.terminate([s.pid for s in victims])
        for transaction in transactions:
            if not transaction.lock.locked():
                # Else the statement running on it releases it when it fails.
                transaction.session.in_transaction = False
                self.pool.release(transaction.session)
        return len(transactions)

    def expire_idle(self) -> int:
        """Roll back transactions without a call for the idle limit."""
        now = time.monotonic()
        with self._lock:
            expired = [
                t
                for t in self._transactions.values()
                if not t.lock.locked() and now - t.last_call > self.limits.transaction_idle_seconds
            ]
            for transaction in expired:
                self._transactions.pop(transaction.id, None)
                self.ended[transaction.id] = "expired"
        for transaction in expired:
            with contextlib.suppress(Exception):
                transaction.session.run("ROLLBACK", None)
            transaction.session.in_transaction = False
            self.pool.release(transaction.session)
        return len(expired)

    def open_transactions(self) -> int:
        with self._lock:
            return len(self._transactions)

    def close(self) -> None:
        with self._lock:
            transactions = list(self._transactions.values())
            self._transactions.clear()
        for transaction in transactions:
            transaction.session.close()
        self.pool.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _nothing(_: Any = None) -> None:
    pass


def _creates_database(sql: str) -> bool:
    words = sql.lstrip().split(None, 2)[:2]
    return (
        len(words) == 2
        and words[0].upper() in ("CREATE", "DROP")
        and words[1].upper() == "DATABASE"
    )
