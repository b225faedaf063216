"""PostgreSQL's test database creation; "already exists" is recognised by
its SQLSTATE (psycopg's exception classes do not apply)."""

from __future__ import annotations

import sys
from typing import Any

from django.db.backends.postgresql import creation as postgresql

_DUPLICATE_DATABASE = "42P04"


class DatabaseCreation(postgresql.DatabaseCreation):
    def _execute_create_test_db(self, cursor: Any, parameters: dict, keepdb: bool = False):
        try:
            exists = self._database_exists  # type: ignore[attr-defined]  # PostgreSQL's
            if keepdb and exists(cursor, parameters["dbname"]):
                return
            super(postgresql.DatabaseCreation, self)._execute_create_test_db(  # type: ignore[misc]
                cursor, parameters, keepdb
            )
        except Exception as error:
            if getattr(error.__cause__, "sqlstate", None) != _DUPLICATE_DATABASE:
                self.log(f"Got an error creating the test database: {error}")
                sys.exit(2)
            elif not keepdb:
                raise
