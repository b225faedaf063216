"""``aurora_demo --emf PATH`` writes the run's retry events as CloudWatch
Embedded Metric Format lines (real faults: pg_terminate_backend on a
database of its own)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connections

from tests.conftest import admin_connection
from tests.observability_helpers import assert_emf_document

ROOT = Path(__file__).resolve().parent.parent
# Loads the driver the suite runs with (tests/driver.py), then the command.
PROGRAM = (
    "import sys; from tests import driver; "
    "from django.core.management import execute_from_command_line; "
    "execute_from_command_line(['manage.py', *sys.argv[1:]])"
)


@pytest.fixture
def demo_database_url(django_db_blocker):
    """A database of its own for the demo, on the test server, as a URL."""
    settings = connections["default"].settings_dict
    name = f"orca_emf_demo_{os.getpid()}"
    with django_db_blocker.unblock():
        admin = admin_connection()
        try:
            admin.autocommit = True
            admin.cursor().execute(f"CREATE DATABASE {name}")
        finally:
            admin.close()
    yield (
        f"postgresql://{quote(settings['USER'], safe='')}:{quote(settings['PASSWORD'], safe='')}"
        f"@{settings['HOST']}:{settings['PORT']}/{name}"
    )
    with django_db_blocker.unblock():
        admin = admin_connection()
        try:
            admin.autocommit = True
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            admin.close()


@pytest.mark.slow
def test_demo_writes_each_retry_event_as_an_emf_line(demo_database_url, tmp_path):
    path = tmp_path / "demo.emf"
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DATABASE_URL=demo_database_url,
        DJANGO_SETTINGS_MODULE="orca_db_project.settings",
        PYTHONPATH=str(ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, "aurora_demo", "--duration", "4", "--seed", "3",
         "--fault-interval", "0.5", "--emf", str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    [met] = re.findall(r"^  (\d+) operations met a fault", result.stdout, re.M)
    documents = [assert_emf_document(line) for line in path.read_text().splitlines()]
    workload = [d for d in documents if d["database"] == "orca_demo"]
    assert int(met) >= 1 and len(workload) == int(met)
    assert {d["outcome"] for d in workload} <= {"recovered", "exhausted", "raised"}
    assert sum(d["RetryEvents"] for d in workload) == int(met)
