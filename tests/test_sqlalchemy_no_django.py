"""No Django on the SQLAlchemy path (issue 23): a SQLAlchemy-only program,
a Lambda's, imports no module of Django, whatever the plugin meets: a bad
setting, a query, a connection the server ended while it sat in the pool,
a retried connect. Checked in a fresh process, where nothing else loaded
Django first."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.layout import ROOT

pytest.importorskip("sqlalchemy")

from tests.sqlalchemy_helpers import url

PROGRAM = r"""
import sys
import time

import orca_db.sqlalchemy
from sqlalchemy import create_engine, exc, text

target = sys.argv[1]
try:
    create_engine(target, plugins=["orca_db"], aurora={"deadline": "soon"})
except exc.ArgumentError as error:
    assert "'deadline'" in str(error), error
else:
    raise AssertionError("a bad setting was accepted")

engine = create_engine(target, plugins=["orca_db"], aurora={"deadline": 20})
with engine.connect() as connection:
    pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
with engine.begin() as connection:
    assert connection.execute(text("SELECT 1")).scalar() == 1
# The pooled connection's session ends (a scale event while it sat in the
# pool): the plugin replaces it at checkout.
killer = create_engine(target, plugins=["orca_db"], isolation_level="AUTOCOMMIT")
with killer.connect() as connection:
    connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    gone = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
    deadline = time.monotonic() + 30
    while connection.execute(gone, {"pid": pid}).scalar():
        assert time.monotonic() < deadline, "the backend did not end"
        time.sleep(0.01)
killer.dispose()
with engine.connect() as connection:
    assert connection.execute(text("SELECT pg_backend_pid()")).scalar() != pid
# A connect the server refuses, retried within the deadline, then given up.
refused = create_engine(
    target.replace("/postgres", "/no_such_database_here"),
    plugins=["orca_db"],
    aurora={"deadline": 0.5},
)
try:
    refused.connect()
except exc.DBAPIError:
    pass
engine.dispose()
print(sorted(name for name in sys.modules if name.split(".")[0] == "django"))
"""


def test_a_sqlalchemy_program_loads_no_django():
    target = url().render_as_string(hide_password=False)
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
