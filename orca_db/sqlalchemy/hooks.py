"""The hooks the plugin installs on one engine (``orca_db.sqlalchemy.plugin``):
every decision is the core's, read from the driver's own state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from .. import deadlines, decisions, drivers
from ..classify import SERVER_CLOSED, classify
from ..options import RetrySettings
from ..sql.lexical import PROFILES, profile
from . import sessions, watching
from .connecting import ConnectHooks, credentials_for
from .ending import EndingHooks, lose
from .exc import core_error, wrap
from .reconnect import link_of
from .replaying import EXECUTE, MANY, NO_PARAMS, ReplayHooks

#: libpq's transaction statuses with a transaction open
#: (:func:`orca_db.drivers.transaction_open`).
_OPEN = (drivers.ACTIVE, drivers.INTRANS, drivers.INERROR)
#: Where a Connection keeps its driver connection's Link.
_LINK = "orca_db_link"


class _NoLink:
    """A Connection's answer before it holds a Link: no driver connection is
    its ``connection`` (one test on the hot path instead of two)."""

    __slots__ = ()
    connection = None


_NO_LINK = _NoLink()


class Host(ConnectHooks, EndingHooks, ReplayHooks):
    """The hooks of one engine (connecting: ``connecting``; COMMIT,
    ROLLBACK and errors: ``ending``; a replay: ``replaying``)."""

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
        #: Neither a session followed on this engine nor a statement
        #: deadline: a statement takes the short path (a Lambda cap, read
        #: from the core for each statement, may still arm a watch).
        self.plain = not self.statement_deadline
        #: Logins from AWS (``secret``, ``iam_auth``), fresh per connection.
        self.credentials = credentials_for(settings, engine.url)

    # ----- statements -----------------------------------------------------------
    #
    # Installed as methods of the engine's own dialect instance (as do_commit
    # is), not as do_execute events: SQLAlchemy calls the dialect's method
    # when no listener handled the statement, so the plugin costs one call
    # per statement instead of the event dispatch plus a closure.

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any = None) -> None:
        self._statement(cursor, statement, None, context, NO_PARAMS)

    def do_executemany(
        self, cursor: Any, statement: str, parameters: Any, context: Any = None
    ) -> None:
        self._statement(cursor, statement, parameters, context, MANY)

    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        # The common cases, in as few steps as they take: no session
        # followed on this engine, no deadline, and either autocommit off
        # (the driver opens a transaction for the statement: a lost one is
        # never replayed) or autocommit on a connection whose Link this
        # Connection already holds.
        if self.plain and not deadlines.open_caps:
            dbapi_connection = cursor.connection
            try:
                found = PROFILES[statement]
            except (KeyError, TypeError):
                found = profile(statement)
            if not dbapi_connection.autocommit:
                in_transaction = True
            else:
                link = context.root_connection.__dict__.get(_LINK, _NO_LINK)
                if link.connection is not dbapi_connection:  # none yet, or another's
                    self._statement(cursor, statement, parameters, context, EXECUTE)
                    return
                # Asked before sending whatever could write: was the
                # connection closed while idle? (Then it is replaced and the
                # statement sent once.) A read is not asked: lost, it is
                # replayed READ ONLY, as if asked; one poll() is worth
                # ~1,000 instructions.
                if found.may_write and link.poll(0):
                    self._statement(cursor, statement, parameters, context, EXECUTE)
                    return
                in_transaction = link.transaction_status() in _OPEN
            try:
                self.execute(cursor, statement, parameters, context)
            except Exception as error:
                self._failed(error, cursor, statement, parameters, context, EXECUTE, in_transaction)
            if found.observed:
                self._observe(found, statement, parameters, context, in_transaction, EXECUTE)
            return
        self._statement(cursor, statement, parameters, context, EXECUTE)

    def _statement(
        self, cursor: Any, statement: str, parameters: Any, context: Any, kind: int
    ) -> None:
        """A statement, every case: a session followed, a deadline armed,
        autocommit (a read may be replayed, a closed connection replaced)."""
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
                self._report("execute", statement, classify(error))
                lose(root, cut, error, statement)
            self._failed(error, cursor, statement, parameters, context, kind, in_transaction)
        else:
            if watch is not None:
                watching.ended(watch)  # cut after the answer: the next call finds it closed
        try:
            found = PROFILES[statement]
        except (KeyError, TypeError):
            found = profile(statement)
        if found.observed:
            self._observe(found, statement, parameters, context, in_transaction, kind)

    def _failed(
        self,
        error: Exception,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        kind: int,
        in_transaction: bool,
    ) -> None:
        """``error`` ended the statement (called while it is handled):
        raised as it is, raised as ours with the connection lost, or the
        statement replayed (then it returns)."""
        failure = classify(error)
        if not failure.retryable:
            raise error
        verdict = decisions.after_statement_failure(
            failure,
            statement,
            many=kind == MANY,
            in_transaction=in_transaction,
            settings=self.settings,
        )
        named = getattr(cursor, "name", None) is not None
        if verdict in (decisions.Verdict.ROLLED_BACK, decisions.Verdict.UNKNOWN) or named:
            self._report("execute", statement, failure)
            if named:
                # A server-side cursor is not replayed yet: its read
                # surfaces as it is (SQLAlchemy's disconnect handling).
                raise error
            name = (
                "TransactionRolledBack"
                if verdict is decisions.Verdict.ROLLED_BACK
                else "OutcomeUnknown"
            )
            lose(context.root_connection, core_error(name, self.alias, failure), error, statement)
        run = self._runner(kind, statement, parameters, context)
        self._replay(error, cursor, statement, context, run, verdict)

    def _observe(
        self,
        found: Any,
        statement: str,
        parameters: Any,
        context: Any,
        in_transaction: bool,
        kind: int,
    ) -> None:
        """A statement that may change the session succeeded."""
        root = context.root_connection
        if found.tracked or sessions.KEY in root.__dict__:
            if not self.sessions_seen:
                self.watch_rollbacks()  # its ROLLBACK ends what it followed
            self.sessions_seen = True
            self.plain = False
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
