"""``manage.py aurora_demo`` end to end, in a subprocess, as a user runs it
on a fresh machine: no DATABASE_URL, an embedded PostgreSQL of its own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from orca_db.testing.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent

# Loads the driver the suite runs with (tests/driver.py), then the command.
PROGRAM = (
    "import sys; from tests import driver; "
    "from django.core.management import execute_from_command_line; "
    "execute_from_command_line(['manage.py', *sys.argv[1:]])"
)


@pytest.mark.slow
def test_the_demo_reports_no_errors_duplicates_or_partial_transactions(tmp_path):
    # Directly under /tmp: as root, the server runs as another user, who
    # cannot enter pytest's private tmp_path.
    embedded = Path(tempfile.mkdtemp(prefix="orca-db-demo-test-"))
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="orca_db_project.settings",
        ORCA_DB_EMBEDDED_DIR=str(embedded),
        PYTHONPATH=str(ROOT),
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", PROGRAM, "aurora_demo", "--duration", "5", "--seed", "7"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        PostgresServer(base=embedded).stop("immediate")
        shutil.rmtree(embedded, ignore_errors=True)
    report = result.stdout
    assert result.returncode == 0, report + result.stderr
    assert "RESULT: PASS" in report
    assert re.search(r"^  errors: 0$", report, re.M)
    assert re.search(r"^  duplicates: 0$", report, re.M)
    assert re.search(r"^  partial transactions: 0$", report, re.M)
    assert re.search(r"^  lost writes .*: 0$", report, re.M)
    faults = int(re.search(r"Injected faults\n  (\d+)", report).group(1))
    assert faults >= 3
    completed = int(re.search(r"^  all +(\d+)", report, re.M).group(1))
    assert completed > 0
