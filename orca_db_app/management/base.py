"""What the ``aurora_*`` management commands share: the ``--database`` and
``--json`` options, their exit codes, and plain driver connections made from
an alias's settings (outside Django's connection handling and the retry
layer, so the command alone decides how long to wait)."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from orca_db.conf import OPTIONS_KEY

#: Exit codes shared by the commands (docs/commands.md).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ERROR = 2

# OPTIONS keys Django's PostgreSQL backend consumes itself; the driver would
# reject them (or, for cursor_factory and context, they only make sense
# inside Django).
_DJANGO_ONLY_OPTIONS = (
    OPTIONS_KEY,
    "pool",
    "isolation_level",
    "assume_role",
    "server_side_binding",
    "prepare_threshold",
    "cursor_factory",
    "context",
)


class DatabaseCommand(BaseCommand):
    """A command that examines one database alias."""

    # Operations commands must run when the project has check errors: they
    # are what an operator reaches for when something is wrong.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help='The database alias to use (default: "default").',
        )
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="Print one JSON document instead of text.",
        )

    def check_alias(self, alias: str) -> None:
        if alias not in connections.settings:
            known = ", ".join(repr(name) for name in connections.settings)
            raise CommandError(
                f"Database alias {alias!r} does not exist (DATABASES has {known}).",
                returncode=EXIT_ERROR,
            )
        try:
            vendor = connections[alias].vendor
        except ImproperlyConfigured as error:
            raise CommandError(
                f"Database {alias!r} is misconfigured: {error}", returncode=EXIT_ERROR
            ) from error
        if vendor != "postgresql":
            raise CommandError(
                f"Database {alias!r} is not PostgreSQL (vendor {vendor!r}).",
                returncode=EXIT_ERROR,
            )

    def write_json(self, data: dict[str, Any]) -> None:
        self.stdout.write(json.dumps(data, indent=2, default=str))

    def exit(self, code: int) -> None:
        """End with ``code`` (``SystemExit``, as ``makemigrations --check``
        does), flushing what was written first."""
        self.stdout.flush()
        self.stderr.flush()
        if code != EXIT_OK:
            sys.exit(code)


def driver_params(alias: str, connect_timeout: float | None = None) -> dict[str, Any]:
    """Keyword arguments for the driver's ``connect()``, built the way the
    alias's backend builds them, minus every Django-only option."""
    try:
        params = dict(connections[alias].get_connection_params())
    except ImproperlyConfigured as error:
        raise CommandError(
            f"Database {alias!r} is misconfigured: {error}", returncode=EXIT_ERROR
        ) from error
    for key in _DJANGO_ONLY_OPTIONS:
        params.pop(key, None)
    if connect_timeout is not None:
        # libpq takes whole seconds and rounds anything below 2 up to 2.
        params["connect_timeout"] = max(2, int(round(connect_timeout)))
    return params


def driver_connect(alias: str, connect_timeout: float | None = None):
    """One autocommit connection attempt with the driver Django uses."""
    return connect_with(driver_params(alias, connect_timeout))


def connect_with(params: dict[str, Any]):
    """``driver_connect`` with parameters built beforehand (in the thread
    that owns the alias's connection: ``connections`` is thread-local)."""
    if "resource_arn" in params:
        # The Data API engine: nothing connects, each statement is one call
        # (made once: the command decides how long to wait).
        from orca_db import data_api

        return data_api.connect(**params)
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if is_psycopg3:
        import psycopg

        return psycopg.connect(autocommit=True, **params)
    import psycopg2

    conn = psycopg2.connect(**params)
    conn.autocommit = True
    return conn


def driver_name() -> str:
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if is_psycopg3:
        import psycopg

        return f"psycopg {psycopg.__version__}"
    import psycopg2

    return f"psycopg2 {psycopg2.__version__.split()[0]}"
