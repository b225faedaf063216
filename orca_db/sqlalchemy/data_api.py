"""The SQLAlchemy dialect over the RDS Data API: ``postgresql+aurora_data_api``.

    engine = create_engine(
        "postgresql+aurora_data_api:///DBNAME",
        aurora={"cluster_arn": CLUSTER_ARN, "secret": SECRET_ARN, "deadline": 60},
    )

SQLAlchemy's PostgreSQL dialect (its SQL, reflection, types) on
:mod:`orca_db.data_api`, orca-db's DB-API driver over the Data API, with
every call made through the transport's retrying caller
(:mod:`orca_db.data_api.retrying`), as the Django Data API engine's are:
the same guarantees, the same ``aurora`` keys checked by the same parser
(:mod:`.data_api_settings`), the core's errors raised as
``orca_db.sqlalchemy``'s (docs/sqlalchemy.md). Its types are in
:mod:`.data_api_types`.

What differs from a connection dialect:

- Parameters are typed in the SQL text (SQLAlchemy's ``render_bind_cast``,
  as for psycopg 3 and pg8000): the Data API sends every string as
  ``varchar``, which PostgreSQL does not assign to ``json``, an enum, ...
- ``json`` values come back as text and are parsed by SQLAlchemy's JSON
  types, as ``jsonb`` values are.
- No server-side cursors: ``stream_results``/``yield_per`` are accepted
  and each result comes back whole (the Data API refuses one over 1 MB,
  by name); one SQL statement per call; no two-phase transactions.
- The isolation level is the driver's, sent with each ``BeginTransaction``;
  there is no session to set it on.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine.interfaces import IsolationLevel

from .. import outcomes
from ..data_api.retrying import RetryingCaller
from .data_api_settings import connect_args, parse_settings
from .data_api_types import COLSPECS, AuroraDataApiTypeCompiler
from .exc import as_sqlalchemy

__all__ = ["AuroraDataApiDialect"]

#: Levels SQLAlchemy names, as the driver takes them.
_LEVELS: tuple[IsolationLevel, ...] = (
    "READ UNCOMMITTED",
    "READ COMMITTED",
    "REPEATABLE READ",
    "SERIALIZABLE",
)


# ----- the dialect ---------------------------------------------------------------------


class AuroraDataApiDialect(PGDialect):
    driver = "aurora_data_api"
    supports_statement_cache = True
    default_paramstyle = "pyformat"
    supports_server_side_cursors = False
    # BatchExecuteStatement does not say how many rows each set changed.
    supports_sane_multi_rowcount = False
    supports_native_json_serialization = False
    supports_native_json_deserialization = False
    type_compiler_cls = AuroraDataApiTypeCompiler

    colspecs = COLSPECS

    def __init__(self, aurora: dict[str, Any] | None = None, **kwargs: Any):
        kwargs.setdefault("paramstyle", self.default_paramstyle)
        super().__init__(**kwargs)
        self.data_api_settings, self.retry_settings = parse_settings(aurora)

    @classmethod
    def load_provisioning(cls) -> None:
        # SQLAlchemy's test provisioning for PostgreSQL (the compliance
        # suite finds it by the dialect's package, which is ours).
        __import__("sqlalchemy.dialects.postgresql.provision")

    @classmethod
    def import_dbapi(cls) -> Any:
        from orca_db import data_api

        return data_api

    # ----- connecting: nothing to connect -----------------------------------------

    def create_connect_args(self, url: Any) -> tuple[list, dict[str, Any]]:
        return [], connect_args(url, self.data_api_settings)

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        connection = self.loaded_dbapi.connect(*cargs, **cparams)
        # The name events carry (the Django engine's alias): the database.
        alias = cparams.get("database") or "postgres"
        settings = self._settings
        connection.caller = RetryingCaller(alias, settings)
        connection.cleanup = RetryingCaller(alias, settings, cleanup=True)
        connection.autocommit = False
        return connection

    def _settings(self) -> Any:
        return self.retry_settings

    def on_connect(self) -> Any:
        return None  # no session to set up: each call may run on another one

    def is_disconnect(self, e: Any, connection: Any, cursor: Any) -> bool:
        # Nothing to reconnect: a lost transaction is the driver's to report.
        return isinstance(e, self.loaded_dbapi.InterfaceError) and "closed" in str(e)

    def do_ping(self, dbapi_connection: Any) -> bool:
        return not dbapi_connection.closed

    # ----- transactions ----------------------------------------------------------------

    def get_isolation_level_values(self, dbapi_connection: Any) -> list[IsolationLevel]:
        return ["AUTOCOMMIT", *_LEVELS]

    def set_isolation_level(self, dbapi_connection: Any, level: str) -> None:
        if level == "AUTOCOMMIT":
            dbapi_connection.autocommit = True
            return
        dbapi_connection.autocommit = False
        # The server's default needs no SET TRANSACTION (a call of its own
        # after each BeginTransaction).
        default = level == self.default_isolation_level
        dbapi_connection.set_isolation_level(None if default else level)

    def get_isolation_level(self, dbapi_connection: Any) -> IsolationLevel:
        if dbapi_connection.autocommit:
            return "AUTOCOMMIT"
        level = dbapi_connection.isolation_level
        if level is None:
            return self.default_isolation_level or "READ COMMITTED"
        return _level(str(getattr(level, "name", level)))

    def get_default_isolation_level(self, dbapi_conn: Any) -> IsolationLevel:
        # Asked once, at the first connect, outside a transaction (a
        # transaction would cost a BeginTransaction and a rollback).
        if dbapi_conn.transaction_id is not None or dbapi_conn.autocommit:
            return self._show_isolation(dbapi_conn)
        dbapi_conn.autocommit = True
        try:
            return self._show_isolation(dbapi_conn)
        finally:
            dbapi_conn.autocommit = False

    def _show_isolation(self, dbapi_conn: Any) -> IsolationLevel:
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SHOW default_transaction_isolation")
            return _level(str(cursor.fetchone()[0]))

    def set_readonly(self, connection: Any, value: bool) -> None:
        raise NotImplementedError(
            "postgresql_readonly needs a session; over the Data API run "
            "SET TRANSACTION READ ONLY as the transaction's first statement"
        )

    def set_deferrable(self, connection: Any, value: bool) -> None:
        raise NotImplementedError("postgresql_deferrable needs a session (Data API)")

    def do_begin_twophase(self, connection: Any, xid: Any) -> None:
        raise NotImplementedError("the RDS Data API has no two-phase transactions")

    def do_commit(self, dbapi_connection: Any) -> None:
        with as_sqlalchemy("COMMIT"):
            dbapi_connection.commit()

    def do_rollback(self, dbapi_connection: Any) -> None:
        with as_sqlalchemy("ROLLBACK"):
            dbapi_connection.rollback()

    # ----- statements ------------------------------------------------------------------

    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any = None):
        _read_as_sqlalchemy(cursor)
        with as_sqlalchemy(statement):
            _still_there(cursor.connection)
            cursor.execute(statement, parameters)

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any = None):
        _read_as_sqlalchemy(cursor)
        with as_sqlalchemy(statement):
            _still_there(cursor.connection)
            cursor.execute(statement)

    def do_executemany(self, cursor: Any, statement: str, parameters: Any, context: Any = None):
        with as_sqlalchemy(statement):
            _still_there(cursor.connection)
            cursor.executemany(statement, parameters)


def _read_as_sqlalchemy(cursor: Any) -> None:
    """Values as SQLAlchemy's types take them: ``json`` as text (its JSON
    types parse it, as for ``jsonb``), ranges as its ``Range``."""
    cursor.json_text = True
    cursor.range_factory = _range


def _range(type_name: str, lower: Any, upper: Any, bounds: str, empty: bool) -> Any:
    from sqlalchemy.dialects.postgresql import Range

    return Range(lower, upper, bounds=bounds, empty=empty)  # type: ignore[arg-type]


def _still_there(connection: Any) -> None:
    """Code that caught ``TransactionRolledBack`` inside its transaction and
    carried on: the transaction is gone, say so again (the Django engine's
    ``create_cursor`` does the same), until the rollback that ends it."""
    if connection.lost is not None:
        lost = connection.lost
        raise outcomes.TransactionRolledBack(
            f"The transaction was lost ({lost.aws_code or type(lost).__name__}): it is "
            f"rolled back, nothing of it was committed. Roll back and run it again."
        ) from lost


def _level(name: str) -> IsolationLevel:
    level = name.replace("_", " ").upper()
    if level not in _LEVELS:
        raise sa_exc.ArgumentError(f"unknown isolation level {name!r}")
    return cast(IsolationLevel, level)


dialect = AuroraDataApiDialect
