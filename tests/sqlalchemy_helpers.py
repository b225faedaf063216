"""SQLAlchemy engines on this run's driver, straight to the test server or
through the Aurora simulator, for the tests of orca_db.sqlalchemy; and the
fixtures those tests share (``table``, ``sim``, ``engines``, ``role``).

A test module takes the fixtures it uses by name, as module attributes
(``table = sqlalchemy_helpers.table``), where pytest finds them and a
reader sees where they come from."""

from __future__ import annotations

import functools
import random
import time
import uuid

import pytest
from django.db import connections

from tests import sim_clients
from tests.driver import DRIVER
from tests.waiting import wait_until

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


def pid_of(connection) -> int:
    """The server process of a SQLAlchemy ``connection``."""
    return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def terminate(connection) -> None:
    """End ``connection``'s server process (pg_terminate_backend: a real
    57P01, what a scale event sends) and wait until it is gone."""
    pid = pid_of(connection)
    sim_clients.on_server("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(lambda: not sim_clients.backend_alive(pid))


def replaces_a_pooled_connection_the_server_closed(sim, e, table) -> None:
    """Assert that ``e`` (on ``sim``) never hands out a pooled connection a
    scale event closed while it sat in the pool: a write after the event
    goes out once, on another server process."""
    with e.connect() as connection:
        first = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    assert sim.scale_event() == 1  # ends the pooled connection's session
    with e.begin() as connection:
        connection.execute(table.insert, {"v": "a"})
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() != first
    assert table.rows() == 1


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


# ----- fixtures ----------------------------------------------------------------


@pytest.fixture
def table():
    """A :class:`Table` of the test's own, dropped after it."""
    t = Table()
    yield t
    t.drop()


@pytest.fixture
def sim(aurora_simulator):
    """The Aurora simulator in front of the test server (a short name)."""
    return aurora_simulator


@pytest.fixture
def silenced_sim(aurora_simulator):
    """The simulator for tests that leave it silent: un-silenced after each
    one (what it held is delivered)."""
    yield aurora_simulator
    aurora_simulator.unsilence()


#: How long a call cut at a deadline of about a second may take, generous
#: for a loaded 2-core machine: a silent network would hold it for the
#: kernel's TCP timeout (minutes) without the cut.
SILENCE_BOUND = 8.0


@pytest.fixture
def engines():
    """``engines(sim=None, **kwargs)`` makes an engine as :func:`engine`
    does; every engine made is disposed after the test."""
    made = []

    def make(*args, **kwargs):
        e = engine(*args, **kwargs)
        made.append(e)
        return e

    yield make
    for e in made:
        e.dispose()


@pytest.fixture
def role():
    """A role of the test's own (``SET ROLE`` to it), dropped after it with
    what it owns."""
    name = f"orca_sqla_role_{uuid.uuid4().hex[:8]}"
    sim_clients.on_server(f"CREATE ROLE {name}")
    yield name
    sim_clients.on_server(f"DROP OWNED BY {name}; DROP ROLE IF EXISTS {name}")
