"""ORCA's storage schema (version 5, as docs/orca-schema.md describes it):
the recovery tables, the catalog and the internal reconciliation tables,
all in the PostgreSQL schema ``orca``.

Choices that keep a database made by these models identical to one made by
ORCA's own SQL (so either can be adopted, see docs/orca-schema.md):

- Tables are named ``"orca"."<table>"``: Django quotes names that are not
  quoted already, so the name reaches SQL schema-qualified.
- Every foreign key is ``db_constraint=False`` and ``db_index=False`` here;
  migration 0001 adds the constraints itself, under ORCA's names and with
  ORCA's semantics (not deferrable), and ORCA indexes none of them.
- Unique constraints carry ORCA's names (PostgreSQL folds them to lower case).
- ``reconcile_s3_object`` is LIST-partitioned by archive location, which
  Django cannot create: the model is unmanaged and migration 0001 creates the
  table; :func:`orca_db_app.orca.services.add_reconcile_partition` adds a
  partition per bucket.
"""

from __future__ import annotations

from django.db import models

SCHEMA = "orca"


def orca_table(name: str) -> str:
    """``"orca"."name"``: a schema-qualified table name Django passes through."""
    return f'"{SCHEMA}"."{name}"'


def _fk(to, column: str, **kwargs):
    """A foreign key whose constraint migration 0001 creates (see above)."""
    return models.ForeignKey(
        to,
        on_delete=models.PROTECT,
        db_column=column,
        db_constraint=False,
        db_index=False,
        related_name="+",
        **kwargs,
    )


# ----- general ----------------------------------------------------------------


class SchemaVersion(models.Model):
    version_id = models.IntegerField(primary_key=True)
    description = models.TextField()
    install_date = models.DateTimeField()
    is_latest = models.BooleanField(default=False, db_default=False)

    class Meta:
        db_table = orca_table("schema_versions")
        # At most one row is the latest: a partial unique index, made by
        # migration 0001 in ORCA's own words (Django's would differ in the
        # catalogs), so not declared here.

    def __str__(self) -> str:
        return f"ORCA schema v{self.version_id}"


# ----- lookups ----------------------------------------------------------------


class _Lookup(models.Model):
    id = models.SmallIntegerField(primary_key=True)
    value = models.TextField()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.value


class RecoveryStatus(_Lookup):
    PENDING, STAGED, ERROR, SUCCESS = 1, 2, 3, 4
    ROWS = {PENDING: "pending", STAGED: "staged", ERROR: "error", SUCCESS: "success"}
    DONE = (ERROR, SUCCESS)

    class Meta:
        db_table = orca_table("recovery_status")
        verbose_name_plural = "recovery statuses"
        constraints = [
            models.UniqueConstraint(fields=["value"], name="unique_recovery_status_value")
        ]


class StorageClass(_Lookup):
    GLACIER, DEEP_ARCHIVE = 1, 2
    ROWS = {GLACIER: "GLACIER", DEEP_ARCHIVE: "DEEP_ARCHIVE"}

    class Meta:
        db_table = orca_table("storage_class")
        verbose_name_plural = "storage classes"
        constraints = [models.UniqueConstraint(fields=["value"], name="unique_storage_class_value")]


class ReconcileStatus(_Lookup):
    GETTING_S3_LIST, STAGED, GENERATING_REPORTS, ERROR, SUCCESS = 1, 2, 3, 4, 5
    ROWS = {
        GETTING_S3_LIST: "getting S3 list",
        STAGED: "staged",
        GENERATING_REPORTS: "generating reports",
        ERROR: "error",
        SUCCESS: "success",
    }

    class Meta:
        db_table = orca_table("reconcile_status")
        verbose_name_plural = "reconcile statuses"
        constraints = [
            models.UniqueConstraint(fields=["value"], name="unique_reconcile_status_value")
        ]


# ----- recovery -----------------------------------------------------------------


class RecoveryJob(models.Model):
    """One granule of a recovery request (ORCA's job is per granule)."""

    pk = models.CompositePrimaryKey("job_id", "collection_id", "granule_id")
    job_id = models.TextField()
    collection_id = models.TextField()
    granule_id = models.TextField()
    archive_destination = models.TextField()
    status = _fk(RecoveryStatus, "status_id")
    request_time = models.DateTimeField()
    completion_time = models.DateTimeField(null=True)

    class Meta:
        db_table = orca_table("recovery_job")

    def __str__(self) -> str:
        return f"{self.job_id} {self.collection_id} {self.granule_id}"


class RecoveryFile(models.Model):
    pk = models.CompositePrimaryKey("job_id", "collection_id", "granule_id", "filename")
    job_id = models.TextField()
    collection_id = models.TextField()
    granule_id = models.TextField()
    filename = models.TextField()
    key_path = models.TextField()
    multipart_chunksize_mb = models.IntegerField(null=True)
    restore_destination = models.TextField()
    status = _fk(RecoveryStatus, "status_id")
    error_message = models.TextField(null=True)  # noqa: DJ001 (ORCA's column is nullable)
    request_time = models.DateTimeField()
    last_update = models.DateTimeField()
    completion_time = models.DateTimeField(null=True)
    # The composite foreign key to the job, for the ORM; its constraint is
    # created by migration 0001 (a ForeignObject has no column of its own).
    job = models.ForeignObject(
        RecoveryJob,
        on_delete=models.DO_NOTHING,
        from_fields=("job_id", "collection_id", "granule_id"),
        to_fields=("job_id", "collection_id", "granule_id"),
        related_name="files",
    )

    class Meta:
        db_table = orca_table("recovery_file")

    def __str__(self) -> str:
        return f"{self.job_id} {self.granule_id} {self.filename}"


# ----- catalog ------------------------------------------------------------------


class Provider(models.Model):
    provider_id = models.TextField(primary_key=True)
    name = models.TextField(null=True)  # noqa: DJ001 (ORCA's column is nullable)

    class Meta:
        db_table = orca_table("providers")

    def __str__(self) -> str:
        return self.provider_id


class Collection(models.Model):
    collection_id = models.TextField(primary_key=True)
    shortname = models.TextField()
    version = models.TextField()

    class Meta:
        db_table = orca_table("collections")

    def __str__(self) -> str:
        return self.collection_id


class Granule(models.Model):
    id = models.BigAutoField(primary_key=True)
    provider = _fk(Provider, "provider_id")
    collection = _fk(Collection, "collection_id")
    cumulus_granule_id = models.TextField()
    execution_id = models.TextField()
    ingest_time = models.DateTimeField()
    cumulus_create_time = models.DateTimeField()
    last_update = models.DateTimeField()

    class Meta:
        db_table = orca_table("granules")
        constraints = [
            models.UniqueConstraint(
                fields=["collection", "cumulus_granule_id"],
                name="unique_collection_granule_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.collection_id} {self.cumulus_granule_id}"


class File(models.Model):
    id = models.BigAutoField(primary_key=True)
    granule = models.ForeignKey(
        Granule,
        on_delete=models.PROTECT,
        db_column="granule_id",
        db_constraint=False,
        db_index=False,
        related_name="files",
    )
    name = models.TextField()
    orca_archive_location = models.TextField()
    cumulus_archive_location = models.TextField()
    key_path = models.TextField()
    ingest_time = models.DateTimeField()
    etag = models.TextField()
    version = models.TextField()
    size_in_bytes = models.BigIntegerField()
    hash = models.TextField(null=True)  # noqa: DJ001 (ORCA's column is nullable)
    hash_type = models.TextField(null=True)  # noqa: DJ001 (ORCA's column is nullable)
    storage_class = _fk(StorageClass, "storage_class_id")

    class Meta:
        db_table = orca_table("files")
        constraints = [
            models.UniqueConstraint(
                fields=["orca_archive_location", "key_path"],
                name="unique_orca_archive_location_key_path",
            ),
            models.UniqueConstraint(
                fields=["cumulus_archive_location", "key_path"],
                name="unique_cumulus_archive_location_key_path",
            ),
        ]

    def __str__(self) -> str:
        return self.name


# ----- internal reconciliation --------------------------------------------------


class ReconcileJob(models.Model):
    id = models.BigAutoField(primary_key=True)
    orca_archive_location = models.TextField()
    status = _fk(ReconcileStatus, "status_id")
    inventory_creation_time = models.DateTimeField()
    start_time = models.DateTimeField()
    last_update = models.DateTimeField()
    end_time = models.DateTimeField(null=True)
    error_message = models.TextField(null=True)  # noqa: DJ001 (ORCA's column is nullable)

    class Meta:
        db_table = orca_table("reconcile_job")

    def __str__(self) -> str:
        return f"reconcile job {self.pk} ({self.orca_archive_location})"


class ReconcileS3Object(models.Model):
    """One object of an S3 inventory listing. The table is partitioned by
    bucket; each partition's primary key is ``key_path``, so the pair is
    unique across the table."""

    pk = models.CompositePrimaryKey("orca_archive_location", "key_path")
    job = _fk(ReconcileJob, "job_id")
    orca_archive_location = models.TextField()
    key_path = models.TextField()
    etag = models.TextField()
    last_update = models.DateTimeField()
    size_in_bytes = models.BigIntegerField()
    storage_class = models.TextField()
    delete_marker = models.BooleanField(default=False, db_default=False)

    class Meta:
        db_table = orca_table("reconcile_s3_object")
        managed = False

    def __str__(self) -> str:
        return f"{self.orca_archive_location}/{self.key_path}"


class ReconcileCatalogMismatchReport(models.Model):  # noqa: DJ008
    pk = models.CompositePrimaryKey("job_id", "collection_id", "granule_id", "key_path")
    job = _fk(ReconcileJob, "job_id")
    collection_id = models.TextField()
    granule_id = models.TextField()
    filename = models.TextField()
    key_path = models.TextField()
    cumulus_archive_location = models.TextField()
    orca_etag = models.TextField()
    s3_etag = models.TextField()
    orca_last_update = models.DateTimeField()
    s3_last_update = models.DateTimeField()
    orca_size_in_bytes = models.BigIntegerField()
    s3_size_in_bytes = models.BigIntegerField()
    discrepancy_type = models.TextField()
    orca_storage_class = _fk(StorageClass, "orca_storage_class_id")
    s3_storage_class = models.TextField()

    class Meta:
        db_table = orca_table("reconcile_catalog_mismatch_report")


class ReconcilePhantomReport(models.Model):  # noqa: DJ008
    """A file the catalog knows that S3 does not have."""

    pk = models.CompositePrimaryKey("job_id", "collection_id", "granule_id", "key_path")
    job = _fk(ReconcileJob, "job_id")
    collection_id = models.TextField()
    granule_id = models.TextField()
    filename = models.TextField()
    key_path = models.TextField()
    orca_etag = models.TextField()
    orca_last_update = models.DateTimeField()
    orca_size = models.BigIntegerField()
    orca_storage_class = _fk(StorageClass, "orca_storage_class_id")

    class Meta:
        db_table = orca_table("reconcile_phantom_report")


class ReconcileOrphanReport(models.Model):  # noqa: DJ008
    """An S3 object the catalog does not know."""

    pk = models.CompositePrimaryKey("job_id", "key_path")
    job = _fk(ReconcileJob, "job_id")
    key_path = models.TextField()
    etag = models.TextField()
    last_update = models.DateTimeField()
    size_in_bytes = models.BigIntegerField()
    storage_class = models.TextField()

    class Meta:
        db_table = orca_table("reconcile_orphan_report")


ORCA_MODELS = [
    SchemaVersion,
    RecoveryStatus,
    RecoveryJob,
    RecoveryFile,
    Provider,
    Collection,
    Granule,
    StorageClass,
    File,
    ReconcileStatus,
    ReconcileJob,
    ReconcileS3Object,
    ReconcileCatalogMismatchReport,
    ReconcilePhantomReport,
    ReconcileOrphanReport,
]
