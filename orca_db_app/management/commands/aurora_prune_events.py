"""``manage.py aurora_prune_events``: delete retry events older than N days,
in batches (each batch its own short statement, so neither locks nor the
write-ahead log grow with the table).

Exit codes (docs/commands.md#exit-codes): 0 done (also when nothing was old
enough), 1 the database did not answer within --timeout or an error stopped
it (the batches before it stay deleted; running it again is safe), 2 bad
arguments or settings.
"""

from __future__ import annotations

import datetime

from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError
from django.utils import timezone

from orca_db.retry import deadline_cap
from orca_db_app.conf import event_retention_days, events_database
from orca_db_app.management.base import DatabaseCommand, describe_error, exit_code_of, usage_error
from orca_db_app.models import RetryEvent


class Command(DatabaseCommand):
    help = "Delete retry events older than --days days (or ORCA_DB_EVENT_RETENTION_DAYS)."
    database_help = (
        "The database holding the events (default: ORCA_DB_EVENTS_DATABASE, else 'default')."
    )
    default_database = None
    # The events may live on any database Django supports.
    requires_postgresql = False
    offers_json = False
    default_timeout = 60.0

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--days",
            type=int,
            help="Delete events that occurred more than this many days ago "
            "(default: the ORCA_DB_EVENT_RETENTION_DAYS setting).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=1000,
            help="Rows deleted per statement (default: 1000).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count the events that would be deleted; delete nothing.",
        )

    def handle(
        self,
        *args,
        days: int | None,
        batch_size: int,
        database: str | None,
        timeout: float,
        dry_run: bool,
        verbosity: int,
        **options,
    ) -> None:
        if days is None:
            days = event_retention_days()
        alias = self.database_alias(database or events_database() or DEFAULT_DB_ALIAS)
        if days is None:
            raise usage_error("Give --days or set ORCA_DB_EVENT_RETENTION_DAYS.")
        if days < 0:
            raise usage_error(f"--days must be 0 or more, got {days}.")
        if batch_size < 1:
            raise usage_error(f"--batch-size must be 1 or more, got {batch_size}.")
        self.connect(alias, timeout)

        cutoff = timezone.now() - datetime.timedelta(days=days)
        old = RetryEvent.objects.using(alias).filter(occurred_at__lt=cutoff)
        deleted = 0
        try:
            if dry_run:
                with deadline_cap(timeout):
                    count = old.count()
                if verbosity >= 1:
                    self.stdout.write(
                        f"{count} retry event(s) older than {days} day(s) would be "
                        f"deleted from {alias!r}."
                    )
                return
            while True:
                batch = old.order_by("occurred_at").values("pk")[:batch_size]
                # Each batch may wait for the database as long as the start did.
                with deadline_cap(timeout):
                    count, _ = RetryEvent.objects.using(alias).filter(pk__in=batch).delete()
                deleted += count
                if verbosity >= 2 and count:
                    self.stdout.write(f"Deleted a batch of {count}.")
                if count < batch_size:
                    break
        except DatabaseError as error:
            raise CommandError(
                f"Stopped by a database error after deleting {deleted} event(s) from "
                f"{alias!r}: {describe_error(error)}. Running the command again is safe.",
                returncode=exit_code_of(error),
            ) from error
        if verbosity >= 1:
            self.stdout.write(
                f"Deleted {deleted} retry event(s) older than {days} day(s) from {alias!r}."
            )
