"""The hooks the plugin installs on one engine (``orca_db.sqlalchemy.plugin``):
every decision is the core's, read from the driver's own state."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolProxiedConnection

from .. import decisions, drivers
from ..classify import SERVER_CLOSED, Failure, classify
from ..conf import RetrySettings
from . import exc
from .exc import as_sqlalchemy, core_error, wrap
from .reconnect import link_of, reconnect, run_read_only

#: The attribute carrying the core's verdict from a hook to handle_error.
_VERDICT = "_orca_db_verdict"


class Host:
    """The hooks of one engine."""

    def __init__(self, engine: Engine, settings: RetrySettings):
        self.settings = settings
        self.dialect = engine.dialect
        #: The name events carry as ``database`` (the Django host's alias).
        self.alias = engine.url.database or "default"
        self.commit: Callable[[Any], None] = lambda dbapi_connection: None

    # ----- connecting ---------------------------------------------------------

    def do_connect(self, dialect: Any, conn_rec: Any, cargs: tuple, cparams: dict) -> Any:
        from ..deadlines import bounded_connect
        from ..retry import Operation, active_operation, remaining_time, run

        host = str(cparams.get("host") or "")
        if host and not host.startswith("/"):
            for key, value in drivers.TCP_DEFAULTS.items():
                cparams.setdefault(key, value)

        def connect_once() -> Any:
            return bounded_connect(
                lambda params: dialect.connect(*cargs, **params),
                cparams,
                remaining_time(),
                drivers.close_broken,
            )

        if active_operation(self.alias) is not None:
            return connect_once()  # a replay's reconnect: it retries
        operation = Operation(self.alias, "connect", self.settings)
        with as_sqlalchemy(None):
            return run(operation, connect_once, _any_connect_failure)

    def checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        link = record.info.get("orca_db_link")
        if link is None or link.connection is not dbapi_connection:
            try:
                link = record.info["orca_db_link"] = drivers.Link(dbapi_connection)
            except Exception:
                return
        if link.transaction_status() == drivers.IDLE and link.server_closed():
            # The pool makes a new connection (through do_connect) instead.
            raise sa_exc.DisconnectionError("orca_db: the server had closed this pooled connection")

    # ----- statements -----------------------------------------------------------

    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        return self._execute(
            cursor, statement, context, False,
            lambda cur: self.dialect.do_execute(cur, statement, parameters, context),
        )  # fmt: skip

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any) -> bool:
        return self._execute(
            cursor, statement, context, False,
            lambda cur: self.dialect.do_execute_no_params(cur, statement, context),
        )  # fmt: skip

    def do_executemany(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        return self._execute(
            cursor, statement, context, True,
            lambda cur: self.dialect.do_executemany(cur, statement, parameters, context),
        )  # fmt: skip

    def _execute(
        self, cursor: Any, statement: str, context: Any, many: bool, run: Callable[[Any], Any]
    ) -> bool:
        dbapi_connection = cursor.connection
        # libpq's view, read before sending (one call into C): with
        # autocommit off the driver opens a transaction for the statement.
        in_transaction = not dbapi_connection.autocommit or drivers.transaction_open(
            drivers.transaction_status(dbapi_connection)
        )
        link = None if in_transaction else link_of(context, dbapi_connection)
        if link is not None and link.server_closed():
            # An autocommit statement about to go out on a connection the
            # server already closed (psycopg2 would then report a bare
            # "server closed the connection", which proves nothing about a
            # write): replaced first, the statement is sent once.
            cursor = self._reconnect_before_send(statement, context)
        try:
            run(cursor)
            return True
        except Exception as error:
            failure = classify(error)
            if not failure.retryable:
                raise
            verdict = decisions.after_statement_failure(
                failure,
                statement,
                many=many,
                in_transaction=in_transaction,
                settings=self.settings,
            )
            named = getattr(cursor, "name", None) is not None
            if verdict in (decisions.Verdict.ROLLED_BACK, decisions.Verdict.UNKNOWN) or named:
                # handle_error turns it into ours once SQLAlchemy has
                # marked the connection invalid. (A server-side cursor is
                # not replayed yet: its read surfaces as it is.)
                if not named:
                    setattr(error, _VERDICT, verdict)
                self._report("execute", statement, failure)
                raise
            self._replay(error, cursor, statement, context, run, verdict)
            return True

    def _replay(
        self,
        first_error: BaseException,
        cursor: Any,
        statement: str,
        context: Any,
        run: Callable[[Any], Any],
        verdict: decisions.Verdict,
    ) -> None:
        """Run an autocommit statement again on a new connection (the
        recipe of SQLAlchemy's FAQ, under the core's judge and deadline)."""
        from ..retry import Operation, recover

        operation = Operation(self.alias, "execute", self.settings, statement=statement)
        stage = "execute"

        def judge(error: BaseException, failure: Failure) -> BaseException | None:
            if stage == "connect":
                return None  # nothing was sent on this attempt
            again = decisions.after_statement_failure(
                failure, statement, many=False, in_transaction=False, settings=self.settings
            )
            if again in (decisions.Verdict.REPLAY, decisions.Verdict.REPLAY_READ_ONLY):
                return None
            return core_error("OutcomeUnknown", self.alias, failure)

        def attempt() -> None:
            nonlocal stage
            stage = "connect"
            try:
                new_cursor = reconnect(context)
            except sa_exc.DBAPIError as error:
                if error.orig is not None and not isinstance(error, exc.ScaleEventError):
                    raise error.orig from None
                raise
            stage = "execute"
            if verdict is decisions.Verdict.REPLAY_READ_ONLY:
                run_read_only(new_cursor.connection, new_cursor, run, self.alias)
            else:
                run(new_cursor)

        with contextlib.suppress(Exception):
            cursor.close()
        with as_sqlalchemy(statement):
            recover(operation, first_error, attempt, judge)

    def _reconnect_before_send(self, statement: str, context: Any) -> Any:
        from ..retry import Operation, report

        operation = Operation(self.alias, "execute", self.settings, statement=statement)
        operation.last_failure = SERVER_CLOSED
        try:
            return reconnect(context)
        except BaseException:
            report(operation, "raised")
            raise

    # ----- COMMIT -----------------------------------------------------------------

    def do_commit(self, dbapi_connection: Any) -> None:
        # Found closed before sending: the COMMIT never left (fact 1 of
        # orca_db.decisions), the transaction is rolled back.
        # SQLAlchemy passes the pool's proxy: asked directly, each attribute
        # the driver connection lacks (the pool's __getattr__) would raise
        # and format an AttributeError; its driver connection answers.
        raw: Any = (
            dbapi_connection.dbapi_connection
            if isinstance(dbapi_connection, PoolProxiedConnection)
            else dbapi_connection
        )
        closed_before = not raw.autocommit and _closed_in_transaction(dbapi_connection, raw)
        try:
            self.commit(dbapi_connection)
        except Exception as error:
            failure = classify(error)
            if closed_before:
                failure = SERVER_CLOSED
            elif not failure.retryable:
                raise
            setattr(error, _VERDICT, decisions.commit_lost(failure))
            self._report("transaction", "COMMIT", failure)
            raise

    # ----- errors -----------------------------------------------------------------

    def handle_error(self, context: Any) -> BaseException | None:
        verdict = getattr(context.original_exception, _VERDICT, None)
        if verdict is None:
            return None
        context.is_disconnect = True  # SQLAlchemy invalidates the connection
        failure = classify(context.original_exception)
        name = (
            "TransactionRolledBack"
            if verdict is decisions.Verdict.ROLLED_BACK
            else "OutcomeUnknown"
        )
        core = core_error(name, self.alias, failure)
        core.__cause__ = context.original_exception
        return wrap(core, context.statement)

    def _report(self, phase: str, statement: str, failure: Failure) -> None:
        from ..retry import Operation, report

        operation = Operation(self.alias, phase, self.settings, statement=statement)
        operation.last_failure = failure
        report(operation, "raised")


def _any_connect_failure(error: BaseException, failure: Failure) -> None:
    return None  # a failed connect applied nothing: every retryable one is safe


def _closed_in_transaction(dbapi_connection: Any, raw: Any) -> bool:
    """A transaction is open on ``raw`` and the server has closed it; asked
    on the Link the pool record keeps (made at checkout), not a new one per
    COMMIT."""
    try:
        if raw is dbapi_connection:
            link = drivers.Link(raw)
        else:
            info = dbapi_connection.info
            link = info.get("orca_db_link")
            if link is None or link.connection is not raw:
                link = info["orca_db_link"] = drivers.Link(raw)
        return drivers.transaction_open(link.transaction_status()) and link.server_closed()
    except Exception:
        return False
