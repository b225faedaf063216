"""``manage.py aurora_demo``: ORCA's workload through scale events, pauses
and startup rejections, then an audit on the server. See docs/demo.md."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
import uuid
from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from django.test import override_settings

from orca_db.logging import emf_events_to
from orca_db.signals import retry_event
from orca_db_app.management.base import EXIT_FAILED, DatabaseCommand, usage_error
from orca_db_app.orca import demo, services

WORKLOAD_ALIAS = "orca_demo"
APPLICATION_NAME = "orca_db_demo"


class Command(DatabaseCommand):
    help = (
        "Run an ORCA-like workload through injected Aurora faults (pauses, scale "
        "events, startup rejections) and audit the database for lost, duplicated "
        "and partial writes."
    )
    database_help = 'The database to run on (default: "default").'
    default_timeout = 120.0
    timeout_help = (
        "Seconds to wait for the database to answer before migrating it (default: %(default)g)."
    )
    offers_json = False

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--duration", type=float, default=30.0, help="Seconds of workload (default 30)."
        )
        parser.add_argument("--workers", type=int, default=4, help="Worker threads (default 4).")
        parser.add_argument(
            "--fault-interval",
            type=float,
            default=1.0,
            help="Seconds between injected faults (default 1).",
        )
        parser.add_argument("--seed", type=int, default=None, help="Seed the workload's choices.")
        parser.add_argument(
            "--no-simulator",
            action="store_true",
            help="Inject faults with pg_terminate_backend only (the default with DATABASE_URL).",
        )
        parser.add_argument(
            "--emf",
            metavar="PATH",
            help="Append each retry event to PATH as a CloudWatch Embedded Metric Format "
            "line (docs/observability.md).",
        )
        parser.add_argument(
            "--data-api",
            action="store_true",
            help="Run the workload on the Data API engine through a local Data API "
            "endpoint, with its faults: pauses, scale events, lost answers, throttling.",
        )

    def handle(
        self,
        *args: Any,
        duration: float,
        workers: int,
        fault_interval: float,
        database: str,
        timeout: float,
        seed: int | None,
        no_simulator: bool,
        data_api: bool,
        verbosity: int,
        **options: Any,
    ) -> None:
        self.database_alias(database)
        if duration <= 0 or workers < 1 or fault_interval <= 0:
            raise usage_error("--duration, --workers and --fault-interval must be positive.")
        self.verbosity = verbosity
        base = connections[database].settings_dict
        external = bool(os.environ.get("DATABASE_URL")) and database == DEFAULT_DB_ALIAS
        simulator_class: Any = None
        if not (external or no_simulator or data_api):
            try:
                from orca_db.testing.simulator import AuroraSimulator
            except ImportError as error:
                if error.name != "orca_db.testing.simulator":
                    raise  # installed but broken: say so rather than hide it
                self.stderr.write(
                    "The Aurora simulator is not installed; using pg_terminate_backend."
                )
            else:
                simulator_class = AuroraSimulator

        where = "DATABASE_URL" if external else f"database {database!r}"
        self._say(1, f"Migrating {where} (aurora_migrate)...")
        call_command("aurora_migrate", database=database, wake_timeout=timeout, verbosity=0)
        services.add_reconcile_partition(demo.BUCKET, using=database)
        simulator = None
        if simulator_class is not None:
            # Where the server listens is known once connected (the project's
            # embedded server starts at the first connection).
            simulator = simulator_class(base["HOST"] or "127.0.0.1", base["PORT"] or 5432)
        endpoint = None
        if data_api:
            from orca_db.testing.data_api import DataApiEndpoint

            endpoint = DataApiEndpoint.for_database(base)

        saved_environ = dict(os.environ)
        if endpoint is not None:
            endpoint.start()
            os.environ.update(endpoint.environ())  # boto3 finds the endpoint there
            target = {**dict(base), **endpoint.django_settings(base["NAME"])}
            how = f"on the Data API engine through a local endpoint on port {endpoint.listen_port}"
        elif simulator is not None:
            simulator.start()
            target = simulator.django_settings(dict(base))
            how = f"through the Aurora simulator on port {simulator.port}"
        else:
            target = dict(base)
            how = "with pg_terminate_backend as the only fault"
        if endpoint is None:
            options_ = {**target.get("OPTIONS", {}), "application_name": APPLICATION_NAME}
            target = {**target, "OPTIONS": options_}
        connections.settings[WORKLOAD_ALIAS] = target

        events: collections.Counter = collections.Counter()
        captured: list[Any] = []
        lock = threading.Lock()

        def count(sender, event, **kwargs):
            if event.database != WORKLOAD_ALIAS:
                return
            with lock:
                events[(event.phase, event.outcome)] += 1
                events["attempts"] += event.attempts
                captured.append(event)

        run_id = uuid.uuid4().hex[:8]
        workload = demo.Workload(WORKLOAD_ALIAS, workers, run_id, seed)
        faults = demo.FaultInjector(
            simulator=simulator,
            endpoint=endpoint,
            admin_alias=database,
            application_name=APPLICATION_NAME,
            interval=fault_interval,
            seed=seed,
        )
        self._say(
            1,
            f"Running {workers} workers for {duration:g} s {how}, a fault every "
            f"{fault_interval:g} s (run {run_id})...",
        )
        retry_event.connect(count, weak=False)
        quiet = _quiet_retry_logs(verbosity)
        # From the signal, not the loggers: quiet mode raises their levels.
        emf = emf_events_to(options["emf"]) if options.get("emf") else contextlib.nullcontext()
        # The receiver stores each event on the database the demo reports
        # into (the one runserver shows), not through the injected faults.
        events_to = override_settings(ORCA_DB_EVENTS_DATABASE=database)
        events_to.enable()
        started = time.monotonic()
        try:
            with quiet, emf:
                workload.start()
                faults.start()
                workload.stop.wait(duration)
                workload.stop.set()
                faults.stop.set()
                faults.join(30)
                for injector in (simulator, endpoint):
                    if injector is not None and injector.paused:
                        injector.resume()
                finished = workload.join(120)
            elapsed = time.monotonic() - started
        finally:
            events_to.disable()
            retry_event.disconnect(count)
            workload.stop.set()
            faults.stop.set()
            if simulator is not None:
                stats = simulator.stats
                simulator.stop()
            elif endpoint is not None:
                stats = {f"endpoint_{k}": v for k, v in endpoint.stats.items()}
                endpoint.stop()
                os.environ.clear()
                os.environ.update(saved_environ)
            else:
                stats = {}
            with contextlib.suppress(Exception):
                connections[WORKLOAD_ALIAS].close()
        if not finished:
            raise CommandError(
                "Some workers did not finish within 120 s of the end.", returncode=EXIT_FAILED
            )

        result = demo.audit(database, workload)
        by_receiver, by_demo = self._store_events(database, captured, workload.started_at)
        failures = self._report(
            workload, faults, result, events, stats, elapsed, (by_receiver, by_demo), how
        )
        if failures:
            raise CommandError(
                "The demo found problems: " + ", ".join(failures) + ".", returncode=EXIT_FAILED
            )

    # ----- helpers ----------------------------------------------------------

    def _store_events(self, alias: str, captured: list, since) -> tuple[int, int]:
        """The run's retry events as ``RetryEvent`` rows (the admin shows
        them): orca_db_app's receiver stores each as it happens; any it could
        not store (or all, without the receiver) the demo stores now.
        Returns (stored by the receiver, stored by the demo)."""
        from orca_db_app.models import RetryEvent

        fields = {f.name for f in RetryEvent._meta.concrete_fields} - {"id"}
        rows = RetryEvent.objects.using(alias).filter(
            database=WORKLOAD_ALIAS, occurred_at__gte=since
        )
        by_receiver = rows.count()
        stored = set(rows.values_list("occurred_at", "phase", "attempts", "outcome"))
        missing = [
            event
            for event in captured
            if (event.occurred_at, event.phase, event.attempts, event.outcome) not in stored
        ]
        RetryEvent.objects.using(alias).bulk_create(
            RetryEvent(**{k: v for k, v in event.as_dict().items() if k in fields})
            for event in missing
        )
        return by_receiver, len(missing)

    def _report(self, workload, faults, result, events, stats, elapsed, stored, how) -> list[str]:
        w = self.stdout.write
        latencies: dict[str, list[float]] = collections.defaultdict(list)
        errors: collections.Counter = collections.Counter()
        samples: list[str] = []
        unknown: list[tuple[str, str]] = []
        inconsistent = 0
        for ledger in workload.ledgers:
            for kind, values in ledger.latencies.items():
                latencies[kind].extend(values)
            errors.update(ledger.errors)
            samples.extend(ledger.error_samples)
            unknown.extend(ledger.unknown)
            inconsistent += ledger.inconsistent_reads
        every = [v for values in latencies.values() for v in values]

        w("")
        w(self.style.MIGRATE_HEADING(f"orca-db demo: run {workload.run_id}"))
        w(f"  {elapsed:.1f} s, {len(workload.ledgers)} workers, {how}")
        w("")
        w(
            self.style.MIGRATE_HEADING(
                "Operations (completed)      count   p50 ms   p95 ms   p99 ms   max ms"
            )
        )
        for kind in demo.OPERATIONS:
            values = latencies.get(kind, [])
            w(_latency_line(kind, values))
        w(_latency_line("all", every))
        w(f"  throughput: {len(every) / elapsed:.0f} operations/s")
        w("")
        fired = sum(faults.fired.values())
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(faults.fired.items())) or "none"
        w(self.style.MIGRATE_HEADING("Injected faults"))
        w(f"  {fired} ({kinds})")
        if "endpoint_calls" in stats:
            w(
                f"  Data API endpoint: {stats['endpoint_ended']} transactions ended, "
                f"{stats['endpoint_resuming']} calls answered DatabaseResumingException, "
                f"{stats['endpoint_replies_lost']} answers lost, {stats['endpoint_failed']} "
                f"calls throttled, {stats['endpoint_calls']} calls in all"
            )
        elif stats:
            w(
                f"  simulator: {stats.get('terminated', 0)} sessions terminated, "
                f"{stats.get('held', 0)} connects held by pauses, "
                f"{stats.get('rejected', 0)} startups rejected, "
                f"{stats.get('connections', 0)} connections in all"
            )
        for failure in faults.failures[:3]:
            w(f"  a fault failed to fire: {failure}")
        w("")
        w(self.style.MIGRATE_HEADING("Retries (retry_event signals)"))
        operations = sum(v for k, v in events.items() if isinstance(k, tuple))
        w(f"  {operations} operations met a fault; {events['attempts']} attempts in all")
        for (phase, outcome), n in sorted(
            (k, v) for k, v in events.items() if isinstance(k, tuple)
        ):
            w(f"    {phase:<12} {outcome:<10} {n}")
        w(
            f"  stored as RetryEvent rows: {stored[0]} by orca_db_app's receiver, "
            f"{stored[1]} by the demo (those the receiver did not store)"
        )
        w("")
        w(self.style.MIGRATE_HEADING("What the application saw"))
        w(f"  errors: {sum(errors.values())}")
        for kind, n in errors.most_common():
            w(f"    {kind}: {n}")
        for sample in samples[:5]:
            w(f"    e.g. {sample}")
        by_kind = collections.Counter(kind for kind, _ in unknown)
        w(
            f"  outcome unknown (OutcomeUnknown): {len(unknown)}"
            + (
                " (" + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())) + ")"
                if unknown
                else ""
            )
        )
        if unknown:
            w(
                "    A COMMIT was lost in flight and its fate not resolved: never retried, so "
                "never applied twice, and not an error: the application was told."
            )
            w(
                f"    Looked up on the server: {result.unknown_committed} committed, "
                f"{result.unknown_not_committed} not (creations); status updates and reads "
                f"are harmless either way."
            )
        w(f"  reads that disagreed with the writes: {inconsistent}")
        w("")
        w(self.style.MIGRATE_HEADING("Audit on the server"))
        w(
            f"  {result.jobs} recovery jobs, {result.granules} granules, "
            f"{result.inventories} inventories written by this run"
        )
        w(f"  duplicates: {result.duplicates}")
        w(f"  partial transactions: {result.partial}")
        w(f"  lost writes (acknowledged, not on the server): {result.lost}")
        w(f"  unreported writes (reported failed, on the server): {result.unreported}")
        for detail in result.details[:10]:
            w(f"    {detail}")
        failures = [
            f"{label} {n}"
            for label, n in (
                ("errors", sum(errors.values())),
                ("duplicates", result.duplicates),
                ("partial transactions", result.partial),
                ("lost writes", result.lost),
                ("unreported writes", result.unreported),
                ("inconsistent reads", inconsistent),
            )
            if n
        ]
        w("")
        if failures:
            w(self.style.ERROR("RESULT: FAIL (" + ", ".join(failures) + ")"))
        else:
            w(
                self.style.SUCCESS(
                    f"RESULT: PASS: {fired} faults, 0 errors, 0 duplicates, 0 partial transactions"
                )
            )
        w(
            "See the retry events: python manage.py createsuperuser, then "
            "ORCA_DB_DEBUG=1 python manage.py runserver and /admin/."
        )
        return failures

    def _say(self, level: int, message: str) -> None:
        if self.verbosity >= level:
            self.stdout.write(message)


def _latency_line(kind: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    p = demo.percentile
    return (
        f"  {kind:<24} {len(ms):>8} {p(ms, 50):>8.1f} {p(ms, 95):>8.1f} "
        f"{p(ms, 99):>8.1f} {max(ms, default=0):>8.1f}"
    )


class _quiet_retry_logs(contextlib.AbstractContextManager):
    """Below verbosity 2, keep orca_db's per-retry log lines off the
    console while the demo runs (the report counts them)."""

    def __init__(self, verbosity: int):
        self.verbosity = verbosity
        self.saved: list[tuple[logging.Logger, int]] = []

    def __enter__(self):
        if self.verbosity < 2:
            for name in ("orca_db", "orca_db.retry", "orca_db.events"):
                logger = logging.getLogger(name)
                self.saved.append((logger, logger.level))
                logger.setLevel(logging.CRITICAL)
        return self

    def __exit__(self, *exc_info):
        for logger, level in self.saved:
            logger.setLevel(level)
        return None
