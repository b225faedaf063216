"""The project (``manage.py``, ``orca_db_project.settings``): configuration errors end
in one line naming the variable and exit 2, in every command and in ``check``
(before: a 35- to 55-line traceback and exit 1); loading the settings starts
nothing and writes nothing; no fixed secret, DEBUG off unless asked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from orca_db_project import parse_database_url

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret-pw"


def environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ORCA_DB_", "DJANGO_")) and key != "DATABASE_URL"
    }
    env.update(ORCA_DB_EMBEDDED_DIR=str(tmp_path / "state"), **variables)
    return env


def manage(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess:
    """``python manage.py args...`` from another directory, as a user runs it."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=tmp_path,
        env=environment(tmp_path, **variables),
        capture_output=True,
        text=True,
        timeout=120,
    )


BAD = [
    (
        {"DATABASE_URL": f"mysql://orca:{PASSWORD}@db.example:3306/orca"},
        "DATABASE_URL must be a PostgreSQL URL (postgresql://user:password@host:5432/name), "
        "got a mysql:// URL.",
    ),
    (
        {"DATABASE_URL": f"postgresql://orca:{PASSWORD}@db.example:port/orca"},
        "DATABASE_URL has a port that is not a number between 0 and 65535: 'port'.",
    ),
    (
        {"DATABASE_URL": f"postgresql://orca:{PASSWORD}@db.example:5432"},
        "DATABASE_URL names no database: end it with /name "
        "(postgresql://user:password@host:5432/name).",
    ),
    (
        {"ORCA_DB_RETRY_DEADLINE": "abc"},
        "ORCA_DB_RETRY_DEADLINE must be a number of seconds, at least 0, got 'abc'.",
    ),
    (
        {"ORCA_DB_RETRY_DEADLINE": "-5"},
        "ORCA_DB_RETRY_DEADLINE must be a number of seconds, at least 0, got '-5'.",
    ),
    ({"ORCA_DB_CONN_MAX_AGE": "forever"}, "ORCA_DB_CONN_MAX_AGE must be a number of seconds"),
    ({"ORCA_DB_DEBUG": "maybe"}, "ORCA_DB_DEBUG must be 1 or 0 (or true/false), got 'maybe'."),
    (
        {"ORCA_DB_LOG_LEVEL": "loud"},
        "ORCA_DB_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got 'LOUD'.",
    ),
]


@pytest.mark.parametrize(("variables", "message"), BAD, ids=lambda v: str(v)[:40])
@pytest.mark.parametrize("command", [["check"], ["aurora_wake", "--timeout", "1"]])
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path, command, variables, message):
    result = manage(tmp_path, *command, **variables)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Improperly configured: " + message)
    assert PASSWORD not in result.stdout + result.stderr


def test_traceback_shows_the_traceback(tmp_path):
    result = manage(tmp_path, "check", "--traceback", ORCA_DB_RETRY_DEADLINE="abc")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ORCA_DB_RETRY_DEADLINE" in result.stderr


PROBE = (
    "import os, orca_db_project.settings as s; "
    "print(s.DEBUG, s.SECRET_KEY, s.DATABASES['default']['ENGINE'], "
    "repr(s.DATABASES['default']['HOST']), sorted(os.listdir('.')))"
)


def test_loading_the_settings_starts_nothing_and_writes_nothing(tmp_path):
    def probe() -> list[str]:
        result = subprocess.run(
            [sys.executable, "-c", PROBE],
            cwd=tmp_path,
            env={**environment(tmp_path), "ORCA_DB_EMBEDDED_DIR": "", "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split(maxsplit=4)

    debug, key, engine, host, listing = probe()
    assert debug == "False"
    assert engine == "orca_db_project"  # the embedded server, started when connected
    assert host == "''"
    assert listing.strip() == "[]"  # no .orca-db/, no server
    # No fixed secret: without one configured, each process has its own.
    assert probe()[1] != key


def test_manage_py_keeps_one_secret_per_checkout(tmp_path):
    show = [
        "shell",
        "-v",
        "0",
        "-c",
        "from django.conf import settings; print(settings.SECRET_KEY)",
    ]
    first = manage(tmp_path, *show)
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "state" / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.stdout.strip() == key_file.read_text().strip()
    assert manage(tmp_path, *show).stdout == first.stdout
    # check connects to nothing, so no server was started.
    assert manage(tmp_path, "check").returncode == 0
    assert not (tmp_path / "state" / "data").exists()
    given = manage(tmp_path, *show, ORCA_DB_SECRET_KEY="from-the-environment")
    assert given.stdout.strip() == "from-the-environment"


def test_database_url_options_sockets_and_ipv6():
    config = parse_database_url("postgresql://u:p%40ss@db.example:6432/orca?sslmode=require")
    assert config["ENGINE"] == "orca_db.backends.aurora"
    assert (config["USER"], config["PASSWORD"]) == ("u", "p@ss")
    assert (config["HOST"], config["PORT"], config["NAME"]) == ("db.example", "6432", "orca")
    assert config["OPTIONS"] == {"sslmode": "require"}
    assert parse_database_url("postgres://%2Fvar%2Frun%2Fpostgresql/orca")["HOST"] == (
        "/var/run/postgresql"
    )
    assert parse_database_url("postgresql://u:p@[::1]:5432/orca")["HOST"] == "::1"


def test_database_url_errors_name_the_variable_not_the_password():
    with pytest.raises(ImproperlyConfigured) as raised:
        parse_database_url(f"mysql://u:{PASSWORD}@h/db", "ORCA_DB_TEST_DATABASE_URL")
    assert str(raised.value).startswith("ORCA_DB_TEST_DATABASE_URL must be a PostgreSQL URL")
    assert PASSWORD not in str(raised.value)
