"""``ENGINE: "orca_db.backends.aurora_data_api"``: Django's PostgreSQL
backend over the RDS Data API (docs/data-api.md).

Everything that makes SQL (operations, schema editor, introspection,
features) is PostgreSQL's: ``vendor`` stays ``"postgresql"``, so
``as_postgresql()`` and ``django.contrib.postgres`` keep working. What
differs is the transport: no connection is ever opened, each statement is
an HTTPS call through :mod:`orca_db.data_api`, retried by
:mod:`orca_db.data_api.retrying` on this wrapper's settings. Django's
PostgreSQL modules still import psycopg (or psycopg2) for their adapters,
so one of them must be installed.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base as postgresql
from django.utils.functional import cached_property

from orca_db import data_api
from orca_db.conf import OPTIONS_KEY, retry_settings
from orca_db.data_api.retrying import RetryingCaller
from orca_db.exceptions import TransactionRolledBack

from .creation import DatabaseCreation
from .features import DatabaseFeatures
from .operations import DatabaseOperations
from .schema import DatabaseSchemaEditor
from .settings import parse_data_api_settings

# The server's version, by cluster and database: asked once per process
# (Django checks it when each wrapper first connects).
_versions: dict[tuple[str, str], int] = {}


class DatabaseWrapper(postgresql.DatabaseWrapper):
    Database = data_api
    SchemaEditorClass = DatabaseSchemaEditor
    creation_class = DatabaseCreation
    features_class = DatabaseFeatures
    ops_class = DatabaseOperations

    # ----- connecting: nothing to connect ----------------------------------------

    def get_connection_params(self) -> dict[str, Any]:
        settings_dict = self.settings_dict
        name = settings_dict["NAME"] or "postgres"
        limit = self.ops.max_name_length() or 63
        if len(name) > limit:
            raise ImproperlyConfigured(
                f"The database name {name!r} ({len(name)} characters) is longer than "
                f"PostgreSQL's limit of {limit} characters."
            )
        options = parse_data_api_settings(settings_dict["OPTIONS"])
        return {
            "database": name,
            "resource_arn": options.cluster_arn,
            "secret_arn": options.secret_arn,
            "isolation_level": options.isolation_level,
            "connect_timeout": options.connect_timeout,
        }

    def get_new_connection(self, conn_params: dict[str, Any]) -> data_api.Connection:
        connection = data_api.connect(**conn_params)
        # Read at each call: override_settings and a changed settings_dict apply.
        settings = functools.partial(retry_settings, self)
        connection.caller = RetryingCaller(self.alias, settings)
        connection.cleanup = RetryingCaller(self.alias, settings, cleanup=True)
        return connection

    def _configure_connection(self, connection: Any) -> bool:
        # No session to configure: each call may run on another one. The
        # Data API's sessions are in UTC, Django's time zone with USE_TZ
        # (orca_db.W051 warns otherwise).
        return False

    def ensure_timezone(self) -> bool:
        return False

    @property
    def pool(self) -> None:
        return None  # no connections, nothing to pool

    def close_pool(self) -> None:
        pass

    @cached_property
    def pg_version(self) -> int:
        options = self.settings_dict["OPTIONS"][OPTIONS_KEY]
        key = (options["cluster_arn"], self.settings_dict["NAME"] or "")
        if key not in _versions:
            with self.temporary_connection() as cursor:
                cursor.execute("SHOW server_version_num")
                _versions[key] = int(cursor.fetchone()[0])
        return _versions[key]

    # ----- cursors ------------------------------------------------------------------

    def create_cursor(self, name: str | None = None) -> data_api.Cursor:
        if self.connection.lost is not None and self.in_atomic_block:
            # Code that caught TransactionRolledBack inside the block and
            # carried on: the transaction is gone, say so again.
            raise TransactionRolledBack(
                f"The transaction on database {self.alias!r} was lost "
                f"({self.connection.lost.aws_code or type(self.connection.lost).__name__}); "
                f"leave the atomic block and run it again."
            )
        # No server-side cursors: a named cursor's rows come back at once.
        cursor = self.connection.cursor()
        # As Django's PostgreSQL backend reads them (it sets a loader per
        # cursor too): with USE_TZ, aware; without, naive.
        cursor.aware_timestamps = settings.USE_TZ
        cursor.range_factory = _django_range
        return cursor

    def chunked_cursor(self):
        return self._cursor()

    def is_usable(self) -> bool:
        # As PostgreSQL's SELECT 1 would say, without a call: a transaction a
        # statement failed in refuses everything but a rollback.
        connection = self.connection
        return not (
            connection is None or connection.closed or connection.broken or connection.aborted
        )


def _django_range(type_name: str, lower: Any, upper: Any, bounds: str, empty: bool) -> Any:
    """The range classes Django's PostgreSQL backend gets from its driver."""
    from django.db.backends.postgresql import psycopg_any

    cls = {
        "daterange": psycopg_any.DateRange,
        "tsrange": psycopg_any.DateTimeRange,
        "tstzrange": psycopg_any.DateTimeTZRange,
    }.get(type_name, psycopg_any.NumericRange)
    return cls(lower, upper, bounds, empty=empty)
