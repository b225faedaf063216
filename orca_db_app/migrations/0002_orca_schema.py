"""ORCA's storage schema (version 5) in the PostgreSQL schema ``orca``.

On a database without the tables this creates them; on one where ORCA's own
SQL made them already, it checks they match the shape below, column by
column and constraint by constraint, and adopts them unchanged (or stops and
prints the differences). See docs/orca-schema.md.
"""

import django.db.models.deletion
from django.db import migrations, models

from orca_db_app.adoption import AdoptOrCreate, WithoutLikeIndexes
from orca_db_app.migrations._orca_v5_shape import ORCA_V5

PROTECT = django.db.models.deletion.PROTECT


def fk(to, column, related_name="+"):
    # The constraint itself is created by FINISH_SQL, under ORCA's name.
    return models.ForeignKey(
        db_column=column,
        db_constraint=False,
        db_index=False,
        on_delete=PROTECT,
        related_name=related_name,
        to=to,
    )


def lookup(name, table, plural):
    return migrations.CreateModel(
        name=name,
        fields=[
            ("id", models.SmallIntegerField(primary_key=True, serialize=False)),
            ("value", models.TextField()),
        ],
        options={
            "db_table": f'"orca"."{table}"',
            "verbose_name_plural": plural,
            "constraints": [
                models.UniqueConstraint(fields=("value",), name=f"unique_{table}_value")
            ],
        },
    )


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
    dependencies = [
        ("orca_db_app", "0001_initial"),
    ]

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
                migrations.CreateModel(
                    name="SchemaVersion",
                    fields=[
                        ("version_id", models.IntegerField(primary_key=True, serialize=False)),
                        ("description", models.TextField()),
                        ("install_date", models.DateTimeField()),
                        ("is_latest", models.BooleanField(db_default=False, default=False)),
                    ],
                    # Its partial unique index is made by FINISH_SQL.
                    options={"db_table": '"orca"."schema_versions"'},
                ),
                lookup("RecoveryStatus", "recovery_status", "recovery statuses"),
                migrations.CreateModel(
                    name="RecoveryJob",
                    fields=[
                        (
                            "pk",
                            models.CompositePrimaryKey(
                                "job_id",
                                "collection_id",
                                "granule_id",
                                blank=True,
                                editable=False,
                                primary_key=True,
                                serialize=False,
                            ),  # fmt: skip
                        ),
                        ("job_id", models.TextField()),
                        ("collection_id", models.TextField()),
                        ("granule_id", models.TextField()),
                        ("archive_destination", models.TextField()),
                        ("status", fk("orca_db_app.recoverystatus", "status_id")),
                        ("request_time", models.DateTimeField()),
                        ("completion_time", models.DateTimeField(null=True)),
                    ],
                    options={"db_table": '"orca"."recovery_job"'},
                ),
                migrations.CreateModel(
                    name="RecoveryFile",
                    fields=[
                        (
                            "pk",
                            models.CompositePrimaryKey(
                                "job_id",
                                "collection_id",
                                "granule_id",
                                "filename",
                                blank=True,
                                editable=False,
                                primary_key=True,
                                serialize=False,
                            ),  # fmt: skip
                        ),
                        ("job_id", models.TextField()),
                        ("collection_id", models.TextField()),
                        ("granule_id", models.TextField()),
                        ("filename", models.TextField()),
                        ("key_path", models.TextField()),
                        ("multipart_chunksize_mb", models.IntegerField(null=True)),
                        ("restore_destination", models.TextField()),
                        ("status", fk("orca_db_app.recoverystatus", "status_id")),
                        ("error_message", models.TextField(null=True)),
                        ("request_time", models.DateTimeField()),
                        ("last_update", models.DateTimeField()),
                        ("completion_time", models.DateTimeField(null=True)),
                        (
                            "job",
                            models.ForeignObject(
                                from_fields=("job_id", "collection_id", "granule_id"),
                                on_delete=django.db.models.deletion.DO_NOTHING,
                                related_name="files",
                                to="orca_db_app.recoveryjob",
                                to_fields=("job_id", "collection_id", "granule_id"),
                            ),
                        ),
                    ],
                    options={"db_table": '"orca"."recovery_file"'},
                ),
                migrations.CreateModel(
                    name="Provider",
                    fields=[
                        ("provider_id", models.TextField(primary_key=True, serialize=False)),
                        ("name", models.TextField(null=True)),
                    ],
                    options={"db_table": '"orca"."providers"'},
                ),
                migrations.CreateModel(
                    name="Collection",
                    fields=[
                        ("collection_id", models.TextField(primary_key=True, serialize=False)),
                        ("shortname", models.TextField()),
                        ("version", models.TextField()),
                    ],
                    options={"db_table": '"orca"."collections"'},
                ),
                migrations.CreateModel(
                    name="Granule",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        ("provider", fk("orca_db_app.provider", "provider_id")),
                        ("collection", fk("orca_db_app.collection", "collection_id")),
                        ("cumulus_granule_id", models.TextField()),
                        ("execution_id", models.TextField()),
                        ("ingest_time", models.DateTimeField()),
                        ("cumulus_create_time", models.DateTimeField()),
                        ("last_update", models.DateTimeField()),
                    ],
                    options={
                        "db_table": '"orca"."granules"',
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("collection", "cumulus_granule_id"),
                                name="unique_collection_granule_id",
                            )
                        ],
                    },
                ),
                lookup("StorageClass", "storage_class", "storage classes"),
                migrations.CreateModel(
                    name="File",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        ("granule", fk("orca_db_app.granule", "granule_id", "files")),
                        ("name", models.TextField()),
                        ("orca_archive_location", models.TextField()),
                        ("cumulus_archive_location", models.TextField()),
                        ("key_path", models.TextField()),
                        ("ingest_time", models.DateTimeField()),
                        ("etag", models.TextField()),
                        ("version", models.TextField()),
                        ("size_in_bytes", models.BigIntegerField()),
                        ("hash", models.TextField(null=True)),
                        ("hash_type", models.TextField(null=True)),
                        ("storage_class", fk("orca_db_app.storageclass", "storage_class_id")),
                    ],
                    options={
                        "db_table": '"orca"."files"',
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("orca_archive_location", "key_path"),
                                name="unique_orca_archive_location_key_path",
                            ),
                            models.UniqueConstraint(
                                fields=("cumulus_archive_location", "key_path"),
                                name="unique_cumulus_archive_location_key_path",
                            ),
                        ],
                    },
                ),
                lookup("ReconcileStatus", "reconcile_status", "reconcile statuses"),
                migrations.CreateModel(
                    name="ReconcileJob",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        ("orca_archive_location", models.TextField()),
                        ("status", fk("orca_db_app.reconcilestatus", "status_id")),
                        ("inventory_creation_time", models.DateTimeField()),
                        ("start_time", models.DateTimeField()),
                        ("last_update", models.DateTimeField()),
                        ("end_time", models.DateTimeField(null=True)),
                        ("error_message", models.TextField(null=True)),
                    ],
                    options={"db_table": '"orca"."reconcile_job"'},
                ),
                migrations.CreateModel(
                    name="ReconcileS3Object",
                    fields=[
                        (
                            "pk",
                            models.CompositePrimaryKey(
                                "orca_archive_location",
                                "key_path",
                                blank=True,
                                editable=False,
                                primary_key=True,
                                serialize=False,
                            ),  # fmt: skip
                        ),
                        ("job", fk("orca_db_app.reconcilejob", "job_id")),
                        ("orca_archive_location", models.TextField()),
                        ("key_path", models.TextField()),
                        ("etag", models.TextField()),
                        ("last_update", models.DateTimeField()),
                        ("size_in_bytes", models.BigIntegerField()),
                        ("storage_class", models.TextField()),
                        ("delete_marker", models.BooleanField(db_default=False, default=False)),
                    ],
                    # Created by FINISH_SQL: LIST-partitioned by bucket.
                    options={"db_table": '"orca"."reconcile_s3_object"', "managed": False},
                ),
                migrations.CreateModel(
                    name="ReconcileCatalogMismatchReport",
                    fields=[
                        (
                            "pk",
                            models.CompositePrimaryKey(
                                "job_id",
                                "collection_id",
                                "granule_id",
                                "key_path",
                                blank=True,
                                editable=False,
                                primary_key=True,
                                serialize=False,
                            ),  # fmt: skip
                        ),
                        ("job", fk("orca_db_app.reconcilejob", "job_id")),
                        ("collection_id", models.TextField()),
                        ("granule_id", models.TextField()),
                        ("filename", models.TextField()),
                        ("key_path", models.TextField()),
                        ("cumulus_archive_location", models.TextField()),
                        ("orca_etag", models.TextField()),
                        ("s3_etag", models.TextField()),
                        ("orca_last_update", models.DateTimeField()),
                        ("s3_last_update", models.DateTimeField()),
                        ("orca_size_in_bytes", models.BigIntegerField()),
                        ("s3_size_in_bytes", models.BigIntegerField()),
                        ("discrepancy_type", models.TextField()),
                        (
                            "orca_storage_class",
                            fk("orca_db_app.storageclass", "orca_storage_class_id"),
                        ),
                        ("s3_storage_class", models.TextField()),
                    ],
                    options={"db_table": '"orca"."reconcile_catalog_mismatch_report"'},
                ),
                migrations.CreateModel(
                    name="ReconcilePhantomReport",
                    fields=[
                        (
                            "pk",
                            models.CompositePrimaryKey(
                                "job_id",
                                "collection_id",
                                "granule_id",
                                "key_path",
                                blank=True,
                                editable=False,
                                primary_key=True,
                                serialize=False,
                            ),  # fmt: skip
                        ),
                        ("job", fk("orca_db_app.reconcilejob", "job_id")),
                        ("collection_id", models.TextField()),
                        ("granule_id", models.TextField()),
                        ("filename", models.TextField()),
                        ("key_path", models.TextField()),
                        ("orca_etag", models.TextField()),
                        ("orca_last_update", models.DateTimeField()),
                        ("orca_size", models.BigIntegerField()),
                        (
                            "orca_storage_class",
                            fk("orca_db_app.storageclass", "orca_storage_class_id"),
                        ),
                    ],
                    options={"db_table": '"orca"."reconcile_phantom_report"'},
                ),
                migrations.CreateModel(
                    name="ReconcileOrphanReport",
                    fields=[
                        (
                            "pk",
                            models.CompositePrimaryKey(
                                "job_id",
                                "key_path",
                                blank=True,
                                editable=False,
                                primary_key=True,
                                serialize=False,
                            ),  # fmt: skip
                        ),
                        ("job", fk("orca_db_app.reconcilejob", "job_id")),
                        ("key_path", models.TextField()),
                        ("etag", models.TextField()),
                        ("last_update", models.DateTimeField()),
                        ("size_in_bytes", models.BigIntegerField()),
                        ("storage_class", models.TextField()),
                    ],
                    options={"db_table": '"orca"."reconcile_orphan_report"'},
                ),
                WithoutLikeIndexes(['"orca"."providers"', '"orca"."collections"']),
                migrations.RunSQL(
                    FINISH_SQL,
                    # The rest goes with the tables.
                    reverse_sql='DROP TABLE IF EXISTS "orca"."reconcile_s3_object"',
                ),
            ],
        ),
    ]
