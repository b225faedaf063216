"""What the fault tests share: the server asked on a connection of its own
(``admin_run``, ``admin_value``), objects made for one test
(``on_the_server``), notifications drained up to a sentinel, and the thread
that injects a fault while the test waits on the statement it hits
(``Background``, ``terminate_when_running``)."""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from tests.conftest import admin_connection


def admin_run(sql: str, params: Any = None, alias: str = "default") -> None:
    """Run ``sql`` on a connection of its own (autocommit), outside Django."""
    admin = admin_connection(alias)
    try:
        admin.cursor().execute(sql, params)
    finally:
        admin.close()


def admin_value(sql: str, params: Any = None, alias: str = "default") -> Any:
    """The first column of the first row ``sql`` returns (``None`` for no
    row or no result), asked on a connection of its own."""
    admin = admin_connection(alias)
    try:
        cursor = admin.cursor()
        cursor.execute(sql, params)
        row = cursor.fetchone() if cursor.description else None
        return row[0] if row else None
    finally:
        admin.close()


@contextlib.contextmanager
def on_the_server(create: str, drop: str, alias: str = "default") -> Iterator[None]:
    """Objects one test needs (a view, a function, a table): made by
    ``create``, removed by ``drop`` whatever the test did."""
    admin_run(create, alias=alias)
    try:
        yield
    finally:
        admin_run(drop, alias=alias)


def notifications(listener: Any, channel: str) -> list[str]:
    """Every notification on ``channel`` sent so far, ``listener`` being an
    admin connection that LISTENs on it. A sentinel is sent last from another
    session, and notifications reach a listener in commit order, so all
    before it have arrived when it does (a quiet moment proves nothing: a
    notification could come later)."""
    admin_run("SELECT pg_notify(%s, 'sentinel')", [channel])
    payloads: list[str] = []
    deadline = time.monotonic() + 10
    while "sentinel" not in payloads:
        assert time.monotonic() < deadline, f"no sentinel notification: {payloads}"
        if hasattr(listener, "notifies") and callable(listener.notifies):  # psycopg 3
            payloads += [n.payload for n in listener.notifies(timeout=0.2, stop_after=1)]
        else:
            select.select([listener], [], [], 0.2)
            listener.poll()
            payloads += [n.payload for n in listener.notifies]
            listener.notifies.clear()
    return payloads[: payloads.index("sentinel")]


class Background:
    """``target`` run in a thread of its own (started at once), typically
    the fault a test injects while its own statement runs; ``join`` waits
    for it and raises what it raised."""

    def __init__(self, target: Callable[[], object]):
        self.error: BaseException | None = None

        def run() -> None:
            try:
                target()
            except BaseException as error:  # raised by join()
                self.error = error

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 60.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"still running after {timeout} s"
        if self.error is not None:
            raise self.error


def terminate_when_running(
    where: str, params: Any = None, timeout: float = 20.0, alias: str = "default"
) -> Background:
    """Terminate (57P01) every backend of ``pg_stat_activity`` that matches
    ``where`` (``state = 'active'`` and the like) as soon as one does, once:
    from a thread of its own, polling ``alias``'s server. Its ``join``
    raises ``TimeoutError`` when none matched within ``timeout``."""

    def watch() -> None:
        admin = admin_connection(alias)
        try:
            cursor = admin.cursor()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE pid <> pg_backend_pid() AND {where}",
                    params,
                )
                if cursor.fetchall():
                    return
                time.sleep(0.005)
            raise TimeoutError(f"no backend matched {where!r} within {timeout} s")
        finally:
            admin.close()

    return Background(watch)
