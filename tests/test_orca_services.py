from __future__ import annotations

import datetime

import pytest
from django.db import IntegrityError, connection

from orca_db_app.orca import services
from orca_db_app.orca.models import (
    File,
    Granule,
    ReconcileJob,
    ReconcileS3Object,
    RecoveryFile,
    RecoveryJob,
    RecoveryStatus,
)

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def files(n: int) -> list[services.FileRequest]:
    return [services.FileRequest(f"f{i}.h5", f"data/f{i}.h5", "restore-bucket") for i in range(n)]


def catalog_files(n: int, prefix: str = "g1") -> list[services.CatalogFile]:
    return [
        services.CatalogFile(
            name=f"{prefix}-{i}.h5",
            orca_archive_location="orca-archive",
            cumulus_archive_location="cumulus-protected",
            key_path=f"{prefix}/{i}.h5",
            etag=f"etag{i}",
            version="v1",
            size_in_bytes=100 + i,
        )
        for i in range(n)
    ]


def test_a_recovery_job_is_created_with_its_files():
    job = services.create_recovery_job("job1", "MOD09GQ___061", "G1", "orca-archive", files(3))
    assert job.status_id == RecoveryStatus.PENDING
    stored = RecoveryFile.objects.filter(job_id="job1")
    assert stored.count() == 3
    assert {f.status_id for f in stored} == {RecoveryStatus.PENDING}
    assert RecoveryJob.objects.get(pk=("job1", "MOD09GQ___061", "G1")).files.count() == 3


def test_a_job_is_all_or_nothing():
    dup = [*files(2), files(1)[0]]  # the same filename twice: the second insert fails
    with pytest.raises(IntegrityError):
        services.create_recovery_job("job2", "C", "G", "orca-archive", dup)
    assert not RecoveryJob.objects.filter(job_id="job2").exists()
    assert not RecoveryFile.objects.filter(job_id="job2").exists()


def test_the_job_completes_when_every_file_is_done():
    services.create_recovery_job("job3", "C", "G", "orca-archive", files(2))
    assert not services.update_file_status("job3", "C", "G", "f0.h5", RecoveryStatus.STAGED)
    assert not services.update_file_status("job3", "C", "G", "f0.h5", RecoveryStatus.SUCCESS)
    assert not services.complete_job_if_done("job3", "C", "G")
    assert services.update_file_status(
        "job3", "C", "G", "f1.h5", RecoveryStatus.ERROR, error_message="restore expired"
    )
    job = RecoveryJob.objects.get(pk=("job3", "C", "G"))
    assert job.status_id == RecoveryStatus.ERROR
    assert job.completion_time is not None
    status = services.job_status("job3")
    assert status[0]["status"] == "error"
    assert [(f["filename"], f["status"]) for f in status[0]["files"]] == [
        ("f0.h5", "success"),
        ("f1.h5", "error"),
    ]


def test_a_job_with_only_successes_succeeds():
    services.create_recovery_job("job4", "C", "G", "orca-archive", files(1))
    assert services.update_file_status("job4", "C", "G", "f0.h5", RecoveryStatus.SUCCESS)
    assert RecoveryJob.objects.get(pk=("job4", "C", "G")).status_id == RecoveryStatus.SUCCESS


def test_bad_status_updates_are_refused():
    services.create_recovery_job("job5", "C", "G", "orca-archive", files(1))
    with pytest.raises(ValueError, match="Unknown recovery status"):
        services.update_file_status("job5", "C", "G", "f0.h5", 9)
    with pytest.raises(ValueError, match="error_message"):
        services.update_file_status("job5", "C", "G", "f0.h5", RecoveryStatus.ERROR)
    with pytest.raises(RecoveryFile.DoesNotExist):
        services.update_file_status("job5", "C", "G", "nope", RecoveryStatus.STAGED)


def test_a_granule_is_ingested_and_ingested_again_as_an_update():
    kwargs = dict(
        provider_id="prov",
        collection_id="MOD09GQ___061",
        shortname="MOD09GQ",
        version="061",
        cumulus_granule_id="G1",
        execution_id="exec-1",
        cumulus_create_time=NOW,
    )
    first = services.ingest_granule(files=catalog_files(2), **kwargs)
    again = services.ingest_granule(files=catalog_files(3), **{**kwargs, "execution_id": "exec-2"})
    assert first.pk == again.pk
    assert Granule.objects.filter(cumulus_granule_id="G1").count() == 1
    assert Granule.objects.get().execution_id == "exec-2"
    assert File.objects.filter(granule_id=first.pk).count() == 3


def test_an_inventory_goes_to_its_buckets_partition():
    name = services.add_reconcile_partition("orca-archive")
    assert name.startswith("reconcile_s3_object_orca_archive_")  # + a digest: "-" became "_"
    assert services.add_reconcile_partition("orca-archive") == name  # idempotent
    objects = [services.S3Object(f"k{i}", f"e{i}", NOW, i, "GLACIER") for i in range(4)]
    job = services.record_inventory("orca-archive", NOW, objects)
    assert ReconcileJob.objects.get(pk=job.pk).orca_archive_location == "orca-archive"
    assert ReconcileS3Object.objects.filter(job_id=job.pk).count() == 4
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM orca."{name}"')
        assert cursor.fetchone()[0] == 4


def test_partition_names():
    assert services.partition_name("orca_archive") == "reconcile_s3_object_orca_archive"
    a, b = services.partition_name("a-b"), services.partition_name("a_b")
    assert a != b
    assert len(services.partition_name("x" * 80)) <= 63


def test_a_transaction_cut_by_a_scale_event_is_run_again_whole(kill_backend):
    """The backend dies (pg_terminate_backend, as in a scale event) while the
    job's files are being inserted: the transaction rolls back, runs again,
    and the job is there once, with every file."""
    killed = []

    def kill_during_file_insert(execute, sql, params, many, context):
        if not killed and 'INSERT INTO "orca"."recovery_file"' in sql:
            killed.append(kill_backend("default"))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(kill_during_file_insert):
        services.create_recovery_job("job6", "C", "G", "orca-archive", files(3))
    assert len(killed) == 1
    assert RecoveryJob.objects.filter(job_id="job6").count() == 1
    assert RecoveryFile.objects.filter(job_id="job6").count() == 3
