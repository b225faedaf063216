"""The SQLAlchemy dialect over the RDS Data API: ``postgresql+aurora_data_api``.

    engine = create_engine(
        "postgresql+aurora_data_api:///DBNAME",
        aurora={"cluster_arn": CLUSTER_ARN, "secret": SECRET_ARN, "deadline": 60},
    )

SQLAlchemy's PostgreSQL dialect (its SQL, reflection, types) on
:mod:`orca_db.data_api`, orca-db's DB-API driver over the Data API, with
every call made through the Django Data API engine's retrying caller
(:mod:`orca_db.backends.aurora_data_api.retrying`): the same guarantees,
the same ``aurora`` keys checked by the same parser (docs/sqlalchemy.md).

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

import decimal
from typing import Any, cast

from sqlalchemy import exc as sa_exc
from sqlalchemy import util
from sqlalchemy.dialects.postgresql import ENUM, INTERVAL, JSON, JSONB
from sqlalchemy.dialects.postgresql.array import ARRAY as PGARRAY
from sqlalchemy.dialects.postgresql.base import (
    _DECIMAL_TYPES,
    _FLOAT_TYPES,
    _INT_TYPES,
    PGDialect,
    PGTypeCompiler,
)
from sqlalchemy.dialects.postgresql.json import JSONPathType
from sqlalchemy.dialects.postgresql.pg_catalog import INT2VECTOR, OIDVECTOR, _SpaceVector
from sqlalchemy.engine import processors
from sqlalchemy.engine.interfaces import IsolationLevel
from sqlalchemy.sql import sqltypes

from .exc import as_sqlalchemy

__all__ = ["AuroraDataApiDialect"]

#: Levels SQLAlchemy names, as the driver takes them.
_LEVELS: tuple[IsolationLevel, ...] = (
    "READ UNCOMMITTED",
    "READ COMMITTED",
    "REPEATABLE READ",
    "SERIALIZABLE",
)


# ----- types: each parameter cast in the SQL text ------------------------------------


class _String(sqltypes.String):
    render_bind_cast = True


class _NumericCommon:
    """Numeric and Float results (a mixin: SQLAlchemy 2.1's NumericCommon
    does not exist in 2.0)."""

    render_bind_cast = True
    asdecimal: bool
    _effective_decimal_return_scale: Any

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        # The driver gives Decimal for numeric, int for integers, float
        # for float4/8 (type_code is the OID, as with psycopg).
        if self.asdecimal:
            if coltype in _FLOAT_TYPES:
                return processors.to_decimal_processor_factory(
                    decimal.Decimal, self._effective_decimal_return_scale
                )
            return None
        if coltype in _DECIMAL_TYPES or coltype in _INT_TYPES:
            return processors.to_float
        return None


class _Numeric(_NumericCommon, sqltypes.Numeric):
    pass


class _Float(_NumericCommon, sqltypes.Float):
    pass


class _JSON(JSON):
    render_bind_cast = True


class _JSONB(JSONB):
    render_bind_cast = True


class _JSONIntIndexType(sqltypes.JSON.JSONIntIndexType):
    __visit_name__ = "json_int_index"
    render_bind_cast = True


class _JSONStrIndexType(sqltypes.JSON.JSONStrIndexType):
    __visit_name__ = "json_str_index"
    render_bind_cast = True


class _JSONPathType(JSONPathType):
    # ``#>`` and ``#>>`` take a text[]: the path's text is cast to it.
    render_bind_cast = True


class AuroraDataApiTypeCompiler(PGTypeCompiler):
    def visit_json_path(self, type_: Any, **kw: Any) -> str:
        return "TEXT[]"


class _Enum(ENUM):
    render_bind_cast = True


class _Interval(INTERVAL):
    render_bind_cast = True

    @classmethod
    def adapt_emulated_to_native(cls, interval: Any, **kw: Any) -> Any:  # type: ignore[override]
        # (SQLAlchemy's own INTERVAL differs from its supertype here.)
        return _Interval(precision=interval.second_precision)


class _TimeStamp(sqltypes.DateTime):
    render_bind_cast = True


class _Date(sqltypes.Date):
    render_bind_cast = True


class _Time(sqltypes.Time):
    render_bind_cast = True


class _Integer(sqltypes.Integer):
    render_bind_cast = True


class _SmallInteger(sqltypes.SmallInteger):
    render_bind_cast = True


class _BigInteger(sqltypes.BigInteger):
    render_bind_cast = True


class _Boolean(sqltypes.Boolean):
    render_bind_cast = True


class _Array(PGARRAY):
    render_bind_cast = True


class _Int2Vector(_SpaceVector, INT2VECTOR):
    """The Data API sends an ``int2vector`` as its text (``"0 1"``)."""


class _OidVector(_SpaceVector, OIDVECTOR):
    pass


# ----- the dialect ---------------------------------------------------------------------


class _Host:
    """What the Django engine's retrying caller reads from its wrapper: the
    name events carry (``alias``) and the ``aurora`` settings."""

    def __init__(self, alias: str, aurora: dict[str, Any]):
        self.alias = alias
        self.settings_dict = {"OPTIONS": {"aurora": aurora}}


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

    colspecs = util.update_copy(
        PGDialect.colspecs,
        {
            sqltypes.String: _String,
            sqltypes.Numeric: _Numeric,
            sqltypes.Float: _Float,
            sqltypes.JSON: _JSON,
            JSON: _JSON,
            JSONB: _JSONB,
            sqltypes.JSON.JSONPathType: _JSONPathType,
            sqltypes.JSON.JSONIntIndexType: _JSONIntIndexType,
            sqltypes.JSON.JSONStrIndexType: _JSONStrIndexType,
            sqltypes.Interval: _Interval,
            INTERVAL: _Interval,
            sqltypes.DateTime: _TimeStamp,
            sqltypes.Date: _Date,
            sqltypes.Time: _Time,
            sqltypes.Integer: _Integer,
            sqltypes.SmallInteger: _SmallInteger,
            sqltypes.BigInteger: _BigInteger,
            sqltypes.Boolean: _Boolean,
            sqltypes.Enum: _Enum,
            ENUM: _Enum,
            sqltypes.ARRAY: _Array,
            PGARRAY: _Array,
            INT2VECTOR: _Int2Vector,
            OIDVECTOR: _OidVector,
        },
    )

    def __init__(self, aurora: dict[str, Any] | None = None, **kwargs: Any):
        kwargs.setdefault("paramstyle", self.default_paramstyle)
        super().__init__(**kwargs)
        self.data_api_settings, self.retry_settings = parse_aurora(aurora)
        self._aurora = dict(aurora or {})

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
        if url.host or url.username or url.password or url.port:
            raise sa_exc.ArgumentError(
                "A postgresql+aurora_data_api URL names the database only "
                "(postgresql+aurora_data_api:///DBNAME): the cluster and the secret are "
                "aurora={'cluster_arn': ..., 'secret': ...}."
            )
        query = dict(url.query)
        connect_timeout = query.pop("connect_timeout", None)
        if query:
            raise sa_exc.ArgumentError(
                f"{sorted(query)[0]!r} in the URL is not used by the Data API dialect; it "
                f"takes connect_timeout only."
            )
        params: dict[str, Any] = {
            "database": url.database or "postgres",
            "resource_arn": self.data_api_settings.cluster_arn,
            "secret_arn": self.data_api_settings.secret_arn,
        }
        if connect_timeout is not None:
            params["connect_timeout"] = _positive(connect_timeout)
        return [], params

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        from orca_db.backends.aurora_data_api.retrying import RetryingCaller

        connection = self.loaded_dbapi.connect(*cargs, **cparams)
        # The name events carry (the Django engine's alias): the database.
        host = _Host(cparams.get("database") or "postgres", self._aurora)
        connection.caller = RetryingCaller(host)
        connection.cleanup = RetryingCaller(host, cleanup=True)
        connection.autocommit = False
        return connection

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
        from orca_db.exceptions import TransactionRolledBack

        lost = connection.lost
        raise TransactionRolledBack(
            f"The transaction was lost ({lost.aws_code or type(lost).__name__}): it is "
            f"rolled back, nothing of it was committed. Roll back and run it again."
        ) from lost


def parse_aurora(aurora: Any) -> tuple[Any, Any]:
    """``aurora={...}`` checked by the Django Data API engine's parser, with
    its messages (naming ``aurora`` instead of ``OPTIONS['aurora']``);
    ``sqlalchemy.exc.ArgumentError``, as for any bad ``create_engine``
    argument."""
    from django.core.exceptions import ImproperlyConfigured

    from orca_db.backends.aurora_data_api.settings import parse_data_api_settings
    from orca_db.conf import parse_retry_settings

    try:
        return (
            parse_data_api_settings({"aurora": aurora}),
            parse_retry_settings(aurora),
        )
    except ImproperlyConfigured as error:
        message = str(error).replace("OPTIONS['aurora']", "aurora")
        raise sa_exc.ArgumentError(message) from error


def _level(name: str) -> IsolationLevel:
    level = name.replace("_", " ").upper()
    if level not in _LEVELS:
        raise sa_exc.ArgumentError(f"unknown isolation level {name!r}")
    return cast(IsolationLevel, level)


def _positive(value: Any) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise sa_exc.ArgumentError(
            f"connect_timeout must be a positive number of seconds, got {value!r}."
        )
    return number


dialect = AuroraDataApiDialect
