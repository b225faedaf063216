"""``manage.py aurora_prune_events``: delete retry events older than N days,
in batches (each batch its own short statement, so neither locks nor the
write-ahead log grow with the table).

Exit codes: 0 done (also when nothing was old enough), 1 bad arguments or
settings, 2 a database error stopped it (the batches before it stay deleted;
running it again is safe).
"""

from __future__ import annotations

import datetime

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.utils import timezone

from orca_db.statements import scrub_message
from orca_db_app.conf import event_retention_days, events_database
from orca_db_app.models import RetryEvent


class Command(BaseCommand):
    help = "Delete retry events older than --days days (or ORCA_DB_EVENT_RETENTION_DAYS)."

    def add_arguments(self, parser):
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
            "--database",
            help="The database holding the events (default: ORCA_DB_EVENTS_DATABASE, "
            "else 'default').",
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
        dry_run: bool,
        verbosity: int,
        **options,
    ) -> None:
        try:
            if days is None:
                days = event_retention_days()
            alias = database or events_database() or DEFAULT_DB_ALIAS
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from error
        if days is None:
            raise CommandError("Give --days or set ORCA_DB_EVENT_RETENTION_DAYS.")
        if days < 0:
            raise CommandError(f"--days must be 0 or more, got {days}.")
        if batch_size < 1:
            raise CommandError(f"--batch-size must be 1 or more, got {batch_size}.")
        if alias not in connections.settings:
            raise CommandError(f"Database {alias!r} does not exist.")

        cutoff = timezone.now() - datetime.timedelta(days=days)
        old = RetryEvent.objects.using(alias).filter(occurred_at__lt=cutoff)
        deleted = 0
        try:
            if dry_run:
                count = old.count()
                if verbosity >= 1:
                    self.stdout.write(
                        f"{count} retry event(s) older than {days} day(s) would be "
                        f"deleted from {alias!r}."
                    )
                return
            while True:
                batch = old.order_by("occurred_at").values("pk")[:batch_size]
                count, _ = RetryEvent.objects.using(alias).filter(pk__in=batch).delete()
                deleted += count
                if verbosity >= 2 and count:
                    self.stdout.write(f"Deleted a batch of {count}.")
                if count < batch_size:
                    break
        except DatabaseError as error:
            raise CommandError(
                f"Stopped by a database error after deleting {deleted} event(s) from "
                f"{alias!r}: {type(error).__name__}: {scrub_message(str(error))} "
                f"Running the command again is safe.",
                returncode=2,
            ) from error
        if verbosity >= 1:
            self.stdout.write(
                f"Deleted {deleted} retry event(s) older than {days} day(s) from {alias!r}."
            )
