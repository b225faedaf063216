"""The endpoint's idle server sessions, by database, and ending sessions
as a scale event does."""

from __future__ import annotations

import threading
import time
from typing import Any

from . import pg
from .errors import ApiError


class SessionPool:
    def __init__(self, server: dict[str, Any]):
        self.server = server
        self._lock = threading.Lock()
        self._idle: dict[str, list[pg.Session]] = {}
        self._busy: set[pg.Session] = set()
        #: Server pids the endpoint terminated itself (scale events, pauses).
        self.terminated: set[int] = set()

    def acquire(self, database: str) -> pg.Session:
        with self._lock:
            idle = self._idle.get(database, [])
            while idle:
                session = idle.pop()
                if not session.closed:
                    self._busy.add(session)
                    return session
        try:
            session = pg.Session(dbname=database, **self.server)
        except pg.driver_errors() as error:
            if pg.sqlstate(error) == "3D000" or "does not exist" in str(error):
                raise ApiError(
                    "DatabaseNotFoundException", f"Database {database} not found"
                ) from None
            raise ApiError("BadRequestException", pg.error_message(error)) from None
        with self._lock:
            self._busy.add(session)
        return session

    def release(self, session: pg.Session) -> None:
        reusable = not session.closed and session.pid not in self.terminated
        if reusable:
            try:
                session.run("DISCARD ALL", None)
            except pg.driver_errors():
                reusable = False
        with self._lock:
            self._busy.discard(session)
            if reusable:
                self._idle.setdefault(session.dbname, []).append(session)
        if not reusable:
            session.close()

    def drop_idle(self) -> None:
        """Close idle sessions (``CREATE DATABASE ... TEMPLATE`` needs the
        template database to have none)."""
        with self._lock:
            idle = [s for sessions in self._idle.values() for s in sessions]
            self._idle.clear()
        for session in idle:
            session.close()

    def terminate(self, pids: list[int]) -> None:
        if not pids:
            return
        self.terminated.update(pids)
        admin = pg.Session(dbname="postgres", **self.server)
        try:
            admin.run("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                _, rows, _ = admin.run(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s::int[])", [pids]
                )
                if rows[0][0] in (0, "0"):
                    break
                time.sleep(0.01)
        finally:
            admin.close()

    def busy(self) -> list[pg.Session]:
        with self._lock:
            return list(self._busy)

    def close(self) -> None:
        self.drop_idle()
