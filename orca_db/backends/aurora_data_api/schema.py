"""PostgreSQL's schema editor; values in DDL quoted by this engine."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import schema as postgresql

from orca_db.data_api import literals


class DatabaseSchemaEditor(postgresql.DatabaseSchemaEditor):
    def quote_value(self, value: Any) -> str:
        return literals.quote(value)
