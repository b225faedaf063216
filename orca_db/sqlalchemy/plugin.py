"""The SQLAlchemy engine plugin: ``create_engine(url, plugins=["orca_db"])``.

Registered under the ``sqlalchemy.plugins`` entry point as ``orca_db``, so
``?plugin=orca_db`` in the URL works too. It takes ``aurora={...}``, the keys
of Django's ``OPTIONS["aurora"]``, validated by the same parser
(:func:`orca_db.conf.parse_retry_settings`).

What it installs on the engine, all through SQLAlchemy's public hooks:

- ``do_connect``: every connect is retried through pauses, scale points and
  resume storms within ``deadline`` (one ``orca_db.retry`` operation, the
  same JSON events as the Django host), each attempt bounded by what is
  left of it;
- pool ``checkout``: a pooled connection the server has already closed
  (a scale event while it sat in the pool) is replaced before it is handed
  out: nothing was sent on it, nothing is lost;
- ``do_execute`` / ``do_execute_no_params`` / ``do_executemany`` and the
  dialect's ``do_commit``: a lost connection is judged by the core
  (:func:`orca_db.decisions.after_statement_failure`, ``commit_lost``) on
  the driver's own transaction status; an autocommit read is replayed in a
  ``READ ONLY`` transaction, anything else becomes ``TransactionRolledBack``
  or ``OutcomeUnknown`` (``handle_error``), never a silent replay.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CreateEnginePlugin, Engine
from sqlalchemy.engine.url import URL

from .. import decisions, drivers
from ..classify import SERVER_CLOSED, Failure, classify
from ..conf import RetrySettings
from . import exc

#: The drivers the plugin knows how to read (transaction status, socket).
SUPPORTED_DRIVERS = ("psycopg2", "psycopg")
#: Keys Django's OPTIONS["aurora"] accepts that this host does not honour
#: yet: refused, never silently ignored.
NOT_YET = ("statement_deadline", "secret", "iam_auth", "region", "cluster", "cluster_arn")
#: TCP keepalives and a send timeout, as the Django host sets them: a dead
#: peer is found in about 30 s instead of the kernel's 15 minutes.
TCP_DEFAULTS = {
    "keepalives": 1,
    "keepalives_idle": 15,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20000,
}
#: SQLSTATE read_only_sql_transaction: a replayed "read" tried to write.
_READ_ONLY_VIOLATION = "25006"
#: The attribute carrying the core's verdict from a hook to handle_error.
_VERDICT = "_orca_db_verdict"
_SETTINGS = "orca_db_settings"


def parse_settings(value: Any) -> RetrySettings:
    """``aurora={...}`` checked as Django's ``OPTIONS["aurora"]`` is, with
    the same messages (naming ``aurora`` instead of ``OPTIONS['aurora']``);
    raised as ``sqlalchemy.exc.ArgumentError``, what SQLAlchemy raises for a
    bad ``create_engine`` argument."""
    from django.core.exceptions import ImproperlyConfigured

    from ..conf import parse_retry_settings

    try:
        settings = parse_retry_settings(value)
    except ImproperlyConfigured as error:
        message = str(error).replace("OPTIONS['aurora']", "aurora")
        raise sa_exc.ArgumentError(message) from error
    given = sorted(key for key in NOT_YET if (value or {}).get(key) is not None)
    if given:
        raise sa_exc.ArgumentError(
            f"aurora[{given[0]!r}] is not supported by the SQLAlchemy plugin yet "
            f"(docs/sqlalchemy.md); remove it, or use the Django backend."
        )
    return settings


class OrcaPlugin(CreateEnginePlugin):
    """``create_engine(url, plugins=["orca_db"], aurora={...})``."""

    def __init__(self, url: URL, kwargs: dict[str, Any]):
        super().__init__(url, kwargs)
        self.settings = parse_settings(kwargs.pop("aurora", None))
        driver = url.get_driver_name()
        if url.get_backend_name() != "postgresql" or driver not in SUPPORTED_DRIVERS:
            raise sa_exc.ArgumentError(
                f"The orca_db plugin works with postgresql+psycopg2 and postgresql+psycopg "
                f"(synchronous engines), not {url.drivername!r} (docs/sqlalchemy.md)."
            )

    def update_url(self, url: URL) -> URL:
        return url

    def engine_created(self, engine: Engine) -> None:
        install(engine, self.settings)


def settings_of(engine: Engine) -> RetrySettings | None:
    """The retry settings the plugin installed on ``engine``, or ``None``."""
    return engine.dialect.__dict__.get(_SETTINGS)


def install(engine: Engine, settings: RetrySettings) -> None:
    dialect = engine.dialect
    dialect.__dict__[_SETTINGS] = settings
    if not settings.enabled:
        return
    host = _Host(engine, settings)
    event.listen(engine, "do_connect", host.do_connect)
    event.listen(engine.pool, "checkout", host.checkout)
    event.listen(engine, "do_execute", host.do_execute)
    event.listen(engine, "do_execute_no_params", host.do_execute_no_params)
    event.listen(engine, "do_executemany", host.do_executemany)
    event.listen(engine, "handle_error", host.handle_error)
    # No event reports a COMMIT: the engine's own dialect instance gets a
    # do_commit that judges a lost one (it calls the dialect's method).
    dialect.do_commit = host.do_commit  # type: ignore[method-assign]
    host.commit = type(dialect).do_commit.__get__(dialect)


class _Host:
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
            for key, value in TCP_DEFAULTS.items():
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
        with _as_sqlalchemy(None):
            return run(operation, connect_once, _any_connect_failure)

    def checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        link = record.info.get("orca_db_link")
        if link is None or link.connection is not dbapi_connection:
            try:
                link = record.info["orca_db_link"] = drivers.Link(dbapi_connection)
            except Exception:
                return
        if drivers.transaction_status(dbapi_connection) == drivers.IDLE and link.server_closed():
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
        link = None if in_transaction else _link(context, dbapi_connection)
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
                named_cursor=getattr(cursor, "name", None) is not None,
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
                failure, statement, many=False, in_transaction=False,
                named_cursor=False, settings=self.settings,
            )  # fmt: skip
            if again in (decisions.Verdict.REPLAY, decisions.Verdict.REPLAY_READ_ONLY):
                return None
            return _core("OutcomeUnknown", self.alias, failure)

        def attempt() -> None:
            nonlocal stage
            stage = "connect"
            try:
                new_cursor = _reconnect(context)
            except sa_exc.DBAPIError as error:
                if error.orig is not None and not isinstance(error, exc.ScaleEventError):
                    raise error.orig from None
                raise
            stage = "execute"
            if verdict is decisions.Verdict.REPLAY_READ_ONLY:
                _read_only(new_cursor.connection, new_cursor, run, self.alias)
            else:
                run(new_cursor)

        with contextlib.suppress(Exception):
            cursor.close()
        with _as_sqlalchemy(statement):
            recover(operation, first_error, attempt, judge)

    def _reconnect_before_send(self, statement: str, context: Any) -> Any:
        from ..retry import Operation, report

        operation = Operation(self.alias, "execute", self.settings, statement=statement)
        operation.last_failure = SERVER_CLOSED
        try:
            return _reconnect(context)
        except BaseException:
            report(operation, "raised")
            raise

    # ----- COMMIT -----------------------------------------------------------------

    def do_commit(self, dbapi_connection: Any) -> None:
        # Found closed before sending: the COMMIT never left (fact 1 of
        # orca_db.decisions), the transaction is rolled back.
        closed_before = (
            not dbapi_connection.autocommit
            and drivers.transaction_open(drivers.transaction_status(dbapi_connection))
            and _server_closed(dbapi_connection)
        )
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
        core = _core(name, self.alias, failure)
        core.__cause__ = context.original_exception
        return _wrap(core, context.statement)

    def _report(self, phase: str, statement: str, failure: Failure) -> None:
        from ..retry import Operation, report

        operation = Operation(self.alias, phase, self.settings, statement=statement)
        operation.last_failure = failure
        report(operation, "raised")


def _link(context: Any, dbapi_connection: Any) -> drivers.Link | None:
    """The connection's Link, kept in its pool record's ``info``; ``None``
    for the connection SQLAlchemy's first connect inspects the server with
    (it has no ``info``, and was made a moment ago)."""
    try:
        info = context.root_connection.connection.info
    except NotImplementedError:
        return None
    link = info.get("orca_db_link")
    if link is None or link.connection is not dbapi_connection:
        link = info["orca_db_link"] = drivers.Link(dbapi_connection)
    return link


def _reconnect(context: Any) -> Any:
    """Give the statement's Connection a new driver connection, in
    autocommit as the lost one was, and the context a cursor on it: the
    recipe of SQLAlchemy's FAQ ("How do I retry a statement execution
    automatically?")."""
    connection = context.root_connection
    if not connection.invalidated:
        connection.invalidate()
    # SQLAlchemy reconnects only once its (autocommit, nominal)
    # transaction is ended.
    connection.rollback()
    fairy = connection.connection
    connection.dialect.set_connection_execution_options(
        connection, {"isolation_level": "AUTOCOMMIT"}
    )
    context.cursor = fairy.cursor()
    return context.cursor


def _any_connect_failure(error: BaseException, failure: Failure) -> None:
    return None  # a failed connect applied nothing: every retryable one is safe


def _server_closed(dbapi_connection: Any) -> bool:
    try:
        return drivers.Link(dbapi_connection).server_closed()
    except Exception:
        return False


def _read_only(dbapi_connection: Any, cursor: Any, run: Callable[[Any], Any], alias: str) -> None:
    """Run a replayed read in a READ ONLY transaction: should it write after
    all, the server refuses instead of applying it a second time."""
    with contextlib.closing(dbapi_connection.cursor()) as control:
        control.execute("BEGIN READ ONLY")
    try:
        run(cursor)
    except Exception as error:
        with contextlib.suppress(Exception), contextlib.closing(dbapi_connection.cursor()) as c:
            c.execute("ROLLBACK")
        if drivers.sqlstate(error) == _READ_ONLY_VIOLATION:
            from .. import exceptions

            raise exceptions.OutcomeUnknown(
                f"A statement on database {alias!r} judged a read was replayed after its "
                f"reply was lost, and tried to write: its first run may have been applied."
            ) from error
        raise
    with contextlib.closing(dbapi_connection.cursor()) as control:
        control.execute("COMMIT")


_MESSAGES = {
    "TransactionRolledBack": (
        "The connection to database {alias!r} was lost inside a transaction ({error}): "
        "the server rolled the whole transaction back. Run it again as a whole."
    ),
    "OutcomeUnknown": (
        "The connection to database {alias!r} was lost while a write or COMMIT was in "
        "flight ({error}); it may or may not have been applied, and was not retried."
    ),
}


def _core(name: str, alias: str, failure: Failure) -> BaseException:
    from .. import exceptions

    cls = getattr(exceptions, name)
    return cls(_MESSAGES[name].format(alias=alias, error=failure.error_type))


def _wrap(core: BaseException, statement: str | None) -> exc.ScaleEventError:
    """The SQLAlchemy error of ``core``'s name (``core`` is its ``.orig``)."""
    for cls in type(core).__mro__:
        ours = getattr(exc, cls.__name__, None)
        if isinstance(ours, type) and issubclass(ours, exc.ScaleEventError):
            return ours(statement, core, connection_invalidated=True)
    return exc.ScaleEventError(statement, core, connection_invalidated=True)


@contextlib.contextmanager
def _as_sqlalchemy(statement: str | None):
    """Raise the core's errors (``orca_db.exceptions``) as ours."""
    from .. import exceptions

    try:
        yield
    except exceptions.ScaleEventError as core:
        raise _wrap(core, statement) from core.__cause__
