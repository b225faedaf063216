"""Helpers for the project settings: where the database comes from."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

ENGINE = "orca_db.backends.aurora"


def parse_database_url(url: str) -> dict[str, Any]:
    """``postgresql://user:password@host:port/name`` as a DATABASES entry on
    the aurora engine."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "aurora"):
        raise ValueError(f"DATABASE_URL must start with postgresql://, got {parts.scheme}://")
    return {
        "ENGINE": ENGINE,
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": 0,
    }


def database_from_environment() -> dict[str, Any]:
    """The default database: ``DATABASE_URL``, else an embedded server that
    starts on first use (a fresh machine needs nothing configured)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return parse_database_url(url)
    from orca_db.testing.embedded import embedded_database_settings

    return {"ENGINE": ENGINE, "CONN_MAX_AGE": 0, **embedded_database_settings()}


def env_float(name: str, default: float) -> float:
    """A number from the environment, with the variable named if it is not one."""
    value = os.environ.get(name, "")
    if not value.strip():
        return default
    try:
        return float(value)
    except ValueError:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{name} must be a number of seconds, got {value!r}.") from None
