"""``manage.py aurora_migrate``: ``migrate`` for a serverless cluster.

1. Wakes the cluster: connects, retrying until ``--wake-timeout``.
2. Sets ``lock_timeout`` and ``statement_timeout`` on every connection the
   run opens, so a migration fails fast instead of queueing behind a long
   lock (and holding up every query queued behind it, and the cluster's
   scaling) or running forever.
3. Runs ``migrate``. Each migration is one transaction on PostgreSQL, so a
   scale event in the middle rolls it back whole; the command reconnects,
   reads ``django_migrations`` to see what is applied, and runs the rest.
   A migration that lost its lock race is tried again after a pause.

See docs/migrations.md.
"""

from __future__ import annotations

import re
import time
from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError, CommandParser
from django.db import OperationalError, connections
from django.db.backends.signals import connection_created
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder

from orca_db.backoff import Backoff
from orca_db.classify import classify, driver_error
from orca_db.drivers import sqlstate
from orca_db.exceptions import OutcomeUnknown, RetriesExhausted, TransactionRolledBack
from orca_db_app.management.base import EXIT_FAILED, DatabaseCommand, seconds, usage_error

# Errors of a migration that a scale event explains: it was rolled back (or,
# for a lost COMMIT, django_migrations tells whether it committed).
_INTERRUPTED = (TransactionRolledBack, OutcomeUnknown, RetriesExhausted)
_LOCK_NOT_AVAILABLE = "55P03"
_DURATION = re.compile(r"\d+(?:\.\d+)?\s*(?:us|ms|s|min|h|d)?")


def _sqlstate(error: BaseException) -> str | None:
    return sqlstate(driver_error(error))


#: How long to let the holder of a lock finish before re-running the
#: migration that timed out waiting for it: about 1, 2, 4, ... up to 30 s.
LOCK_BACKOFF = Backoff(initial=1.0, maximum=30.0, storm_maximum=30.0)


class Command(DatabaseCommand):
    help = (
        "Wake the database, then apply migrations with a lock timeout and a "
        "statement timeout, re-running a migration a scale event interrupted."
    )
    database_help = 'The database to migrate (default: "default").'
    # --wake-timeout, below, bounds the wait; the output is migrate's.
    default_timeout = None
    offers_json = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("app_label", nargs="?", help="Migrate this app only.")
        parser.add_argument(
            "migration_name", nargs="?", help="Migrate to this migration of the app."
        )
        super().add_arguments(parser)
        parser.add_argument(
            "--plan", action="store_true", help="Show what would run, and run nothing."
        )
        parser.add_argument(
            "--lock-timeout",
            default="5s",
            help="PostgreSQL lock_timeout for the run (default 5s; 0 disables).",
        )
        parser.add_argument(
            "--statement-timeout",
            default="15min",
            help="PostgreSQL statement_timeout for the run (default 15min; 0 disables).",
        )
        parser.add_argument(
            "--wake-timeout",
            type=seconds,
            default=120.0,
            help="Seconds to keep trying to reach a paused or resuming cluster (default 120).",
        )
        parser.add_argument(
            "--max-reruns",
            type=int,
            default=5,
            help="Times to re-run after an interruption or a lock timeout (default 5).",
        )

    def handle(
        self,
        *args: Any,
        app_label: str | None,
        migration_name: str | None,
        database: str,
        plan: bool,
        lock_timeout: str,
        statement_timeout: str,
        wake_timeout: float,
        max_reruns: int,
        verbosity: int,
        **options: Any,
    ) -> None:
        self.database_alias(database)
        if migration_name and not app_label:
            raise usage_error("A migration name needs an app label.")
        if max_reruns < 0:
            raise usage_error(f"--max-reruns must be 0 or more, got {max_reruns}.")
        self.verbosity = verbosity
        self.wake_timeout = wake_timeout
        connection = connections[database]

        settings_sql = self._timeout_sql(lock_timeout, statement_timeout)

        def set_timeouts(sender, connection, **kwargs):
            if connection.alias == database:
                with connection.cursor() as cursor:
                    cursor.execute(settings_sql)

        connection_created.connect(set_timeouts, weak=False)
        try:
            # A connection opened before this command would lack the timeouts.
            connection.close()
            self._wake(connection, wake_timeout)
            if not options.get("skip_checks"):
                # As migrate does, once the database answers.
                self.check(databases=[database])
            if plan:
                self._show_plan(connection, app_label, migration_name)
                return
            self._migrate(connection, app_label, migration_name, max_reruns, options)
        finally:
            connection_created.disconnect(set_timeouts)

    # ----- steps ------------------------------------------------------------

    def _timeout_sql(self, lock_timeout: str, statement_timeout: str) -> str:
        for name, value in (("lock", lock_timeout), ("statement", statement_timeout)):
            if not _DURATION.fullmatch(value):
                raise usage_error(
                    f"--{name}-timeout must be a PostgreSQL duration such as 5s, "
                    f"500ms or 15min (0 disables it), got {value!r}."
                )
        return f"SET lock_timeout = '{lock_timeout}'; SET statement_timeout = '{statement_timeout}'"

    def _wake(self, connection, wake_timeout: float) -> None:
        waited = self.connect(connection.alias, wake_timeout)
        self._say(1, f"Database {connection.alias!r} is up ({waited:.1f} s).")

    def _show_plan(self, connection, app_label, migration_name) -> None:
        executor = MigrationExecutor(connection)
        targets = self._targets(executor, app_label, migration_name)
        steps = executor.migration_plan(targets)
        if not steps:
            self.stdout.write("No migrations to apply.")
            return
        self.stdout.write(f"Planned operations on {connection.alias!r}:")
        for migration, backwards in steps:
            self.stdout.write(f"  {'Unapply' if backwards else 'Apply'} {migration}")
            for operation in migration.operations:
                # An operation that decides on the database what it will do
                # (orca_db_app.orca's AdoptOrCreate: create or adopt) says so.
                explain = getattr(operation, "explain_plan", None)
                if explain is not None and not backwards:
                    verdict, *details = explain(connection)
                    self.stdout.write(f"    -> {verdict}")
                    for line in details:
                        self.stdout.write(f"       {line}")
                elif self.verbosity >= 2:
                    self.stdout.write(f"    {operation.describe()}")

    def _targets(self, executor, app_label, migration_name):
        if not app_label:
            return executor.loader.graph.leaf_nodes()
        if app_label not in executor.loader.migrated_apps:
            raise usage_error(f"App {app_label!r} does not have migrations.")
        if not migration_name:
            return [key for key in executor.loader.graph.leaf_nodes() if key[0] == app_label]
        if migration_name == "zero":
            return [(app_label, None)]
        try:
            migration = executor.loader.get_migration_by_prefix(app_label, migration_name)
        except Exception as error:
            raise usage_error(str(error)) from error
        return [(app_label, migration.name)]

    def _migrate(self, connection, app_label, migration_name, max_reruns, options) -> None:
        args = [a for a in (app_label, migration_name) if a]
        reruns = 0
        while True:
            try:
                if reruns:
                    self._check_next(connection, app_label, migration_name)
                    self.stderr.write(f"Re-running migrate (re-run {reruns} of {max_reruns}).")
                call_command(
                    "migrate",
                    *args,
                    database=connection.alias,
                    interactive=False,
                    verbosity=self.verbosity,
                    stdout=self.stdout._out,
                    stderr=self.stderr._out,
                )
                return
            except Exception as error:
                reason = self._rerun_reason(error)
                if reason is None:
                    raise
                if reruns >= max_reruns:
                    raise CommandError(
                        f"Migrating gave up after {reruns} re-runs; last: {reason}: {error}",
                        returncode=EXIT_FAILED,
                    ) from error
                reruns += 1
                self._say(1, "")  # end migrate's unfinished "Applying ..." line
                self.stderr.write(f"{reason}: {error}")
                connection.close()
                if _sqlstate(error) == _LOCK_NOT_AVAILABLE:
                    # Let the holder of the lock finish before asking again.
                    time.sleep(LOCK_BACKOFF.delay(reruns))
                self._wake(connection, self.wake_timeout)

    def _rerun_reason(self, error: BaseException) -> str | None:
        if isinstance(error, _INTERRUPTED):
            return "A scale event interrupted the migration (rolled back)"
        if _sqlstate(error) == _LOCK_NOT_AVAILABLE:
            return "A lock was not granted within lock_timeout (nothing was applied)"
        if isinstance(error, OperationalError) and classify(error).retryable:
            return "The connection was lost during the migration"
        return None

    def _check_next(self, connection, app_label, migration_name) -> None:
        """After an interruption: report what ``django_migrations`` says is
        applied, and refuse to re-run a migration that is not atomic (a part
        of it may have stayed applied)."""
        applied = MigrationRecorder(connection).applied_migrations()
        self._say(1, f"{len(applied)} migrations are recorded as applied.")
        executor = MigrationExecutor(connection)
        steps = executor.migration_plan(self._targets(executor, app_label, migration_name))
        if not steps:
            return
        migration, backwards = steps[0]
        # An atomic migration is one transaction on PostgreSQL, whatever its
        # operations say; a non-atomic one commits statement by statement.
        if not migration.atomic:
            raise CommandError(
                f"{migration} is not atomic: a scale event may have left part of it "
                f"applied. Check the database by hand, then run aurora_migrate again.",
                returncode=EXIT_FAILED,
            )
        self._say(1, f"Next: {'unapply' if backwards else 'apply'} {migration}.")

    def _say(self, level: int, message: str) -> None:
        if self.verbosity >= level:
            self.stdout.write(message)
