"""The ``orca_db`` pytest plugin in a SQLAlchemy-only project: a test file
in a directory of its own, run by pytest in a fresh process with no Django
settings, gets an engine through the Aurora simulator from the
``aurora_engine`` fixture and injects faults with ``aurora_simulator``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connections

from tests.driver import DRIVER

pytest.importorskip("sqlalchemy")

ROOT = Path(__file__).resolve().parent.parent

PROJECT_TEST = """
import pytest
from sqlalchemy import text

import orca_db.sqlalchemy as orca


def test_no_django_settings():
    from django.conf import settings

    assert not settings.configured


def test_scale_event_between_uses(aurora_engine, aurora_simulator):
    with aurora_engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    assert aurora_simulator.scale_event() == 1
    with aurora_engine.connect() as connection:
        assert connection.execute(text("SELECT 2")).scalar() == 2


def test_lost_transaction(aurora_engine_factory, aurora_simulator):
    engine = aurora_engine_factory(aurora={"deadline": 10})
    with pytest.raises(orca.TransactionRolledBack):
        with engine.begin() as connection:
            connection.execute(text("SELECT 1"))
            aurora_simulator.scale_event()
            connection.execute(text("SELECT 2"))
"""


def run_project(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    (tmp_path / "test_project.py").write_text(PROJECT_TEST)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def project_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "ORCA_DB_SQLALCHEMY_URL")
    }
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


def test_fixtures_on_a_named_server(tmp_path):
    settings = connections["default"].settings_dict
    url = (
        f"postgresql+{DRIVER}://{settings['USER']}:{settings['PASSWORD']}"
        f"@{settings['HOST']}:{settings['PORT']}/postgres"
    )
    done = run_project(tmp_path, project_env(ORCA_DB_SQLALCHEMY_URL=url))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout


def test_fixtures_on_a_throwaway_server(tmp_path):
    done = run_project(tmp_path, project_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout
