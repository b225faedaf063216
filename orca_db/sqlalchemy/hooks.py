"""The hooks the plugin installs on one engine (``orca_db.sqlalchemy.plugin``):
every decision is the core's, read from the driver's own state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from .. import deadlines, decisions, drivers
from ..classify import SERVER_CLOSED, Failure, classify
from ..options import RetrySettings
from ..sql.lexical import PROFILES, profile
from . import sessions, watching
from .ending import RAISE_ATTRIBUTE, EndingHooks
from .exc import as_sqlalchemy, core_error, wrap
from .reconnect import link_of
from .replaying import EXECUTE, MANY, NO_PARAMS, ReplayHooks

#: libpq's transaction statuses with a transaction open
#: (:func:`orca_db.drivers.transaction_open`).
_OPEN = (drivers.ACTIVE, drivers.INTRANS, drivers.INERROR)
#: Where a Connection keeps its driver connection's Link.
_LINK = "orca_db_link"


class Host(EndingHooks, ReplayHooks):
    """The hooks of one engine (COMMIT, ROLLBACK and errors: ``ending``;
    a replay: ``replaying``)."""

    def __init__(self, engine: Engine, settings: RetrySettings):
        self.settings = settings
        self.dialect = engine.dialect
        #: The name events carry as ``database`` (the Django host's alias).
        self.alias = engine.url.database or "default"
        # The dialect's own methods (its class's), which the hooks call.
        dialect = engine.dialect
        self.commit: Callable[[Any], None] = type(dialect).do_commit.__get__(dialect)
        self.rollback: Callable[[Any], None] = type(dialect).do_rollback.__get__(dialect)
        self.execute: Callable[..., None] = type(dialect).do_execute.__get__(dialect)
        self.execute_no_params: Callable[..., None] = type(dialect).do_execute_no_params.__get__(
            dialect
        )
        self.executemany: Callable[..., None] = type(dialect).do_executemany.__get__(dialect)
        self.dbapi_connect: Callable[..., Any] = type(dialect).connect.__get__(dialect)
        #: A statement that may change the session was seen on this engine:
        #: until then COMMIT and ROLLBACK have no session record to end.
        self.sessions_seen = False
        self.statement_deadline = settings.statement_deadline
        #: Logins from AWS (``secret``, ``iam_auth``), fresh per connection.
        self.credentials = credentials_for(settings, engine.url)

    # ----- connecting ---------------------------------------------------------

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        """The dialect's ``connect()``, retried.

        Installed on the engine's dialect instance, not as a ``do_connect``
        listener: SQLAlchemy runs the application's ``do_connect`` listeners
        first (the documented way to hand over a fresh token or password;
        they edit ``cparams``), then this, with what they produced. A
        listener of ours would return the connection before theirs ran."""
        from ..deadlines import bounded_connect
        from ..retry import Operation, active_operation, remaining_time, run

        host = str(cparams.get("host") or "")
        if host and not host.startswith("/"):
            for key, value in drivers.TCP_DEFAULTS.items():
                cparams.setdefault(key, value)

        credentials = self.credentials
        dbapi_connect = self.dbapi_connect

        def connect(params: dict) -> Any:
            if credentials is None:
                return dbapi_connect(*cargs, **params)
            # A login refused after a rotation is refreshed and tried once more.
            return credentials.connect(
                params, lambda fresh: dbapi_connect(*cargs, **fresh), self.alias
            )

        def connect_once() -> Any:
            # Read for each attempt: a new IAM token, the secret as cached.
            params = cparams if credentials is None else credentials.apply(cparams)
            return bounded_connect(connect, params, remaining_time(), drivers.close_broken)

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
        # poll() first: a socket with nothing to read (the common case) is
        # open, and server_closed() would answer False at its first step.
        if link.poll(0) and link.transaction_status() == drivers.IDLE and link.server_closed():
            # The pool makes a new connection (through connect()) instead.
            raise sa_exc.DisconnectionError("orca_db: the server had closed this pooled connection")

    # ----- statements -----------------------------------------------------------
    #
    # Installed as methods of the engine's own dialect instance (as do_commit
    # is), not as do_execute events: SQLAlchemy calls the dialect's method
    # when no listener handled the statement, so the plugin costs one call
    # per statement instead of the event dispatch plus a closure.

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any = None) -> None:
        self.do_execute(cursor, statement, None, context, NO_PARAMS)

    def do_executemany(
        self, cursor: Any, statement: str, parameters: Any, context: Any = None
    ) -> None:
        self.do_execute(cursor, statement, parameters, context, MANY)

    def do_execute(
        self,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any = None,
        kind: int = EXECUTE,
    ) -> None:
        dbapi_connection = cursor.connection
        root = context.root_connection
        tracked = root.__dict__.get(sessions.KEY)
        if tracked is not None and (
            tracked.on is not dbapi_connection or tracked.refusal is not None
        ):
            # A driver connection that replaced the session's lost one
            # (SQLAlchemy reconnected after rollback()): rule 1 first.
            self._resume(root, tracked, dbapi_connection, statement)
        # libpq's view, read before sending (one call into C): with
        # autocommit off the driver opens a transaction for the statement.
        in_transaction = True
        if dbapi_connection.autocommit:
            # The Link is kept on the Connection too: a Connection held in
            # AUTOCOMMIT finds it with one lookup.
            link = root.__dict__.get(_LINK)
            if link is None or link.connection is not dbapi_connection:
                link = link_of(context, dbapi_connection)
                if link is not None:
                    root.__dict__[_LINK] = link
            if link is None:
                status = drivers.transaction_status(dbapi_connection)
            else:
                status = link.transaction_status()
            in_transaction = status in _OPEN
            if not in_transaction and link is not None and link.poll(0) and link.server_closed():
                # An autocommit statement about to go out on a connection the
                # server already closed (psycopg2 would then report a bare
                # "server closed the connection", which proves nothing about a
                # write): replaced first, the statement is sent once.
                cursor = self._reconnect_before_send(statement, context)
        watch = None
        if deadlines.open_caps or self.statement_deadline:  # else nothing is armed
            watch = watching.watch(cursor.connection, self.statement_deadline)
        try:
            if kind == EXECUTE:
                self.execute(cursor, statement, parameters, context)
            elif kind == NO_PARAMS:
                self.execute_no_params(cursor, statement, context)
            else:
                self.executemany(cursor, statement, parameters, context)
        except Exception as error:
            if watch is not None and watching.ended(watch):
                cut = watching.statement_cut_off(self.alias, statement, in_transaction)
                setattr(error, RAISE_ATTRIBUTE, cut)
                self._report("execute", statement, classify(error))
                raise
            failure = classify(error)
            if not failure.retryable:
                raise
            many = kind == MANY
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
                    name = (
                        "TransactionRolledBack"
                        if verdict is decisions.Verdict.ROLLED_BACK
                        else "OutcomeUnknown"
                    )
                    setattr(error, RAISE_ATTRIBUTE, core_error(name, self.alias, failure))
                self._report("execute", statement, failure)
                raise
            run = self._runner(kind, statement, parameters, context)
            self._replay(error, cursor, statement, context, run, verdict)
        else:
            if watch is not None:
                watching.ended(watch)  # cut after the answer: the next call finds it closed
        try:
            found = PROFILES[statement]
        except (KeyError, TypeError):
            found = profile(statement)
        if found.observed and (found.tracked or sessions.KEY in root.__dict__):
            self.sessions_seen = True
            now = context.cursor
            sessions.observe(
                root,
                now.connection,
                now,
                statement,
                parameters,
                found,
                in_transaction,
                kind == MANY,
            )

    def _resume(self, root: Any, tracked: Any, dbapi_connection: Any, statement: str) -> None:
        from ..retry import Operation, report

        try:
            sessions.resume(root, tracked, dbapi_connection, self.alias)
        except Exception as error:
            from ..outcomes import SessionStateLost

            if isinstance(error, SessionStateLost):
                operation = Operation(self.alias, "execute", self.settings, statement=statement)
                operation.last_failure = SERVER_CLOSED
                report(operation, "raised")
                raise wrap(error, statement) from error.__cause__
            raise


def credentials_for(settings: RetrySettings, url: Any) -> Any:
    """The core's :class:`orca_db.aws.credentials.Credentials` for an
    engine whose ``aurora`` names a ``secret`` or ``iam_auth`` (``None``
    otherwise); the URL's host, port and database win over the secret's."""
    aws = settings.aws
    if aws is None or not aws.credentials:
        return None
    from ..aws.credentials import Credentials

    given = {"host": url.host, "port": url.port, "dbname": url.database}
    return Credentials(aws, frozenset(key for key, value in given.items() if value))


def _any_connect_failure(error: BaseException, failure: Failure) -> None:
    return None  # a failed connect applied nothing: every retryable one is safe
