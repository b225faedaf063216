"""What the ``aurora_*`` management commands share: the ``--database``,
``--timeout`` and ``--json`` options, one exit-code convention, waiting for a
database within the command's own time budget, and plain driver connections
made from an alias's settings (outside Django's connection handling and the
retry layer, so the command alone decides how long to wait).

Exit codes (docs/commands.md#exit-codes):

- ``EXIT_OK`` (0): the command did what it is for;
- ``EXIT_FAILED`` (1): it ran, and what it waited for or checked did not
  happen (the database did not answer within the timeout, a check failed, a
  migration could not be completed); running it again later may succeed;
- ``EXIT_USAGE`` (2): it could not start, and running it again will not help
  until something is fixed: a bad option, an unknown alias, misconfigured
  settings, credentials or a database name the server refuses.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from orca_db.backoff import Attempts
from orca_db.classify import classify, driver_error
from orca_db.conf import OPTIONS_KEY, parse_retry_settings
from orca_db.exceptions import ScaleEventError
from orca_db.retry import deadline_cap
from orca_db.sql import scrub_message

#: Exit codes shared by the commands (docs/commands.md#exit-codes).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

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


def one_line(text: object) -> str:
    """``text`` with its whitespace collapsed: one line for a terminal or a log."""
    return " ".join(str(text).split())


def describe_error(error: BaseException) -> str:
    """``Type [SQLSTATE]: message`` of the driver error behind ``error``,
    scrubbed of passwords, on one line."""
    cause = driver_error(error)
    failure = classify(error)
    code = f" [{failure.sqlstate}]" if failure.sqlstate else ""
    return f"{type(cause).__name__}{code}: {one_line(scrub_message(str(cause)))}"[:500]


def exit_code_of(error: BaseException) -> int:
    """The exit code of a command stopped by database ``error``: a lost or
    unreachable database is ``EXIT_FAILED`` (it may answer later); anything
    else (permissions, a refused password, bad SQL) is ``EXIT_USAGE``."""
    if isinstance(error, ScaleEventError) or classify(error).retryable:
        return EXIT_FAILED
    return EXIT_USAGE


def usage_error(message: str) -> CommandError:
    """A ``CommandError`` that ends the command with ``EXIT_USAGE``."""
    return CommandError(message, returncode=EXIT_USAGE)


def seconds(value: str) -> float:
    """argparse type of a timeout: a positive, finite number of seconds."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (number > 0 and math.isfinite(number)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value!r}")
    return number


class DatabaseCommand(BaseCommand):
    """A command that works on one database alias.

    Subclasses say which shared options they take (class attributes below),
    call :meth:`database_alias` for the alias and :meth:`connect` to reach
    the database within ``--timeout``; any ``ImproperlyConfigured`` raised
    while the command runs ends it with one line and ``EXIT_USAGE``.
    """

    # Operations commands must run when the project has check errors: they
    # are what an operator reaches for when something is wrong.
    requires_system_checks: list[str] = []

    #: Help of ``--database``; its default is ``default_database``.
    database_help = 'The database alias to use (default: "default").'
    default_database: str | None = DEFAULT_DB_ALIAS
    #: Whether the alias must be PostgreSQL (the command runs SQL of its own).
    requires_postgresql = True
    #: Default of ``--timeout`` (seconds); ``None``: the command declares no
    #: ``--timeout`` (it may have its own way to bound its waits).
    default_timeout: float | None = None
    timeout_help = "Seconds to wait for the database to answer (default: %(default)g)."
    #: Whether the command offers ``--json``.
    offers_json = True

    def add_arguments(self, parser) -> None:
        parser.add_argument("--database", default=self.default_database, help=self.database_help)
        if self.default_timeout is not None:
            parser.add_argument(
                "--timeout",
                type=seconds,
                default=self.default_timeout,
                metavar="SECONDS",
                help=self.timeout_help,
            )
        if self.offers_json:
            parser.add_argument(
                "--json",
                action="store_true",
                dest="as_json",
                help="Print one JSON document instead of text.",
            )

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except ImproperlyConfigured as error:
            # Settings the command reads as it runs (OPTIONS, ORCA_DB_*):
            # one line naming what is wrong, not a traceback.
            if options.get("traceback"):
                raise
            raise usage_error(f"Improperly configured: {one_line(error)}") from error

    # ----- the database -------------------------------------------------------

    def database_alias(self, alias: str) -> str:
        """``alias`` if it names a usable database, else ``EXIT_USAGE``."""
        if alias not in connections.settings:
            known = ", ".join(repr(name) for name in connections.settings)
            raise usage_error(f"Database alias {alias!r} does not exist (DATABASES has {known}).")
        try:
            vendor = connections[alias].vendor
        except ImproperlyConfigured as error:
            raise usage_error(f"Database {alias!r} is misconfigured: {one_line(error)}") from error
        if self.requires_postgresql and vendor != "postgresql":
            raise usage_error(f"Database {alias!r} is not PostgreSQL (vendor {vendor!r}).")
        return alias

    def connect(self, alias: str, timeout: float) -> float:
        """Open ``alias``'s connection, waiting at most ``timeout`` seconds
        (the backend's own retries included: its deadline is capped by the
        time left). Returns the seconds it took; ends the command with
        ``EXIT_FAILED`` when the database did not answer in time, with
        ``EXIT_USAGE`` on an error no wait can cure (bad password, unknown
        database)."""
        connection = connections[alias]
        started = time.monotonic()
        deadline = started + timeout
        attempts = self.attempt_schedule(alias, deadline)
        while True:
            try:
                with deadline_cap(max(0.0, deadline - time.monotonic())):
                    connection.ensure_connection()
                return time.monotonic() - started
            except DatabaseError as error:
                connection.close()
                waited = time.monotonic() - started
                if exit_code_of(error) == EXIT_USAGE:
                    raise usage_error(
                        f"Cannot connect to database {alias!r}, and waiting will not help: "
                        f"{describe_error(error)}"
                    ) from error
                pause = attempts.next_delay(storm=classify(error).storm)
                if pause is None:
                    raise CommandError(
                        f"Database {alias!r} did not answer within {timeout:g} s "
                        f"(waited {waited:.1f} s): {describe_error(error)}",
                        returncode=EXIT_FAILED,
                    ) from error
                time.sleep(pause)

    @staticmethod
    def attempt_schedule(alias: str, deadline: float) -> Attempts:
        """The command's own connection attempts until ``deadline`` (engines
        without the retry layer, or after the backend gave up), at the pace
        of the backend's retries of ``alias``: its backoff, the storm shape
        after a full or starting server (orca_db.backoff)."""
        options = connections[alias].settings_dict.get("OPTIONS") or {}
        settings = parse_retry_settings(options.get(OPTIONS_KEY))
        return Attempts(settings.backoff(), deadline)

    # ----- output -------------------------------------------------------------

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
        raise usage_error(f"Database {alias!r} is misconfigured: {one_line(error)}") from error
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


def driver_name(alias: str | None = None) -> str:
    """What carries the statements of ``alias`` (of Django's PostgreSQL
    backend when no alias is given): the driver and its version, or the
    RDS Data API and boto3's."""
    database = getattr(connections[alias], "Database", None) if alias is not None else None
    if getattr(database, "__name__", "") == "orca_db.data_api":
        import boto3

        return f"RDS Data API, boto3 {boto3.__version__}"
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if is_psycopg3:
        import psycopg

        return f"psycopg {psycopg.__version__}"
    import psycopg2

    return f"psycopg2 {psycopg2.__version__.split()[0]}"
