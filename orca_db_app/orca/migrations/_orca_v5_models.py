"""The models of ORCA's storage schema (version 5) as migration operations,
for an app label: ``orca`` creates them (``0001_initial``); ``orca_db_app``
held them before they moved to their own app, and its migration 0002 still
describes them, for the state only. Frozen with those migrations: change the
schema in a new migration, never here.
"""

import django.db.models.deletion
from django.db import migrations, models

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


def create_models(app_label: str) -> list:
    """The ``CreateModel`` operations of ORCA's tables, their relations
    pointing at ``app_label``'s models."""
    return [
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
                ("status", fk(f"{app_label}.recoverystatus", "status_id")),
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
                ("status", fk(f"{app_label}.recoverystatus", "status_id")),
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
                        to=f"{app_label}.recoveryjob",
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
                ("provider", fk(f"{app_label}.provider", "provider_id")),
                ("collection", fk(f"{app_label}.collection", "collection_id")),
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
                ("granule", fk(f"{app_label}.granule", "granule_id", "files")),
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
                ("storage_class", fk(f"{app_label}.storageclass", "storage_class_id")),
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
                ("status", fk(f"{app_label}.reconcilestatus", "status_id")),
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
                ("job", fk(f"{app_label}.reconcilejob", "job_id")),
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
                ("job", fk(f"{app_label}.reconcilejob", "job_id")),
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
                    fk(f"{app_label}.storageclass", "orca_storage_class_id"),
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
                ("job", fk(f"{app_label}.reconcilejob", "job_id")),
                ("collection_id", models.TextField()),
                ("granule_id", models.TextField()),
                ("filename", models.TextField()),
                ("key_path", models.TextField()),
                ("orca_etag", models.TextField()),
                ("orca_last_update", models.DateTimeField()),
                ("orca_size", models.BigIntegerField()),
                (
                    "orca_storage_class",
                    fk(f"{app_label}.storageclass", "orca_storage_class_id"),
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
                ("job", fk(f"{app_label}.reconcilejob", "job_id")),
                ("key_path", models.TextField()),
                ("etag", models.TextField()),
                ("last_update", models.DateTimeField()),
                ("size_in_bytes", models.BigIntegerField()),
                ("storage_class", models.TextField()),
            ],
            options={"db_table": '"orca"."reconcile_orphan_report"'},
        ),
    ]
