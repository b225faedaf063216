"""The ``orca_db`` pytest plugin, active once orca-db is installed.

Fixtures:

- ``postgres_server``: a throwaway PostgreSQL server for the test (function
  scope): stop it, restart it, promote it, without disturbing the database
  the rest of the suite uses.
- ``aurora_simulator``: an :class:`~orca_db.testing.simulator.AuroraSimulator`
  (function scope, started, stopped at the end of the test) in front of the
  server of Django's ``default`` database; point a connection at it with
  ``aurora_simulator.django_settings(settings_dict)``. Override
  ``aurora_simulator_upstream`` to put it in front of another server.
  Its methods inject the faults: ``pause``/``resume`` (with ``storm``),
  ``scale_event``, ``reject_startups``, ``limit_connections``,
  ``starting_up``, ``silence``/``unsilence``, ``lose_replies``,
  ``drop_connections``; wait on them with ``wait_for(lambda stats: ...)``
  (docs/simulator.md). Every fault ends with the test.
- For SQLAlchemy-only projects (no Django settings): ``orca_postgres_url``,
  ``aurora_engine`` and ``aurora_engine_factory``
  (:mod:`orca_db.testing.sqlalchemy_fixtures`); ``aurora_simulator`` then
  stands in front of ``orca_postgres_url``'s server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .postgres import PostgresServer
from .simulator import AuroraSimulator
from .sqlalchemy_fixtures import (  # noqa: F401 (fixtures)
    aurora_engine,
    aurora_engine_factory,
    orca_postgres_url,
    upstream_without_django,
)


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def aurora_simulator_upstream(request: pytest.FixtureRequest) -> tuple[str, int]:
    """``(host, port)`` of the server ``aurora_simulator`` stands in front
    of: the ``HOST``/``PORT`` of Django's ``default`` database (a Unix
    socket directory works too). Reading them opens no connection. Without
    Django settings: ``orca_postgres_url``'s server."""
    without = upstream_without_django(request)
    if without is not None:
        return without
    from django.db import connections

    settings = connections["default"].settings_dict
    return settings.get("HOST") or "localhost", int(settings.get("PORT") or 5432)


@pytest.fixture
def aurora_simulator(aurora_simulator_upstream: tuple[str, int]) -> Iterator[AuroraSimulator]:
    host, port = aurora_simulator_upstream
    simulator = AuroraSimulator(host, port).start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def data_api_endpoint(monkeypatch: pytest.MonkeyPatch):
    """A local RDS Data API endpoint (:class:`orca_db.testing.data_api.
    DataApiEndpoint`) in front of the server of Django's ``default``
    database, with boto3 pointed at it (``AWS_ENDPOINT_URL_RDS_DATA`` and
    placeholder credentials) for the test. ``endpoint.django_settings(name)``
    is a ``DATABASES`` entry for the Data API engine through it."""
    from django.db import connections

    from .data_api import DataApiEndpoint

    endpoint = DataApiEndpoint.for_database(connections["default"].settings_dict).start()
    for name, value in endpoint.environ().items():
        monkeypatch.setenv(name, value)
    try:
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture
def data_api_connection(data_api_endpoint):
    """Django's connection (alias ``"data_api"``) on the Data API engine,
    through ``data_api_endpoint``, to the database of the ``default`` alias
    (the test database). Use it in transactional tests
    (``django_db(transaction=True)``): its writes are not inside the test's
    transaction."""
    from django.db import connections

    from orca_db.backends.aurora_data_api.base import DatabaseWrapper

    name = connections["default"].settings_dict["NAME"]
    base = {
        **connections["default"].settings_dict,
        "HOST": "",
        "PORT": "",
        "USER": "",
        "PASSWORD": "",
    }
    wrapper = DatabaseWrapper({**base, **data_api_endpoint.django_settings(name)}, "data_api")
    connections["data_api"] = wrapper
    try:
        yield wrapper
    finally:
        wrapper.close()
        del connections["data_api"]
