"""ORCA's storage schema (version 5) in the PostgreSQL schema ``orca``.

On a database without the tables this creates them; on one where they exist
already (made by ORCA's own SQL, or by ``orca_db_app`` migration 0002 before
ORCA's models moved to this app) it checks they match the shape below,
column by column and constraint by constraint, and adopts them unchanged (or
stops and prints the differences). See docs/orca-schema.md.
"""

from django.db import migrations

from orca_db_app.orca.adoption import AdoptOrCreate, WithoutLikeIndexes
from orca_db_app.orca.migrations._orca_v5_models import create_models
from orca_db_app.orca.migrations._orca_v5_shape import ORCA_V5

# The partitioned table (Django cannot create one) and what the model
# operations leave to SQL: ORCA's primary key names, its foreign keys (not
# deferrable, named as ORCA names them), its partial unique index and its
# bigserial ids (a sequence owned by the column, where Django would make an
# identity column).
PRIMARY_KEY_TABLES = [
    "schema_versions", "recovery_status", "recovery_job", "recovery_file", "providers",
    "collections", "granules", "storage_class", "files", "reconcile_status",
    "reconcile_job", "reconcile_catalog_mismatch_report", "reconcile_phantom_report",
    "reconcile_orphan_report",
]  # fmt: skip
FOREIGN_KEYS = [
    # (table, constraint, columns, referenced table, referenced columns)
    ("recovery_job", "fk_recovery_job_status", "status_id", "recovery_status", "id"),
    ("recovery_file", "fk_recovery_file_status", "status_id", "recovery_status", "id"),
    (
        "recovery_file", "fk_recovery_file_recoverjob", "job_id, collection_id, granule_id",
        "recovery_job", "job_id, collection_id, granule_id",
    ),
    ("granules", "fk_provider_granule", "provider_id", "providers", "provider_id"),
    ("granules", "fk_collection_granule", "collection_id", "collections", "collection_id"),
    ("files", "fk_granule_file", "granule_id", "granules", "id"),
    # (sic: ORCA's name for the files -> storage_class key)
    ("files", "fk_recovery_file_storage_class", "storage_class_id", "storage_class", "id"),
    ("reconcile_job", "fk_reconcile_job_status", "status_id", "reconcile_status", "id"),
    (
        "reconcile_catalog_mismatch_report", "fk_reconcile_job_mismatch_report", "job_id",
        "reconcile_job", "id",
    ),
    (
        "reconcile_catalog_mismatch_report", "fk_mismatch_orca_storage_class",
        "orca_storage_class_id", "storage_class", "id",
    ),
    (
        "reconcile_phantom_report", "fk_reconcile_job_phantom_report", "job_id",
        "reconcile_job", "id",
    ),
    (
        "reconcile_phantom_report", "fk_phantom_orca_storage_class", "orca_storage_class_id",
        "storage_class", "id",
    ),
    (
        "reconcile_orphan_report", "fk_reconcile_job_orphan_report", "job_id",
        "reconcile_job", "id",
    ),
]  # fmt: skip
BIGSERIAL_TABLES = ["granules", "files", "reconcile_job"]

FINISH_SQL = [
    *(
        f'ALTER TABLE "orca"."{t}" RENAME CONSTRAINT "{t}_pkey" TO "pk_{t}"'
        for t in PRIMARY_KEY_TABLES
    ),
    *(
        f'ALTER TABLE "orca"."{t}" ADD CONSTRAINT "{name}" FOREIGN KEY ({cols}) '
        f'REFERENCES "orca"."{ref}" ({ref_cols})'
        for t, name, cols, ref, ref_cols in FOREIGN_KEYS
    ),
    *(
        f'ALTER TABLE "orca"."{t}" ALTER COLUMN "id" DROP IDENTITY; '
        f'CREATE SEQUENCE "orca"."{t}_id_seq" OWNED BY "orca"."{t}"."id"; '
        f'ALTER TABLE "orca"."{t}" ALTER COLUMN "id" '
        f'SET DEFAULT nextval(\'"orca"."{t}_id_seq"\'::regclass)'
        for t in BIGSERIAL_TABLES
    ),
    # At most one latest version. (Django would write the condition as
    # "WHERE is_latest", which the catalogs keep apart from ORCA's.)
    'CREATE UNIQUE INDEX "idx_uniq_schema_versions_latest" '
    'ON "orca"."schema_versions" ("is_latest") WHERE "is_latest" = true',
    """
    CREATE TABLE "orca"."reconcile_s3_object" (
        "job_id" bigint NOT NULL,
        "orca_archive_location" text NOT NULL,
        "key_path" text NOT NULL,
        "etag" text NOT NULL,
        "last_update" timestamp with time zone NOT NULL,
        "size_in_bytes" bigint NOT NULL,
        "storage_class" text NOT NULL,
        "delete_marker" boolean NOT NULL DEFAULT false
    ) PARTITION BY LIST ("orca_archive_location")
    """,
]


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        AdoptOrCreate(
            schema="orca",
            expected=ORCA_V5,
            operations=[
                migrations.RunSQL(
                    'CREATE SCHEMA IF NOT EXISTS "orca"',
                    # Fails (keeping everything) if anything else lives there.
                    reverse_sql='DROP SCHEMA IF EXISTS "orca" RESTRICT',
                ),
                *create_models("orca"),
                WithoutLikeIndexes(['"orca"."providers"', '"orca"."collections"']),
                migrations.RunSQL(
                    FINISH_SQL,
                    # The rest goes with the tables.
                    reverse_sql='DROP TABLE IF EXISTS "orca"."reconcile_s3_object"',
                ),
            ],
        ),
    ]
