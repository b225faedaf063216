"""A wrong HOST or PORT is not a freeze: a database that refuses connections
and has not accepted one since this process started is named on stderr
within a few seconds (host, port, the error), with progress lines while the
connect goes on retrying; a restart of a database that answered before
retries quietly as it always did (docs/backend.md#a-database-that-never-answered).

Before: ``DATABASE_URL=postgresql://...@127.0.0.1:59999/orca manage.py
migrate`` printed nothing for 60 s, then ``RetriesExhausted``.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connections

from orca_db import connect_notice
from orca_db.exceptions import RetriesExhausted
from orca_db.testing.postgres import free_port
from tests.commands import database_alias

ROOT = Path(__file__).resolve().parent.parent
DRIVER = os.environ.get("ORCA_DB_DRIVER", "psycopg")

# manage.py as a user runs it, on this run's driver.
MANAGE = (
    "import runpy, sys\n"
    "sys.path.insert(0, {root!r})\n"
    "if {hide!r}: sys.modules['psycopg'] = None\n"
    "sys.argv = ['manage.py', *sys.argv[1:]]\n"
    "runpy.run_path({manage!r}, run_name='__main__')\n"
).format(root=str(ROOT), hide=DRIVER == "psycopg2", manage=str(ROOT / "manage.py"))


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def test_manage_py_migrate_names_a_wrong_port_within_5_s(tmp_path):
    port = free_port()  # nothing listens there: every connect is refused
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ORCA_DB_", "DJANGO_")) and key != "DATABASE_URL"
    }
    env.update(
        DATABASE_URL=f"postgresql://orca:s3cret-pw@127.0.0.1:{port}/orca",
        ORCA_DB_EMBEDDED_DIR=str(tmp_path / "state"),
        PYTHONUNBUFFERED="1",
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", MANAGE, "migrate"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(process.stderr, lines), daemon=True).start()
    seen = []
    try:
        deadline = started + 5
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"nothing naming port {port} within 5 s: {seen}"
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"migrate ended first: {seen}"
            seen.append(line)
            if str(port) in line:
                break
    finally:
        process.kill()
        process.wait(timeout=30)
    line = seen[-1]
    assert "127.0.0.1" in line
    assert "Connection refused" in line
    assert "default" in line
    assert "s3cret-pw" not in "".join(seen)
    assert "Traceback" not in "".join(seen)


def test_the_notice_and_its_progress_in_process(caplog, django_db_blocker):
    # Each refusal is 4 s after the last on this clock: one wait, with a
    # progress line once PROGRESS_EVERY (10 s) has passed since the first.
    ticks = iter(range(1000, 2000, 4))
    with (
        django_db_blocker.unblock(),
        database_alias("nowhere", PORT=str(free_port()), OPTIONS={"aurora": {"deadline": 2}}),
    ):
        port = connections["nowhere"].settings_dict["PORT"]
        connect_notice.forget()
        connect_notice.clock = lambda: float(next(ticks))
        try:
            with caplog.at_level(logging.INFO, logger="orca_db"):
                with pytest.raises(RetriesExhausted):
                    connections["nowhere"].ensure_connection()
        finally:
            connect_notice.clock = time.monotonic
            connect_notice.forget()
    notices = [
        r for r in caplog.records if r.name == "orca_db.retry" and r.levelno == logging.WARNING
    ]
    assert len(notices) >= 2, [r.getMessage() for r in notices]
    first, progress = notices[0], notices[1]
    assert f"at 127.0.0.1:{port} has not accepted a connection since this process started" in (
        first.getMessage()
    )
    assert "Connection refused" in first.getMessage()
    assert first.orca_db["kind"] == "connect_unanswered"
    assert first.orca_db["server_port"] == port
    assert first.orca_db["database"] == "nowhere"
    assert f"127.0.0.1:{port}: still no connection after 12 s (4 attempts)" in (
        progress.getMessage()
    )


def test_a_database_that_answered_before_retries_quietly(caplog, django_db_blocker):
    # The test database answered; a refusal now (a restart) is not a typo.
    error = refused_error()
    connect_notice.forget()
    connect_notice.failed("default", "127.0.0.1", "1", error)  # a control: this one speaks
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    with django_db_blocker.unblock():
        connections["default"].ensure_connection()
        settings = connections["default"].settings_dict
        connect_notice.forget()
        connections["default"].close()
        connections["default"].ensure_connection()
    assert connect_notice.answered(settings["HOST"], settings["PORT"])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="orca_db"):
        connect_notice.failed("default", settings["HOST"], settings["PORT"], error)
    assert caplog.records == []


def refused_error() -> Exception:
    from orca_db.testing.postgres import connect_driver

    try:
        connect_driver(host="127.0.0.1", port=free_port(), user="orca", dbname="orca")
    except Exception as error:
        return error
    raise AssertionError("a connection was made to a free port")
