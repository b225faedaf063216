"""A database migrated before ORCA's models moved from ``orca_db_app`` to the
app ``orca_db_app.orca`` upgrades in place.

The plan: ``orca_db_app`` keeps 0001 (the retry events); its 0002 and 0003,
which created ORCA's tables and rows, now change only the migration state (a
fresh database gets no ``orca`` schema from ``orca_db_app``), and 0004 hands
the models over (``SeparateDatabaseAndState``, state only). The ``orca``
app's 0001 creates the tables on a database without them and adopts them,
unchanged, on one that has them (``AdoptOrCreate``), as it adopts a database
made by ORCA's own SQL; its 0002 adds the lookup rows that are missing.

The test migrates a new database with the migrations as they were
(tests/fixtures/migrations_before_orca_app), stores rows, then migrates it
with today's: nothing is lost or changed, a second ``migrate`` has nothing to
do, and ``makemigrations --check`` finds no change.
"""

from __future__ import annotations

import io

from django.core.management import call_command
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.test import override_settings

from orca_db_app.orca.adoption import describe_tables
from orca_db_app.orca.migrations._orca_v5_shape import ORCA_V5
from tests.orca_helpers import scratch_database

BEFORE = {"orca_db_app": "tests.fixtures.migrations_before_orca_app"}
TABLES = sorted(ORCA_V5)

ROWS = [
    "INSERT INTO orca_db_app_retryevent (occurred_at, database, phase, error_type, message, "
    "attempts, outcome, elapsed_ms, statement, host) VALUES (now(), 'default', 'execute', "
    "'AdminShutdown', 'terminating connection', 2, 'recovered', 41.5, 'SELECT ?', 'web-1')",
    "INSERT INTO orca.recovery_job VALUES ('job-1', 'C1', 'G1', 'archive', 1, now(), NULL)",
    "INSERT INTO orca.recovery_file (job_id, collection_id, granule_id, filename, key_path, "
    "restore_destination, status_id, request_time, last_update) "
    "VALUES ('job-1', 'C1', 'G1', 'f.h5', 'k/f.h5', 'restore', 1, now(), now())",
    "INSERT INTO orca.providers VALUES ('P1', 'provider')",
    "INSERT INTO orca.collections VALUES ('C1', 'MOD09GQ', '061')",
    "INSERT INTO orca.granules (provider_id, collection_id, cumulus_granule_id, execution_id, "
    "ingest_time, cumulus_create_time, last_update) "
    "VALUES ('P1', 'C1', 'G1', 'e1', now(), now(), now())",
]

COUNTS = {
    "orca_db_app_retryevent": 1,
    "orca.recovery_job": 1,
    "orca.recovery_file": 1,
    "orca.granules": 1,
    "orca.recovery_status": 4,
    "orca.storage_class": 2,
    "orca.reconcile_status": 5,
}


def counts(alias: str) -> dict[str, int]:
    with connections[alias].cursor() as cursor:
        found = {}
        for table in COUNTS:
            cursor.execute(f"SELECT count(*) FROM {table}")
            found[table] = cursor.fetchone()[0]
        return found


def test_a_database_migrated_before_the_orca_app_upgrades_in_place(
    django_db_setup, django_db_blocker
):
    with scratch_database(django_db_blocker) as alias:
        # Yesterday: orca_db_app 0001-0003 made the events table and ORCA's.
        with override_settings(MIGRATION_MODULES=BEFORE):
            call_command("migrate", "orca_db_app", database=alias, verbosity=0)
        with connections[alias].cursor() as cursor:
            for sql in ROWS:
                cursor.execute(sql)
        before = describe_tables(connections[alias], "orca", TABLES)
        assert set(before) == set(TABLES)
        assert counts(alias) == COUNTS

        # What the upgrade will do, beforehand: adopt, not create.
        out = io.StringIO()
        call_command("aurora_migrate", database=alias, plan=True, stdout=out)
        assert "Apply orca_db_app.0004_orca_models_moved" in out.getvalue()
        assert "-> adopt the existing tables of schema 'orca' (they match)" in out.getvalue()

        # Today.
        call_command("migrate", database=alias, verbosity=0)
        applied = MigrationRecorder(connections[alias]).applied_migrations()
        for key in [
            ("orca_db_app", "0004_orca_models_moved"),
            ("orca", "0001_initial"),
            ("orca", "0002_lookup_data"),
        ]:
            assert key in applied
        # Not a column, constraint or row changed.
        assert describe_tables(connections[alias], "orca", TABLES) == before
        assert counts(alias) == COUNTS

        # The models read the adopted tables.
        from orca_db_app.models import RetryEvent
        from orca_db_app.orca.models import RecoveryJob

        job = RecoveryJob.objects.using(alias).get(job_id="job-1")
        assert [f.filename for f in job.files.all()] == ["f.h5"]
        assert RetryEvent.objects.using(alias).get().elapsed_ms == 41.5

        # Nothing left to do.
        executor = MigrationExecutor(connections[alias])
        assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []
        out = io.StringIO()
        call_command("migrate", database=alias, stdout=out)
        assert "No migrations to apply." in out.getvalue()

        # The models and the migration files agree (exits 1 otherwise).
        call_command("makemigrations", "--check", "--dry-run", verbosity=0)
