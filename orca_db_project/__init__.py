"""The repository's Django project (``manage.py``, ``orca_db_project.settings``:
the admin, the operations commands and the demo): where its database and
secret come from, and how its configuration errors are told. It lives beside
the library, not in it: the wheel ships ``orca_db`` and ``orca_db_app`` only.

Nothing here runs on import: the settings read the environment, and the
embedded PostgreSQL they fall back on starts at the first connection (the
engine in :mod:`orca_db_project.base`), not when the settings are loaded.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

#: The engine of a database named by ``DATABASE_URL``.
ENGINE = "orca_db.backends.aurora"
#: The engine of the embedded server: the same, started at the first connection.
EMBEDDED_ENGINE = "orca_db_project"
#: The project's local state (the embedded server, the secret key), relative
#: to the working directory unless ``ORCA_DB_EMBEDDED_DIR`` says otherwise.
DEFAULT_STATE_DIR = ".orca-db"
SECRET_KEY_FILE = "secret_key"

_POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql")
_EXAMPLE = "postgresql://user:password@host:5432/name"


def state_dir() -> Path:
    return Path(os.environ.get("ORCA_DB_EMBEDDED_DIR") or DEFAULT_STATE_DIR)


# ----- the database ---------------------------------------------------------


def parse_database_url(url: str, variable: str = "DATABASE_URL") -> dict[str, Any]:
    """``postgresql://user:password@host:port/name?option=value`` as a
    DATABASES entry on the aurora engine, read by dj-database-url (the
    ecosystem's parser: query options such as ``sslmode`` go to ``OPTIONS``,
    ``%2F``-quoted socket directories and ``[::1]`` hosts work). What it
    would accept but cannot work here (another database, a port that is not
    a number, no database name) raises ``ImproperlyConfigured`` naming
    ``variable``; the message never repeats the URL (it holds a password)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _POSTGRES_SCHEMES:
        got = f"a {scheme}:// URL" if scheme else "no URL scheme"
        raise ImproperlyConfigured(f"{variable} must be a PostgreSQL URL ({_EXAMPLE}), got {got}.")
    try:
        parts.port  # noqa: B018  (reading it validates it)
    except ValueError:
        port = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        raise ImproperlyConfigured(
            f"{variable} has a port that is not a number between 0 and 65535: {port!r}."
        ) from None
    if not parts.path.strip("/"):
        raise ImproperlyConfigured(f"{variable} names no database: end it with /name ({_EXAMPLE}).")
    try:
        import dj_database_url
    except ImportError:
        raise ImproperlyConfigured(
            f"{variable} is read with dj-database-url: pip install -r requirements/dev.txt."
        ) from None
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url, engine=ENGINE))
    except Exception as error:  # its errors name neither the variable nor the part
        raise ImproperlyConfigured(
            f"{variable} is not a valid URL ({type(error).__name__}; {_EXAMPLE}; quote "
            f"special characters of the password with %XX)."
        ) from None
    config["PORT"] = str(config.get("PORT") or "")
    return config


def database_from_environment() -> dict[str, Any]:
    """The default database: ``DATABASE_URL``, else the embedded server
    (a fresh machine needs nothing configured), which the engine starts and
    fills in at the first connection."""
    url = os.environ.get("DATABASE_URL", "")
    if url.strip():
        return parse_database_url(url)
    return {
        "ENGINE": EMBEDDED_ENGINE,
        "NAME": "postgres",
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "",
        "PORT": "",
        "CONN_MAX_AGE": 0,
    }


# ----- other settings -------------------------------------------------------


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    """A number from the environment, with the variable named if it is not one."""
    value = os.environ.get(name, "")
    if not value.strip():
        return default
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is None or not number >= minimum or number == float("inf"):
        raise ImproperlyConfigured(
            f"{name} must be a number of seconds, at least {minimum:g}, got {value!r}."
        )
    return number


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE + _FALSE:
        return value in _TRUE
    raise ImproperlyConfigured(f"{name} must be 1 or 0 (or true/false), got {value!r}.")


def env_log_level(name: str, default: str) -> str:
    value = (os.environ.get(name, "").strip() or default).upper()
    if value not in logging.getLevelNamesMapping() or value == "NOTSET":
        raise ImproperlyConfigured(
            f"{name} must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {value!r}."
        )
    return value


def retry_options(name: str, default_deadline: float) -> dict[str, Any]:
    """``OPTIONS["aurora"]`` of the project's database, checked now so that
    a bad value names its variable rather than surfacing at a connect."""
    from orca_db.conf import parse_retry_settings

    options = {"deadline": env_float(name, default_deadline)}
    try:
        parse_retry_settings(options)
    except ImproperlyConfigured as error:
        raise ImproperlyConfigured(f"{name}: {error}") from None
    return options


# ----- the secret key -------------------------------------------------------


def secret_key() -> str:
    """``ORCA_DB_SECRET_KEY``, else the key this checkout generated
    (``.orca-db/secret_key``, made by ``manage.py`` and ``wsgi.py``), else a
    random key for this process only: loading the settings writes nothing."""
    key = os.environ.get("ORCA_DB_SECRET_KEY", "").strip()
    if key:
        return key
    path = state_dir() / SECRET_KEY_FILE
    try:
        key = path.read_text().strip()
    except OSError:
        key = ""
    return key or secrets.token_urlsafe(50)


def ensure_secret_key() -> None:
    """Generate this checkout's secret key once, readable by its owner only
    (unless ``ORCA_DB_SECRET_KEY`` gives one)."""
    if os.environ.get("ORCA_DB_SECRET_KEY", "").strip():
        return
    path = state_dir() / SECRET_KEY_FILE
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(50) + "\n")


# ----- the command line -----------------------------------------------------


def execute_from_command_line(argv: Sequence[str]) -> None:
    """Django's ``execute_from_command_line``, except that a configuration
    error (``ImproperlyConfigured``: a bad ``DATABASE_URL`` or ``ORCA_DB_*``
    variable, found when the settings load, before any command runs) ends
    it with one line naming the variable and exit code 2 instead of a
    traceback; ``--traceback`` shows the traceback."""
    from django.core.management import execute_from_command_line as django_execute

    try:
        django_execute(list(argv))
    except ImproperlyConfigured as error:
        if "--traceback" in argv:
            raise
        message = " ".join(str(error).split())
        sys.stderr.write(f"Improperly configured: {message}\n")
        sys.exit(2)
