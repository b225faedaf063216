"""Helpers for the pool and PgBouncer tests: a scratch database of their
own on the test server, connection aliases added at run time, and a scale
event (every server backend of that database terminated for real)."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

from django.db import connections

from orca_db.signals import retry_event
from orca_db.testing.postgres import connect_driver

ROWS = 3


def server_settings() -> dict[str, Any]:
    """HOST/PORT/USER/PASSWORD of the test server (no ENGINE, no NAME)."""
    settings = connections["default"].settings_dict
    return {key: settings[key] for key in ("HOST", "PORT", "USER", "PASSWORD")}


def admin_connection(dbname: str = "postgres"):
    server = server_settings()
    return connect_driver(
        host=server["HOST"], port=server["PORT"], user=server["USER"],
        password=server["PASSWORD"], dbname=dbname,
    )  # fmt: skip


def admin_execute(sql: str, params: Any = None, dbname: str = "postgres") -> list[tuple]:
    conn = admin_connection(dbname)
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A new database holding table ``item`` with ROWS rows; dropped after."""
    name = f"orca_pool_{secrets.token_hex(4)}"
    admin_execute(f'CREATE DATABASE "{name}"')
    try:
        admin_execute(
            "CREATE TABLE ledger (id serial PRIMARY KEY, name text NOT NULL);"
            "CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL);"
            f"INSERT INTO item (name) SELECT 'row' || n FROM generate_series(1, {ROWS}) n",
            dbname=name,
        )
        yield name
    finally:
        terminate_backends(name)
        admin_execute(f'DROP DATABASE IF EXISTS "{name}"')


def terminate_backends(dbname: str, timeout: float = 10.0) -> int:
    """A scale event: terminate every server backend on ``dbname`` (57P01)
    and wait, within ``timeout``, until all are gone."""
    conn = admin_connection()
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [dbname],
        )
        killed = cur.fetchone()[0]
        deadline = time.monotonic() + timeout
        while True:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [dbname])
            if cur.fetchone()[0] == 0:
                return killed
            if time.monotonic() > deadline:
                raise AssertionError(f"backends on {dbname} still alive after {timeout} s")
            time.sleep(0.01)
    finally:
        conn.close()


def backend_count(dbname: str) -> int:
    return admin_execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [dbname])[0][0]


@contextlib.contextmanager
def database_alias(alias: str, settings: dict[str, Any]) -> Iterator[str]:
    """``settings`` as connection ``alias`` for the duration; then closed and
    removed (with any pool made for it)."""
    # configure_settings() fills in Django's defaults; it insists on a
    # "default" alias, given here and dropped.
    configured = connections.configure_settings({"default": {}, alias: dict(settings)})
    connections.settings[alias] = configured[alias]
    try:
        yield alias
    finally:
        close_alias(alias)
        connections.settings.pop(alias, None)


def close_alias(alias: str) -> None:
    with contextlib.suppress(Exception):
        connections[alias].close()
    wrapper = connections[alias]
    close_pool = getattr(wrapper, "close_pool", None)
    if close_pool is not None and wrapper.settings_dict.get("OPTIONS", {}).get("pool"):
        with contextlib.suppress(Exception):
            close_pool()
    from dj_db_conn_pool.core import pool_container

    with pool_container.lock:
        pool = pool_container.pop(alias, None)
    if pool is not None:
        pool.dispose()
    del connections[alias]


def read_count(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM item")
        return cursor.fetchone()[0]


def raw_select_one(wrapper) -> None:
    """``SELECT 1`` on the driver connection the wrapper was handed, below
    the retry layer: it fails if that connection is broken."""
    wrapper.ensure_connection()
    cursor = wrapper.connection.cursor()
    try:
        cursor.execute("SELECT 1")
        assert cursor.fetchone()[0] == 1
    finally:
        cursor.close()


@contextlib.contextmanager
def recorded_events() -> Iterator[list]:
    events: list = []

    def receive(sender, event, **kwargs):
        events.append(event)

    retry_event.connect(receive, weak=False)
    try:
        yield events
    finally:
        retry_event.disconnect(receive)


def retry_atomic_or_skip():
    import orca_db

    retry_atomic = getattr(orca_db, "retry_atomic", None)
    if retry_atomic is None:
        import pytest

        pytest.skip("orca_db.retry_atomic is not on this branch yet")
    return retry_atomic


def write_through_scale_event(alias: str, dbname: str) -> int:
    """Run a transaction with ``retry_atomic`` whose first attempt meets a
    scale event after its INSERT; return how many attempts it took. The
    caller checks the row was written exactly once."""
    retry_atomic = retry_atomic_or_skip()
    attempts = []
    name = f"entry-{secrets.token_hex(4)}"

    @retry_atomic(using=alias)
    def add_entry():
        attempts.append(name)
        with connections[alias].cursor() as cursor:
            cursor.execute("INSERT INTO ledger (name) VALUES (%s)", [name])
            if len(attempts) == 1:
                terminate_backends(dbname)
            cursor.execute("SELECT count(*) FROM ledger")

    add_entry()
    rows = admin_execute("SELECT count(*) FROM ledger WHERE name = %s", [name], dbname=dbname)
    assert rows[0][0] == 1, f"{name} written {rows[0][0]} times"
    return len(attempts)
