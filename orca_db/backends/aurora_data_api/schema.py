"""PostgreSQL's schema editor; values in DDL quoted by this engine, and
Django's few two-statement templates run as two calls."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import schema as postgresql

from orca_db.data_api import literals
from orca_db.data_api.sqltext import split


class DatabaseSchemaEditor(postgresql.DatabaseSchemaEditor):
    def quote_value(self, value: Any) -> str:
        return literals.quote(value)

    def execute(self, sql: Any, params: Any = ()) -> None:
        # Some of PostgreSQL's templates hold two statements ("UPDATE ...;
        # SET CONSTRAINTS ... IMMEDIATE", "SET CONSTRAINTS ...; ALTER TABLE
        # ... DROP CONSTRAINT"), and the Data API runs one per call. Inside a
        # migration's transaction the two calls apply together.
        if params is not None:
            sql = self.connection.ops.compose_sql(str(sql), params)
        statements = split(str(sql)) if ";" in str(sql) else [sql]
        for statement in statements:
            super().execute(statement, None)
