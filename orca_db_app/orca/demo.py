"""The workload, the fault injector and the server-side audit behind
``manage.py aurora_demo`` (docs/demo.md).

Every write carries an id the client made up, and every id says how many
rows its transaction wrote (``...-f3``: three files), so the audit can tell
from the server alone whether a transaction applied twice (a duplicate),
in part (a partial transaction), or not at all although the application was
told it had (a lost write).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.db import connections

from orca_db.exceptions import OutcomeUnknown

from . import services
from .models import RecoveryStatus

BUCKET = "orca-demo-archive"
INVENTORY_OBJECTS = 3
OPERATIONS = {
    # kind: weight
    "create_job": 30,
    "update_file": 35,
    "ingest_granule": 20,
    "record_inventory": 5,
    "read_status": 10,
}


@dataclasses.dataclass
class WorkerLedger:
    """What one worker was told happened."""

    latencies: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )
    jobs: dict[str, int] = dataclasses.field(default_factory=dict)  # job id -> files
    granules: dict[str, int] = dataclasses.field(default_factory=dict)  # granule id -> files
    inventories: set[str] = dataclasses.field(default_factory=set)  # creation times
    unknown: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    errors: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    error_samples: list[str] = dataclasses.field(default_factory=list)
    inconsistent_reads: int = 0
    # job id -> {filename: status} for files still open
    open_files: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)


class Workload:
    """``workers`` threads running ORCA's operations on ``alias`` until
    ``stop`` is set."""

    def __init__(self, alias: str, workers: int, run_id: str, seed: int | None = None):
        self.alias = alias
        self.run_id = run_id
        self.prefix = f"demo-{run_id}"
        self.ledgers = [WorkerLedger() for _ in range(workers)]
        self.stop = threading.Event()
        self.seed = seed
        self._threads: list[threading.Thread] = []
        self.started_at = datetime.datetime.now(datetime.UTC)
        # One inventory time per inventory (the client's id for it): a
        # microsecond clock, unique across workers and runs.
        self._clock = self.started_at
        self._clock_lock = threading.Lock()

    def start(self) -> None:
        for n, ledger in enumerate(self.ledgers):
            thread = threading.Thread(
                target=self._work, args=(n, ledger), name=f"orca-demo-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # ----- one worker -------------------------------------------------------

    def _work(self, n: int, ledger: WorkerLedger) -> None:
        rng = random.Random(None if self.seed is None else self.seed + n)
        kinds, weights = zip(*OPERATIONS.items(), strict=True)
        count = 0
        try:
            while not self.stop.is_set():
                count += 1
                kind = rng.choices(kinds, weights)[0]
                key, action = self._operation(kind, n, count, rng, ledger)
                if action is None:
                    continue
                started = time.perf_counter()
                try:
                    action()
                except OutcomeUnknown:
                    ledger.unknown.append((kind, key))
                except Exception as error:
                    ledger.errors[f"{kind}: {type(error).__name__}"] += 1
                    if len(ledger.error_samples) < 5:
                        ledger.error_samples.append(f"{kind} {key}: {error!r}"[:300])
                else:
                    ledger.latencies[kind].append(time.perf_counter() - started)
                # A request ends: like a web request with CONN_MAX_AGE=0 or a
                # new Lambda container, the next one connects afresh.
                if rng.random() < 0.3:
                    connections[self.alias].close()
        finally:
            connections[self.alias].close()

    def _operation(
        self, kind: str, n: int, count: int, rng: random.Random, ledger: WorkerLedger
    ) -> tuple[str, Callable[[], Any] | None]:
        using = self.alias
        if kind == "create_job":
            files = rng.randint(1, 4)
            job_id = f"{self.prefix}-w{n}-{count}-f{files}"
            requests = [
                services.FileRequest(f"file{i}.h5", f"{job_id}/file{i}.h5", "orca-demo-restore")
                for i in range(files)
            ]

            def create() -> None:
                services.create_recovery_job(
                    job_id, "DEMO___1", job_id, BUCKET, requests, using=using
                )
                ledger.jobs[job_id] = files
                ledger.open_files[job_id] = {r.filename: RecoveryStatus.PENDING for r in requests}

            return job_id, create
        if kind == "update_file":
            if not ledger.open_files:
                return "", None
            job_id = rng.choice(list(ledger.open_files))
            filename, current = rng.choice(list(ledger.open_files[job_id].items()))
            if current == RecoveryStatus.PENDING:
                status = RecoveryStatus.STAGED
            else:
                status = RecoveryStatus.ERROR if rng.random() < 0.1 else RecoveryStatus.SUCCESS
            message = "restore expired" if status == RecoveryStatus.ERROR else None

            def update() -> None:
                services.update_file_status(
                    job_id, "DEMO___1", job_id, filename, status, error_message=message, using=using
                )
                files = ledger.open_files[job_id]
                if status in RecoveryStatus.DONE:
                    del files[filename]
                    if not files:
                        del ledger.open_files[job_id]
                else:
                    files[filename] = status

            return f"{job_id}/{filename}", update
        if kind == "ingest_granule":
            files = rng.randint(1, 3)
            granule_id = f"{self.prefix}-w{n}-{count}-f{files}"
            catalog = [
                services.CatalogFile(
                    name=f"file{i}.h5",
                    orca_archive_location=BUCKET,
                    cumulus_archive_location="cumulus-demo-protected",
                    key_path=f"{granule_id}/file{i}.h5",
                    etag=uuid.uuid4().hex,
                    version="1",
                    size_in_bytes=rng.randint(1, 10**9),
                )
                for i in range(files)
            ]

            def ingest() -> None:
                services.ingest_granule(
                    provider_id="demo-provider",
                    collection_id="DEMO___1",
                    shortname="DEMO",
                    version="1",
                    cumulus_granule_id=granule_id,
                    execution_id=f"exec-{granule_id}",
                    cumulus_create_time=datetime.datetime.now(datetime.UTC),
                    files=catalog,
                    using=using,
                )
                ledger.granules[granule_id] = files

            return granule_id, ingest
        if kind == "record_inventory":
            with self._clock_lock:
                self._clock = max(
                    self._clock + datetime.timedelta(microseconds=1),
                    datetime.datetime.now(datetime.UTC),
                )
                created = self._clock
            key = created.isoformat()
            objects = [
                services.S3Object(
                    key_path=f"{self.prefix}/{key}/{i}",
                    etag=uuid.uuid4().hex,
                    last_update=created,
                    size_in_bytes=i,
                    storage_class="GLACIER",
                )
                for i in range(INVENTORY_OBJECTS)
            ]

            def record() -> None:
                services.record_inventory(BUCKET, created, objects, using=using)
                ledger.inventories.add(key)

            return key, record
        # read_status
        if not ledger.jobs:
            return "", None
        job_id = rng.choice(list(ledger.jobs))

        def read() -> None:
            (granule,) = services.job_status(job_id, using=using)
            if len(granule["files"]) != ledger.jobs[job_id]:
                ledger.inconsistent_reads += 1

        return job_id, read


class FaultInjector:
    """Fires a fault every ``interval`` seconds until ``stop`` is set: with
    the simulator, pauses, scale events and startup rejections in turn;
    without it, ``pg_terminate_backend`` of the workload's sessions."""

    def __init__(
        self,
        *,
        simulator=None,
        endpoint=None,
        admin_alias: str,
        application_name: str,
        interval: float,
        seed: int | None = None,
    ):
        self.simulator = simulator
        #: A local Data API endpoint (orca_db.testing.data_api), with --data-api.
        self.endpoint = endpoint
        self.admin_alias = admin_alias
        self.application_name = application_name
        self.interval = interval
        self.stop = threading.Event()
        self.fired: collections.Counter = collections.Counter()
        self.failures: list[str] = []
        self.rng = random.Random(seed)
        self._thread = threading.Thread(target=self._run, name="orca-demo-faults", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        if self.endpoint is not None:
            kinds = ["scale_event", "pause", "lose_reply", "throttle"]
        elif self.simulator is not None:
            kinds = ["scale_event", "pause", "reject_startups"]
        else:
            kinds = ["terminate"]
        n = 0
        try:
            while not self.stop.wait(self.interval):
                kind = kinds[n % len(kinds)]
                n += 1
                try:
                    getattr(self, f"_{kind}")()
                except Exception as error:  # a fault that failed is reported, not fatal
                    self.failures.append(f"{kind}: {error!r}")
                else:
                    self.fired[kind] += 1
        finally:
            for injector in (self.simulator, self.endpoint):
                if injector is not None and injector.paused:
                    injector.resume()
            connections[self.admin_alias].close()

    def _scale_event(self) -> None:
        (self.endpoint or self.simulator).scale_event()

    def _pause(self) -> None:
        # New connections (Data API calls) wait until the "cluster" is up again.
        (self.endpoint or self.simulator).pause(resume_after=self.rng.uniform(0.3, 1.5))

    def _lose_reply(self) -> None:
        # The next call runs and its answer never comes.
        self.endpoint.lose_replies(1)

    def _throttle(self) -> None:
        self.endpoint.fail_next(self.rng.randint(1, 3), code="ThrottlingException")

    def _reject_startups(self) -> None:
        self.simulator.reject_startups(self.rng.randint(1, 3))

    def _terminate(self) -> None:
        with connections[self.admin_alias].cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                [self.application_name],
            )


# ----- the audit ----------------------------------------------------------------

_FILES = re.compile(r"-f(\d+)$")


def _expected_files(client_id: str) -> int:
    """How many files the transaction that wrote ``client_id`` wrote (the
    LIKE prefix guarantees the suffix is there)."""
    match = _FILES.search(client_id)
    assert match is not None, client_id
    return int(match.group(1))


@dataclasses.dataclass
class Audit:
    jobs: int = 0
    granules: int = 0
    inventories: int = 0
    duplicates: int = 0
    partial: int = 0
    lost: int = 0
    unreported: int = 0
    unknown_committed: int = 0
    unknown_not_committed: int = 0
    details: list[str] = dataclasses.field(default_factory=list)


def audit(alias: str, workload: Workload) -> Audit:
    """Compare what the server holds for this run with what the workers were
    told, from a connection outside the workload."""
    result = Audit()
    prefix = workload.prefix + "-%"
    told_jobs: dict[str, int] = {}
    told_granules: dict[str, int] = {}
    told_inventories: set[str] = set()
    unknown: set[tuple[str, str]] = set()
    for ledger in workload.ledgers:
        told_jobs.update(ledger.jobs)
        told_granules.update(ledger.granules)
        told_inventories |= ledger.inventories
        unknown.update(ledger.unknown)
    unknown_keys = {key for _, key in unknown}

    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT j.job_id, count(f.filename), count(*) FILTER (WHERE f.status_id IN (3, 4)), "
            "j.completion_time IS NOT NULL "
            "FROM orca.recovery_job j LEFT JOIN orca.recovery_file f "
            "USING (job_id, collection_id, granule_id) WHERE j.job_id LIKE %s GROUP BY j.job_id, "
            "j.completion_time",
            [prefix],
        )
        server_jobs = {}
        for job_id, files, done, completed in cursor.fetchall():
            server_jobs[job_id] = files
            expected = _expected_files(job_id)
            if files != expected:
                result.partial += 1
                result.details.append(f"job {job_id}: {files} files, expected {expected}")
            if completed != (done == files):
                result.partial += 1
                result.details.append(
                    f"job {job_id}: completed={completed} with {done} of {files} files done"
                )
        cursor.execute(
            "SELECT g.cumulus_granule_id, count(*) OVER (PARTITION BY g.collection_id, "
            "g.cumulus_granule_id), (SELECT count(*) FROM orca.files f WHERE f.granule_id = g.id) "
            "FROM orca.granules g WHERE g.cumulus_granule_id LIKE %s",
            [prefix],
        )
        server_granules = {}
        for granule_id, copies, files in cursor.fetchall():
            server_granules[granule_id] = files
            if copies > 1:
                result.duplicates += 1
            expected = _expected_files(granule_id)
            if files != expected:
                result.partial += 1
                result.details.append(f"granule {granule_id}: {files} files, expected {expected}")
        cursor.execute(
            "SELECT j.inventory_creation_time, count(DISTINCT j.id), count(o.key_path) "
            "FROM orca.reconcile_job j LEFT JOIN orca.reconcile_s3_object o "
            "ON o.job_id = j.id AND o.orca_archive_location = j.orca_archive_location "
            "WHERE j.orca_archive_location = %s AND o.key_path LIKE %s "
            "GROUP BY j.inventory_creation_time",
            [BUCKET, workload.prefix + "/%"],
        )
        server_inventories = set()
        for created, copies, objects in cursor.fetchall():
            key = created.astimezone(datetime.UTC).isoformat()
            server_inventories.add(key)
            if copies > 1:
                result.duplicates += copies - 1
                result.details.append(f"inventory {key}: recorded {copies} times")
            if objects != copies * INVENTORY_OBJECTS:
                result.partial += 1
                result.details.append(f"inventory {key}: {objects} objects")
        # A job without objects would not be found above: count them apart.
        cursor.execute(
            "SELECT count(*) FROM orca.reconcile_job j WHERE j.orca_archive_location = %s "
            "AND j.start_time >= %s AND NOT EXISTS (SELECT 1 FROM orca.reconcile_s3_object o "
            "WHERE o.job_id = j.id AND o.orca_archive_location = j.orca_archive_location)",
            [BUCKET, workload.started_at],
        )
        empty = cursor.fetchone()[0]
        if empty:
            result.partial += empty
            result.details.append(f"{empty} inventories without their objects")

    result.jobs, result.granules = len(server_jobs), len(server_granules)
    result.inventories = len(server_inventories)
    for told, found, what in (
        (told_jobs, server_jobs, "job"),
        (told_granules, server_granules, "granule"),
        (dict.fromkeys(told_inventories), server_inventories, "inventory"),
    ):
        for key in told:
            if key not in found:
                result.lost += 1
                result.details.append(f"{what} {key}: acknowledged but not on the server")
        for key in found:
            if key not in told and key not in unknown_keys:
                result.unreported += 1
                result.details.append(f"{what} {key}: on the server, but the caller saw it fail")
    everything = set(server_jobs) | set(server_granules) | server_inventories
    for kind, key in unknown:
        if kind in ("create_job", "ingest_granule", "record_inventory"):
            if key in everything:
                result.unknown_committed += 1
            else:
                result.unknown_not_committed += 1
    return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]
