"""Fixtures for SQLAlchemy-only projects (no Django settings), part of the
``orca_db`` pytest plugin (``orca_db.testing.pytest_plugin``):

- ``orca_postgres_url`` (session scope): the real PostgreSQL the tests use,
  as a ``sqlalchemy.URL`` on the installed driver (psycopg 3, else
  psycopg2). ``ORCA_DB_SQLALCHEMY_URL`` names one (e.g.
  ``postgresql://app:pw@localhost:5432/app_test``); otherwise a throwaway
  server is started for the session (``orca_db.testing.postgres``).
  Override the fixture to choose another way;
- ``aurora_simulator``: without Django settings it stands in front of that
  server (``aurora_simulator_upstream`` falls back to it);
- ``aurora_engine_factory``: ``make(**create_engine_kwargs)``, an engine
  with the ``orca_db`` plugin through the simulator (``aurora={...}`` merged
  over ``{"deadline": 20}``; ``direct=True`` for one straight to the
  server), every engine disposed after the test;
- ``aurora_engine``: ``aurora_engine_factory()``.

docs/sqlalchemy.md, "Testing", shows them in use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

URL_VARIABLE = "ORCA_DB_SQLALCHEMY_URL"


def _driver() -> str:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg2"
    return "psycopg"


def with_driver(url: Any) -> Any:
    """``url`` (str or URL) on the installed driver, unless it names one."""
    from sqlalchemy.engine import make_url

    url = make_url(url)
    if url.get_driver_name() in ("psycopg", "psycopg2"):
        return url
    return url.set(drivername=f"postgresql+{_driver()}")


@pytest.fixture(scope="session")
def orca_postgres_url() -> Iterator[Any]:
    pytest.importorskip("sqlalchemy")
    given = os.environ.get(URL_VARIABLE)
    if given:
        yield with_driver(given)
        return
    from .postgres import PostgresServer

    server = PostgresServer().start()
    try:
        yield with_driver(server.url())
    finally:
        server.destroy()


def upstream_without_django(request: pytest.FixtureRequest) -> tuple[str, int] | None:
    """``(host, port)`` of ``orca_postgres_url`` when no Django settings
    are configured (a SQLAlchemy-only project); ``None`` otherwise."""
    try:
        from django.conf import settings

        if settings.configured:
            return None
    except ImportError:
        pass
    url = request.getfixturevalue("orca_postgres_url")
    return url.host or "localhost", int(url.port or 5432)


@pytest.fixture
def aurora_engine_factory(
    request: pytest.FixtureRequest, aurora_simulator: Any
) -> Iterator[Callable[..., Any]]:
    from sqlalchemy import create_engine

    made: list[Any] = []
    upstream = request.getfixturevalue("orca_postgres_url")

    def make(*, direct: bool = False, aurora: dict | None = None, **kwargs: Any) -> Any:
        url = (
            upstream
            if direct
            else upstream.set(host=aurora_simulator.host, port=aurora_simulator.port)
        )
        kwargs.setdefault("plugins", ["orca_db"])
        engine = create_engine(url, aurora={"deadline": 20, **(aurora or {})}, **kwargs)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispose()


@pytest.fixture
def aurora_engine(aurora_engine_factory: Callable[..., Any]) -> Any:
    return aurora_engine_factory()
