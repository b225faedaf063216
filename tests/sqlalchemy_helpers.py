"""SQLAlchemy engines on this run's driver, straight to the test server or
through the Aurora simulator, for the tests of orca_db.sqlalchemy."""

from __future__ import annotations

import functools
import random
import time
import uuid

import pytest
from django.db import connections

from tests import sim_clients
from tests.driver import DRIVER

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import URL, create_engine, text  # noqa: E402


def url(host: str | None = None, port: int | None = None, **query: str) -> URL:
    """A ``postgresql+<driver>`` URL to the default database's server (its
    ``postgres`` database), or to ``host:port`` (the simulator)."""
    settings = connections["default"].settings_dict
    return URL.create(
        f"postgresql+{DRIVER}",
        username=settings["USER"],
        password=settings["PASSWORD"],
        host=host or settings["HOST"],
        port=int(port or settings["PORT"]),
        database="postgres",
        query=query,
    )


def engine(sim=None, *, plugin: bool = True, aurora: dict | None = None, **kwargs):
    """An engine (through ``sim`` when given) with the orca_db plugin, or a
    stock one (``plugin=False``)."""
    target = url(sim.host, sim.port) if sim is not None else url()
    if plugin:
        kwargs["plugins"] = ["orca_db"]
        kwargs["aurora"] = {"deadline": 20, **(aurora or {})}
    return create_engine(target, **kwargs)


class Table:
    """A table of its own for one test, created and counted on the server
    directly (around the simulator)."""

    def __init__(self) -> None:
        self.name = f"orca_sqla_{uuid.uuid4().hex[:12]}"
        sim_clients.on_server(f"CREATE TABLE {self.name} (id serial PRIMARY KEY, v text)")
        self.insert = text(f"INSERT INTO {self.name} (v) VALUES (:v)")

    def rows(self) -> int:
        return sim_clients.on_server(f"SELECT count(*) FROM {self.name}")[0][0]

    def drop(self) -> None:
        sim_clients.on_server(f"DROP TABLE IF EXISTS {self.name}")


def retry_operational_error(
    max_retries: int = 3,
    backoff_in_seconds: float = 1,
    backoff_factor: float = 2,
    jitter: float = 1,
):
    """ORCA's decorator as documented (shared/docs/sqlalchemy-facts.md): run
    the whole function again on any ``sqlalchemy.exc.OperationalError``,
    up to ``max_retries`` times, sleeping ``backoff_in_seconds *
    backoff_factor ** n + uniform(0, jitter)`` (ORCA's jitter is 1 s)."""

    def decorator(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            retries = 0
            while True:
                try:
                    return function(*args, **kwargs)
                except sqlalchemy.exc.OperationalError:
                    if retries >= max_retries:
                        raise
                    time.sleep(
                        backoff_in_seconds * backoff_factor**retries + random.uniform(0, jitter)
                    )
                    retries += 1

        return wrapper

    return decorator
