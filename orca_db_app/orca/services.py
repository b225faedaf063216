"""The operations ORCA performs on its tables, each one transaction that
survives scale events (``orca_db.retry_atomic``: a transaction a scale event
rolled back runs again as a whole, a COMMIT lost in flight is resolved).

Every function may therefore run its body more than once; each body only
reads and writes the database, so a re-run is the same transaction again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connections
from django.db.models import Count, Q
from django.utils import timezone

from orca_db.transaction import retry_atomic

from .models import (
    SCHEMA,
    Collection,
    File,
    Granule,
    Provider,
    ReconcileJob,
    ReconcileS3Object,
    ReconcileStatus,
    RecoveryFile,
    RecoveryJob,
    RecoveryStatus,
)

# ----- recovery -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FileRequest:
    """One file of a granule to restore."""

    filename: str
    key_path: str
    restore_destination: str
    multipart_chunksize_mb: int | None = None


def create_recovery_job(
    job_id: str,
    collection_id: str,
    granule_id: str,
    archive_destination: str,
    files: Sequence[FileRequest],
    *,
    request_time: datetime | None = None,
    using: str | None = None,
) -> RecoveryJob:
    """Record a granule's recovery request and its files, all pending: the
    job and every file, or nothing."""
    if not files:
        raise ValueError("A recovery job needs at least one file.")
    when = request_time or timezone.now()

    def create() -> RecoveryJob:
        job = RecoveryJob.objects.using(using).create(
            job_id=job_id,
            collection_id=collection_id,
            granule_id=granule_id,
            archive_destination=archive_destination,
            status_id=RecoveryStatus.PENDING,
            request_time=when,
        )
        RecoveryFile.objects.using(using).bulk_create(
            RecoveryFile(
                job_id=job_id,
                collection_id=collection_id,
                granule_id=granule_id,
                filename=f.filename,
                key_path=f.key_path,
                restore_destination=f.restore_destination,
                multipart_chunksize_mb=f.multipart_chunksize_mb,
                status_id=RecoveryStatus.PENDING,
                request_time=when,
                last_update=when,
            )
            for f in files
        )
        return job

    return retry_atomic(create, using=using)()


def update_file_status(
    job_id: str,
    collection_id: str,
    granule_id: str,
    filename: str,
    status: int,
    *,
    error_message: str | None = None,
    using: str | None = None,
) -> bool:
    """Set a file's status (a ``RecoveryStatus`` id) and, in the same
    transaction, complete its job if every file is now done. Returns whether
    the job is complete. Setting a status twice is harmless."""
    if status not in RecoveryStatus.ROWS:
        raise ValueError(f"Unknown recovery status {status!r}.")
    if status == RecoveryStatus.ERROR and not error_message:
        raise ValueError("A file in error needs an error_message.")

    def update() -> bool:
        now = timezone.now()
        done = status in RecoveryStatus.DONE
        updated = (
            RecoveryFile.objects.using(using)
            .filter(
                job_id=job_id, collection_id=collection_id, granule_id=granule_id, filename=filename
            )
            .update(
                status_id=status,
                error_message=error_message,
                last_update=now,
                completion_time=now if done else None,
            )
        )
        if not updated:
            raise RecoveryFile.DoesNotExist(
                f"No file {filename!r} in job {job_id!r} ({collection_id}, {granule_id})."
            )
        return _complete_if_done(job_id, collection_id, granule_id, using)

    return retry_atomic(update, using=using)()


def complete_job_if_done(
    job_id: str, collection_id: str, granule_id: str, *, using: str | None = None
) -> bool:
    """Mark a job complete once every file is done (success or error): the
    job's status becomes error if any file failed, else success. Returns
    whether the job is complete."""
    return retry_atomic(_complete_if_done, job_id, collection_id, granule_id, using, using=using)


def _complete_if_done(job_id: str, collection_id: str, granule_id: str, using) -> bool:
    # The job row is locked first, so two files finishing at once cannot
    # both see the other still running and leave the job open.
    job = (
        RecoveryJob.objects.using(using)
        .select_for_update()
        .get(job_id=job_id, collection_id=collection_id, granule_id=granule_id)
    )
    if job.completion_time is not None:
        return True
    counts = (
        RecoveryFile.objects.using(using)
        .filter(job_id=job_id, collection_id=collection_id, granule_id=granule_id)
        .aggregate(
            open=Count("pk", filter=~Q(status_id__in=RecoveryStatus.DONE)),
            failed=Count("pk", filter=Q(status_id=RecoveryStatus.ERROR)),
        )
    )
    if counts["open"]:
        return False
    job.status_id = RecoveryStatus.ERROR if counts["failed"] else RecoveryStatus.SUCCESS
    job.completion_time = timezone.now()
    job.save(using=using, update_fields=["status", "completion_time"])
    return True


def job_status(job_id: str, *, using: str | None = None) -> list[dict[str, Any]]:
    """Every granule of a recovery request with its files, as ORCA's status
    API reports them (read in one transaction: one consistent snapshot)."""

    def read() -> list[dict[str, Any]]:
        granules = []
        jobs = RecoveryJob.objects.using(using).filter(job_id=job_id).select_related("status")
        files = (
            RecoveryFile.objects.using(using)
            .filter(job_id=job_id)
            .select_related("status")
            .order_by("granule_id", "filename")
        )
        by_granule: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for f in files:
            by_granule.setdefault((f.collection_id, f.granule_id), []).append(
                {
                    "filename": f.filename,
                    "key_path": f.key_path,
                    "restore_destination": f.restore_destination,
                    "status": f.status.value,
                    "error_message": f.error_message,
                    "request_time": f.request_time,
                    "last_update": f.last_update,
                    "completion_time": f.completion_time,
                }
            )
        for job in jobs.order_by("collection_id", "granule_id"):
            granules.append(
                {
                    "job_id": job.job_id,
                    "collection_id": job.collection_id,
                    "granule_id": job.granule_id,
                    "status": job.status.value,
                    "request_time": job.request_time,
                    "completion_time": job.completion_time,
                    "files": by_granule.get((job.collection_id, job.granule_id), []),
                }
            )
        return granules

    return retry_atomic(read, using=using)()


# ----- catalog ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CatalogFile:
    """One file of an archived granule, as Cumulus reports it."""

    name: str
    orca_archive_location: str
    cumulus_archive_location: str
    key_path: str
    etag: str
    version: str
    size_in_bytes: int
    hash: str | None = None
    hash_type: str | None = None
    storage_class_id: int = 1  # StorageClass.GLACIER


def ingest_granule(
    *,
    provider_id: str,
    collection_id: str,
    shortname: str,
    version: str,
    cumulus_granule_id: str,
    execution_id: str,
    cumulus_create_time: datetime,
    files: Sequence[CatalogFile],
    provider_name: str | None = None,
    using: str | None = None,
) -> Granule:
    """Put a granule and its files in the catalog (insert or update, as
    ORCA's catalog ingest does: archiving a granule again updates it)."""

    def ingest() -> Granule:
        now = timezone.now()
        Provider.objects.using(using).bulk_create(
            [Provider(provider_id=provider_id, name=provider_name)], ignore_conflicts=True
        )
        Collection.objects.using(using).bulk_create(
            [Collection(collection_id=collection_id, shortname=shortname, version=version)],
            ignore_conflicts=True,
        )
        (granule,) = Granule.objects.using(using).bulk_create(
            [
                Granule(
                    provider_id=provider_id,
                    collection_id=collection_id,
                    cumulus_granule_id=cumulus_granule_id,
                    execution_id=execution_id,
                    ingest_time=now,
                    cumulus_create_time=cumulus_create_time,
                    last_update=now,
                )
            ],
            update_conflicts=True,
            unique_fields=["collection", "cumulus_granule_id"],
            update_fields=["provider", "execution_id", "cumulus_create_time", "last_update"],
        )
        File.objects.using(using).bulk_create(
            [
                File(
                    granule_id=granule.pk,
                    ingest_time=now,
                    **dataclasses.asdict(f),
                )
                for f in files
            ],
            update_conflicts=True,
            unique_fields=["cumulus_archive_location", "key_path"],
            update_fields=[
                "granule",
                "name",
                "orca_archive_location",
                "ingest_time",
                "etag",
                "version",
                "size_in_bytes",
                "hash",
                "hash_type",
                "storage_class",
            ],
        )
        return granule

    return retry_atomic(ingest, using=using)()


# ----- internal reconciliation --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class S3Object:
    """One line of an S3 inventory report."""

    key_path: str
    etag: str
    last_update: datetime
    size_in_bytes: int
    storage_class: str
    delete_marker: bool = False


def partition_name(bucket: str) -> str:
    """The name of ``bucket``'s partition of ``reconcile_s3_object``."""
    name = "reconcile_s3_object_" + re.sub(r"[^a-z0-9_]", "_", bucket.lower())
    if len(name) > 63 or name != "reconcile_s3_object_" + bucket:
        # Spelled differently from the bucket (or too long for PostgreSQL):
        # a digest keeps two such buckets apart.
        digest = hashlib.sha256(bucket.encode()).hexdigest()[:8]
        name = f"{name[:54]}_{digest}"
    return name


def add_reconcile_partition(bucket: str, *, using: str | None = None) -> str:
    """Create ``bucket``'s partition of ``reconcile_s3_object`` (keyed by
    ``key_path``, its jobs referencing ``reconcile_job``) unless it exists.
    Returns the partition's name. DDL: run it before the bucket's first
    inventory, not inside a busy transaction."""
    name = partition_name(bucket)
    connection = connections[using or "default"]
    quote = connection.ops.quote_name
    literal = "'" + bucket.replace("'", "''") + "'"

    def create() -> str:
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {quote(SCHEMA)}.{quote(name)} "
                f"PARTITION OF {ReconcileS3Object._meta.db_table} ("
                f"CONSTRAINT {quote('pk_' + name)} PRIMARY KEY (key_path), "
                f"CONSTRAINT {quote('fk_reconcile_job_' + name)} FOREIGN KEY (job_id) "
                f"REFERENCES {ReconcileJob._meta.db_table} (id)"
                f") FOR VALUES IN ({literal})"
            )
        return name

    return retry_atomic(create, using=using)()


def record_inventory(
    bucket: str,
    inventory_creation_time: datetime,
    objects: Iterable[S3Object],
    *,
    using: str | None = None,
) -> ReconcileJob:
    """Start a reconciliation job for one S3 inventory of ``bucket`` and load
    its listing (the bucket's partition must exist): the job, staged, and
    every object, or nothing."""
    objects = list(objects)

    def record() -> ReconcileJob:
        now = timezone.now()
        job = ReconcileJob.objects.using(using).create(
            orca_archive_location=bucket,
            status_id=ReconcileStatus.STAGED,
            inventory_creation_time=inventory_creation_time,
            start_time=now,
            last_update=now,
        )
        ReconcileS3Object.objects.using(using).bulk_create(
            ReconcileS3Object(job_id=job.pk, orca_archive_location=bucket, **dataclasses.asdict(o))
            for o in objects
        )
        return job

    return retry_atomic(record, using=using)()
