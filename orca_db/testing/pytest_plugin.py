"""The ``orca_db`` pytest plugin, active once orca-db is installed.

Fixtures:

- ``postgres_server``: a throwaway PostgreSQL server for the test (function
  scope): stop it, restart it, promote it, without disturbing the database
  the rest of the suite uses.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .postgres import PostgresServer


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.destroy()
