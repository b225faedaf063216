"""``manage.py aurora_demo --data-api`` end to end, in a subprocess as a user
runs it: ORCA's workload on the Data API engine through pauses, scale
events, lost answers and throttling of the local endpoint, then the audit."""

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
PROGRAM = (
    "import sys; from tests import driver; "
    "from django.core.management import execute_from_command_line; "
    "execute_from_command_line(['manage.py', *sys.argv[1:]])"
)


@pytest.mark.slow
def test_the_demo_on_the_data_api_has_no_errors_duplicates_or_partial_transactions(tmp_path):
    embedded = Path(tempfile.mkdtemp(prefix="orca-db-data-api-demo-"))
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="orca_db_project.settings",
        ORCA_DB_EMBEDDED_DIR=str(embedded),
        PYTHONPATH=str(ROOT),
    )
    command = [sys.executable, "-c", PROGRAM, "aurora_demo", "--data-api"]
    try:
        result = subprocess.run(
            [*command, "--duration", "8", "--fault-interval", "0.5", "--seed", "11"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        PostgresServer(base=embedded).stop("immediate")
        shutil.rmtree(embedded, ignore_errors=True)
    report = result.stdout
    assert result.returncode == 0, report + result.stderr
    assert "on the Data API engine" in report
    assert "RESULT: PASS" in report
    for line in ("errors: 0", "duplicates: 0", "partial transactions: 0"):
        assert re.search(rf"^  {line}$", report, re.M), line
    assert re.search(r"^  lost writes .*: 0$", report, re.M)
    fired = re.search(r"Injected faults\n  (\d+) \((.*)\)", report)
    assert int(fired.group(1)) >= 8
    for kind in ("pause", "scale_event", "lose_reply", "throttle"):
        assert kind in fired.group(2)
    ended = int(re.search(r"(\d+) transactions ended", report).group(1))
    assert ended > 0  # scale events and pauses did end running transactions
