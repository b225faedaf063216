"""ORCA's schema: migrating from empty, and adopting a database that ORCA's
own SQL made (tests/fixtures/orca_v5_schema.sql)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder

from orca_db_app.orca.adoption import SchemaMismatch, compare, describe_tables
from orca_db_app.orca.migrations._orca_v5_shape import ORCA_V5
from orca_db_app.orca.models import ORCA_MODELS
from tests.orca_helpers import scratch_database

ORCA_SQL = (Path(__file__).parent / "fixtures" / "orca_v5_schema.sql").read_text()
TABLES = sorted(ORCA_V5)


@pytest.fixture
def scratch(django_db_blocker):
    with scratch_database(django_db_blocker) as alias:
        yield alias


def migrate(alias: str, *args: str) -> None:
    call_command("migrate", "orca", *args, database=alias, verbosity=0)


def execute(alias: str, sql: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)


def rows(alias: str, sql: str) -> list[tuple]:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_every_model_is_in_the_orca_schema():
    tables = {m._meta.db_table for m in ORCA_MODELS}
    assert tables == {f'"orca"."{t}"' for t in TABLES}
    assert len(TABLES) == 15


def test_migrating_from_empty_makes_the_orca_tables(scratch):
    migrate(scratch)
    found = describe_tables(connections[scratch], "orca", TABLES)
    assert set(found) == set(TABLES)
    # Names included: the same database, constraint for constraint.
    assert compare(ORCA_V5, found, names=True) == []
    assert rows(scratch, "SELECT id, value FROM orca.recovery_status ORDER BY id") == [
        (1, "pending"),
        (2, "staged"),
        (3, "error"),
        (4, "success"),
    ]
    assert rows(scratch, "SELECT value FROM orca.storage_class ORDER BY id") == [
        ("GLACIER",),
        ("DEEP_ARCHIVE",),
    ]
    assert len(rows(scratch, "SELECT 1 FROM orca.reconcile_status")) == 5


def test_orca_sql_and_the_migrations_make_the_same_schema(django_db_blocker):
    with (
        scratch_database(django_db_blocker) as ours,
        scratch_database(django_db_blocker) as orcas,
    ):
        migrate(ours)
        execute(orcas, ORCA_SQL)
        mine = describe_tables(connections[ours], "orca", TABLES)
        theirs = describe_tables(connections[orcas], "orca", TABLES)
        assert compare(mine, theirs, names=True) == []


def test_an_orca_database_is_adopted_unchanged(scratch):
    execute(scratch, ORCA_SQL)
    execute(
        scratch,
        "INSERT INTO orca.reconcile_job (orca_archive_location, status_id, "
        "inventory_creation_time, start_time, last_update) "
        "VALUES ('orca-archive-bucket', 2, now(), now(), now())",
    )
    before = describe_tables(connections[scratch], "orca", TABLES)
    migrate(scratch)
    applied = MigrationRecorder(connections[scratch]).applied_migrations()
    assert ("orca", "0001_initial") in applied
    assert ("orca", "0002_lookup_data") in applied
    after = describe_tables(connections[scratch], "orca", TABLES)
    assert after == before
    assert compare(ORCA_V5, after, names=True) == []
    # Data and partitions stay; ORCA's sequence keeps counting.
    assert rows(scratch, "SELECT version_id FROM orca.schema_versions") == [(5,)]
    assert rows(scratch, "SELECT count(*) FROM orca.recovery_status") == [(4,)]
    assert rows(scratch, "SELECT to_regclass('orca.reconcile_s3_object_orca_archive_bucket')")[0][0]
    from orca_db_app.orca.models import ReconcileJob, ReconcileStatus

    job = ReconcileJob.objects.using(scratch).create(
        orca_archive_location="orca-archive-bucket",
        status_id=ReconcileStatus.STAGED,
        inventory_creation_time="2025-01-01T00:00Z",
        start_time="2025-01-01T00:00Z",
        last_update="2025-01-01T00:00Z",
    )
    assert job.pk == 2


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("ALTER TABLE orca.files ALTER COLUMN hash SET NOT NULL", "files.hash: is text NOT NULL"),
        (
            "ALTER TABLE orca.granules DROP CONSTRAINT unique_collection_granule_id",
            "granules: missing constraint UNIQUE (collection_id, cumulus_granule_id)",
        ),
        ("ALTER TABLE orca.providers ADD COLUMN extra int", "providers.extra: not expected"),
        (
            "ALTER TABLE orca.recovery_job ALTER COLUMN status_id TYPE integer",
            "recovery_job.status_id: is integer NOT NULL, expected smallint NOT NULL",
        ),
        (
            "ALTER TABLE orca.recovery_file DROP CONSTRAINT fk_recovery_file_recoverjob",
            "recovery_file: missing constraint FOREIGN KEY (job_id, collection_id, granule_id)",
        ),
        ("DROP TABLE orca.reconcile_orphan_report", "some ORCA tables exist (14 of 15)"),
    ],
)
def test_a_different_database_is_refused_with_the_differences(scratch, change, expected):
    execute(scratch, ORCA_SQL)
    execute(scratch, change)
    with pytest.raises(SchemaMismatch, match="cannot be adopted") as raised:
        migrate(scratch)
    assert expected in str(raised.value)
    applied = MigrationRecorder(connections[scratch]).applied_migrations()
    assert ("orca", "0001_initial") not in applied


def test_constraint_names_do_not_block_adoption(scratch):
    execute(scratch, ORCA_SQL)
    execute(scratch, "ALTER TABLE orca.files RENAME CONSTRAINT pk_files TO files_pkey")
    migrate(scratch)
    assert ("orca", "0001_initial") in MigrationRecorder(connections[scratch]).applied_migrations()


def test_plan_says_adopt_or_refuse(scratch):
    execute(scratch, ORCA_SQL)
    out = io.StringIO()
    call_command("aurora_migrate", "orca", database=scratch, plan=True, stdout=out)
    assert "-> adopt the existing tables of schema 'orca' (they match)" in out.getvalue()
    execute(scratch, "ALTER TABLE orca.files DROP COLUMN hash_type")
    out = io.StringIO()
    call_command("aurora_migrate", "orca", database=scratch, plan=True, stdout=out)
    assert "REFUSE" in out.getvalue()
    assert "files.hash_type: missing" in out.getvalue()


def test_a_lookup_row_that_differs_stops_the_data_migration(scratch):
    execute(scratch, ORCA_SQL)
    execute(scratch, "UPDATE orca.recovery_status SET value = 'queued' WHERE id = 1")
    with pytest.raises(RuntimeError, match="1='queued' \\(ORCA: 'pending'\\)"):
        migrate(scratch)


def test_unapplying_drops_the_schema(scratch):
    migrate(scratch)
    migrate(scratch, "zero")
    assert rows(scratch, "SELECT count(*) FROM pg_namespace WHERE nspname = 'orca'") == [(0,)]


def test_orca_db_app_alone_makes_no_orca_schema(scratch):
    """``INSTALLED_APPS = ["orca_db_app"]`` gives the retry events, not ORCA's
    tables (before, its migrations created the 15-table ``orca`` schema)."""
    call_command("migrate", "orca_db_app", database=scratch, verbosity=0)
    assert rows(scratch, "SELECT count(*) FROM pg_namespace WHERE nspname = 'orca'") == [(0,)]
    assert rows(scratch, "SELECT to_regclass('orca_db_app_retryevent') IS NOT NULL") == [(True,)]
