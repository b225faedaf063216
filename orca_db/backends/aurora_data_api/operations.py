"""PostgreSQL's operations, with SQL composed on the client by this
engine's own quoting (psycopg's needs a psycopg connection)."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import operations as postgresql

from orca_db.data_api import literals


class DatabaseOperations(postgresql.DatabaseOperations):
    def compose_sql(self, sql: str, params: Any) -> str:
        return literals.mogrify(sql, params)

    def last_executed_query(self, cursor: Any, sql: str, params: Any) -> str:
        # The statement with its values written in, for Django's query log
        # (DEBUG) and error pages; never sent anywhere.
        # What the cursor ran, after any execute wrapper (a comment, say).
        sql, params = getattr(cursor, "query", None) or (sql, params)
        try:
            return literals.mogrify(sql, params)
        except Exception:
            return sql
