"""No Django on the SQLAlchemy path (issue 23): a SQLAlchemy-only program,
a Lambda's, imports no module of Django, whatever the plugin meets: a bad
setting, a query, a connection the server ended while it sat in the pool,
a retried connect. Checked in a fresh process, where nothing else loaded
Django first."""

from __future__ import annotations

import json
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


DATA_API_PROGRAM = r"""
import json
import sys

from sqlalchemy import create_engine, exc, text
from sqlalchemy.dialects import registry

import orca_db.sqlalchemy as orca
from orca_db import outcomes

# As setup.cfg's entry point does once orca-db is installed.
registry.register(
    "postgresql.aurora_data_api", "orca_db.sqlalchemy.data_api", "AuroraDataApiDialect"
)
aurora = json.loads(sys.argv[1])
target = "postgresql+aurora_data_api:///postgres"
try:
    create_engine(target, aurora={**aurora, "cluster_arn": "x"})
except exc.ArgumentError as error:
    assert "aurora['cluster_arn']" in str(error), error
else:
    raise AssertionError("a bad cluster ARN was accepted")

engine = create_engine(target, aurora=aurora)
with engine.connect() as connection:
    assert connection.execute(text("SELECT 1 + 1")).scalar() == 2
# Two throttled BeginTransactions (retried), then the COMMIT's answer lost.
try:
    with engine.begin() as connection:
        connection.execute(text("SELECT 1"))
except orca.OutcomeUnknown as error:
    assert type(error.orig) is outcomes.OutcomeUnknown, type(error.orig)
else:
    raise AssertionError("a lost COMMIT answer was not OutcomeUnknown")
with engine.begin() as connection:
    assert connection.execute(text("SELECT 2")).scalar() == 2
engine.dispose()
print(sorted(name for name in sys.modules if name.split(".")[0] == "django"))
"""


@pytest.mark.django_db
def test_a_data_api_dialect_program_loads_no_django(data_api_endpoint):
    """The Data API dialect (issue 24) through the local endpoint: a bad
    setting, a query, a retried call and a lost COMMIT answer, and no module
    of Django (its settings parser and retrying caller are the transport's,
    ``orca_db.data_api``, not the Django engine's)."""
    aurora = {
        "cluster_arn": data_api_endpoint.cluster_arn,
        "secret": data_api_endpoint.secret_arn,
        "deadline": 20,
    }
    data_api_endpoint.fail_next(2, code="ThrottlingException", operation="BeginTransaction")
    data_api_endpoint.lose_replies(1, operation="CommitTransaction")
    result = subprocess.run(
        [sys.executable, "-c", DATA_API_PROGRAM, json.dumps(aurora)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **data_api_endpoint.environ()},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    stats = data_api_endpoint.stats
    assert (stats["failed"], stats["replies_lost"], stats["commits"]) == (2, 1, 2)
