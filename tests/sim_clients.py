"""Plain driver connections (the driver of this test run) through the Aurora
simulator and straight to the server, for the simulator's own tests."""

from __future__ import annotations

import os
import socket
import threading

from django.db import connections

from tests.driver import DRIVER

if DRIVER == "psycopg":
    import psycopg as driver
else:
    import psycopg2 as driver

DISCONNECTED = "server closed the connection unexpectedly"


def connect(host: str, port: int, **kwargs):
    """An autocommit connection of this run's driver to the default
    database's server (its ``postgres`` database), as its superuser."""
    settings = connections["default"].settings_dict
    params = {
        "host": host,
        "port": port,
        "user": settings["USER"],
        "password": settings["PASSWORD"],
        "dbname": "postgres",
        "connect_timeout": 10,
        **kwargs,
    }
    if DRIVER == "psycopg":
        return driver.connect(autocommit=True, **params)
    conn = driver.connect(**params)
    conn.autocommit = True
    return conn


def through(sim, **kwargs):
    return connect(sim.host, sim.port, **kwargs)


def server(**kwargs):
    """A connection straight to the server, around the simulator."""
    settings = connections["default"].settings_dict
    return connect(settings["HOST"], settings["PORT"], **kwargs)


def query(conn, sql: str, params=None) -> list[tuple]:
    cur = conn.cursor()
    cur.execute(sql, params)
    return cur.fetchall() if cur.description else []


def on_server(sql: str, params=None) -> list[tuple]:
    conn = server()
    try:
        return query(conn, sql, params)
    finally:
        conn.close()


def backend_alive(pid: int) -> bool:
    return bool(on_server("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]))


def sqlstate(error: BaseException) -> str | None:
    return getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)


def shut_down(conn) -> None:
    """What a client does to give up on a statement at its deadline: shut
    its socket down (from another thread), so the blocked read ends."""
    with socket.socket(fileno=os.dup(conn.fileno())) as sock:
        sock.shutdown(socket.SHUT_RDWR)


class InThread:
    """Runs ``action()`` in a thread; ``result()`` joins it and returns what
    it returned or re-raises what it raised."""

    def __init__(self, action):
        self.done = threading.Event()
        self._outcome: list = []

        def run():
            try:
                self._outcome.append((True, action()))
            except BaseException as exc:
                self._outcome.append((False, exc))
            finally:
                self.done.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout: float = 20.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the thread is still blocked"
        ok, value = self._outcome[0]
        if not ok:
            raise value
        return value
