"""``manage.py aurora_verify``: prove, against the configured database, that
the retry layer works, with real faults and no special privileges.

A second connection ends the backend running the command's marked
statement with ``pg_terminate_backend`` (a role may end its own sessions),
the same error a scale event sends. The backend is found by what it runs,
not by a pid asked for beforehand: on the Data API engine each call may run
on another pooled session. Exit codes: 0 every check passed, 1 one failed, 2 the
self-test could not run (docs/commands.md#aurora_verify).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.db import ProgrammingError, connections, router, transaction

from orca_db.backends.mixins import AuroraRetryMixin
from orca_db.conf import retry_settings
from orca_db.events import SettledEvent
from orca_db.exceptions import TransactionRolledBack
from orca_db.retry import deadline_cap
from orca_db.signals import retry_event
from orca_db.sql import scrub_message
from orca_db_app.management.base import (
    EXIT_FAILED,
    EXIT_OK,
    DatabaseCommand,
    connect_with,
    driver_connect,
    driver_name,
    driver_params,
    usage_error,
)

#: In every statement the command sends: finds them in pg_stat_activity and
#: the stored events they cause (an identifier survives statement scrubbing).
MARKER = "orca_db_aurora_verify"
#: Sleeps until the killer has written its flag row into the run's scratch
#: table (``{table}``), which it does just before it terminates the backend:
#: the first attempt is slow enough to be caught running, its replay (on a
#: new backend, after the kill) returns at once.
SLOW_READ = (
    "SELECT pg_backend_pid() AS {table} FROM pg_sleep(CASE WHEN EXISTS "
    "(SELECT 1 FROM {table} WHERE id = %s) THEN 0 ELSE 10 END)"
)
#: The killer's flag rows (the transaction check's own row is 1).
READ_FLAG, TRANSACTION_FLAG = -1, -2
#: How long the killer waits to see the slow statement running.
KILL_WITHIN = 5.0
#: A non-retryable error must surface faster than this (seconds).
FAST = 1.0
#: How long a stored event may take to appear (a receiver may be deferred).
STORE_WITHIN = 2.0

CHECK_READ = "read replayed after its backend was terminated mid-query"
CHECK_TRANSACTION = "transaction cut mid-way raised TransactionRolledBack, nothing kept"
CHECK_NOT_RETRYABLE = "syntax error surfaced at once, not retried"
CHECK_EVENT = "retry event sent (and stored when storage is on)"


@dataclasses.dataclass
class Result:
    name: str
    passed: bool
    detail: str
    #: The fault the check made on purpose ("" when it made none).
    injected: str = ""
    #: The retry events that fault provoked, one line each.
    retry_events: list[str] = dataclasses.field(default_factory=list)


class HeldBack(logging.Filter):
    """Keeps the log records orca_db writes about this command's own faults
    (``retrying ...``, ``... raised after 1 attempt(s)``) off the log: they
    are expected, and the command reports them in its table instead. Only
    records of ``alias`` logged by the command's thread are held back."""

    def __init__(self, alias: str):
        super().__init__()
        self.alias = alias
        self.thread = threading.get_ident()
        self.held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "orca_db", None)
        if (
            isinstance(data, dict)
            and data.get("database") == self.alias
            and threading.get_ident() == self.thread
        ):
            self.held += 1
            return False
        return True


@contextlib.contextmanager
def holding_back(held: HeldBack) -> Iterator[HeldBack]:
    """``held`` on every ``orca_db`` logger for the duration (a logger's
    filters see only the records logged on it, not its children's)."""
    names = [name for name in logging.root.manager.loggerDict if name.startswith("orca_db.")]
    loggers = [logging.getLogger(name) for name in ("orca_db", *names)]
    for logger in loggers:
        logger.addFilter(held)
    try:
        yield held
    finally:
        for logger in loggers:
            logger.removeFilter(held)


class Killer:
    """Terminates, from another connection, the backend running the slow
    statement on ``table`` (``state = 'active'``: mid-query, as a scale
    event finds it), after writing ``flag`` into ``table`` so that the
    statement's replay does not sleep."""

    def __init__(self, alias: str, table: str, flag: int):
        self.params = driver_params(alias, connect_timeout=10)
        self.table = table
        self.flag = flag
        self.pid: int | None = None
        self.killed = False
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="aurora_verify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn = connect_with(self.params)
        except Exception as error:
            self.error = f"could not open a second connection: {_describe(error)}"
            return
        try:
            cur = conn.cursor()
            deadline = time.monotonic() + KILL_WITHIN
            while time.monotonic() < deadline:
                cur.execute(
                    "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                    "AND state = 'active' AND query LIKE %s AND query LIKE %s",
                    [f"%{self.table}%", "%pg_sleep%"],
                )
                rows = cur.fetchall()
                if rows:
                    self.pid = rows[0][0]
                    cur.execute(f"INSERT INTO {self.table} (id) VALUES (%s)", [self.flag])
                    cur.execute("SELECT pg_terminate_backend(%s)", [self.pid])
                    self.killed = bool(cur.fetchone()[0])
                    if not self.killed:
                        self.error = f"pg_terminate_backend({self.pid}) returned false"
                    return
                time.sleep(0.02)
            self.error = f"the marked statement was not seen running within {KILL_WITHIN:g} s"
        except Exception as error:
            self.error = f"could not terminate backend {self.pid}: {_describe(error)}"
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def join(self) -> None:
        self._thread.join(KILL_WITHIN + 15)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(scrub_message(str(error)).split())}"[:300]


def _summary(event: SettledEvent) -> str:
    return (
        f"{event.phase} {event.outcome} after {event.attempts} attempt(s) "
        f"in {event.elapsed_ms / 1000:.2f} s ({event.error_type})"
    )


class Command(DatabaseCommand):
    help = (
        "Self-test of the retry layer against the database: terminate a backend "
        "mid-query and check reads recover, transactions roll back whole, "
        "non-retryable errors surface at once and the event is recorded. "
        "Exit 0 when every check passes, 1 when one fails, 2 when it cannot run."
    )
    default_timeout = 60.0

    def handle(
        self, *, database: str, as_json: bool, timeout: float, verbosity: int, **options: Any
    ) -> None:
        self.alias = self.database_alias(database)
        self.connection = connections[database]
        if self.connection.in_atomic_block:
            raise usage_error("aurora_verify cannot run inside a transaction.")
        waited = self.connect(database, timeout)
        with deadline_cap(timeout), self.connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            server_version = cursor.fetchone()[0]

        self.timeout = timeout
        self.events: list[SettledEvent] = []
        self.started_at = time.time()
        storage_expected = _storage_receiver_connected()
        retry_event.connect(self._receive, sender=SettledEvent, weak=False)
        table = f"{MARKER}_{secrets.token_hex(4)}"
        results: list[Result] = []
        try:
            self._create_table(table)
            with holding_back(HeldBack(database)):
                read_event = self._run_check(results, CHECK_READ, lambda: self._check_read(table))
                self._run_check(results, CHECK_TRANSACTION, lambda: self._check_transaction(table))
                self._run_check(results, CHECK_NOT_RETRYABLE, self._check_not_retryable)
            self._run_check(
                results, CHECK_EVENT, lambda: self._check_event(read_event, storage_expected)
            )
        finally:
            retry_event.disconnect(self._receive, sender=SettledEvent)
            self._clean_up(table)

        passed = all(result.passed for result in results)
        if as_json:
            self.write_json(
                {
                    "database": database,
                    "engine": self.connection.settings_dict["ENGINE"],
                    "driver": driver_name(database),
                    "server_version": server_version,
                    "connected_after_seconds": round(waited, 3),
                    "passed": passed,
                    "checks": [dataclasses.asdict(result) for result in results],
                }
            )
        else:
            self._write_table(results, server_version, verbosity)
        self.exit(EXIT_OK if passed else EXIT_FAILED)

    # ----- the checks -------------------------------------------------------

    def _run_check(self, results: list[Result], name: str, check) -> Any:
        self.injected = ""
        before = len(self.events)
        try:
            # A database that goes away mid-check is waited for as long as
            # the command waits for it at the start, not the backend's deadline.
            with deadline_cap(self.timeout):
                passed, detail, value = check()
        except Exception as error:  # a check that broke is a failed check
            passed, detail, value = False, f"unexpected {_describe(error)}", None
        provoked = [_summary(event) for event in self.events[before:]]
        results.append(Result(name, passed, detail, self.injected, provoked))
        return value

    def _create_table(self, table: str) -> None:
        admin = driver_connect(self.alias, connect_timeout=10)
        try:
            admin.cursor().execute(f"CREATE TABLE {table} (id integer)")
        finally:
            admin.close()

    def _check_read(self, table: str):
        before = len(self.events)
        self.injected = "pg_terminate_backend() of the backend running a SELECT"
        killer = Killer(self.alias, table, READ_FLAG)
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(SLOW_READ.format(table=table), [READ_FLAG])
                new_pid = cursor.fetchone()[0]
        except Exception as error:
            killer.join()
            self.connection.close()
            return False, f"the read failed: {_describe(error)}", None
        killer.join()
        if not killer.killed:
            return False, killer.error or "the backend was not terminated", None
        self.injected = f"pg_terminate_backend({killer.pid}) while its SELECT ran"
        if new_pid == killer.pid:
            return False, "the read returned from the terminated backend", None
        event = next(
            (e for e in self.events[before:] if e.phase == "execute" and e.database == self.alias),
            None,
        )
        if event is None:
            return True, "rows returned from a new backend", None
        return (
            True,
            f"{event.outcome} after {event.attempts} attempts in {event.elapsed_ms / 1000:.2f} s",
            event,
        )

    def _check_transaction(self, table: str):
        raised: BaseException | None = None
        self.injected = "pg_terminate_backend() inside a transaction, after an INSERT"
        killer = None
        try:
            with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
                cursor.execute(f"INSERT INTO {table} (id) VALUES (1)")
                killer = Killer(self.alias, table, TRANSACTION_FLAG)
                cursor.execute(SLOW_READ.format(table=table), [TRANSACTION_FLAG])
        except Exception as error:
            raised = error
        if killer is None:
            what = "nothing" if raised is None else _describe(raised)
            return False, f"the INSERT failed: {what}", None
        killer.join()
        if not self.connection.in_atomic_block:
            self.connection.close()
        if not killer.killed:
            return False, killer.error or "the backend was not terminated", None
        self.injected = f"pg_terminate_backend({killer.pid}) inside a transaction, after an INSERT"
        admin = driver_connect(self.alias, connect_timeout=10)
        try:
            cur = admin.cursor()
            cur.execute(f"SELECT count(*) FROM {table} WHERE id > 0")
            kept = cur.fetchone()[0]
        finally:
            admin.close()
        if not isinstance(raised, TransactionRolledBack):
            what = "nothing" if raised is None else _describe(raised)
            return False, f"expected TransactionRolledBack, got {what}", None
        if kept:
            return False, f"{kept} row(s) of the rolled back transaction were kept", None
        return True, "raised TransactionRolledBack; 0 rows kept", None

    def _check_not_retryable(self):
        before = len(self.events)
        started = time.monotonic()
        self.injected = "a statement with a syntax error (SELEC 1)"
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(f"SELEC 1 AS {MARKER}")
        except ProgrammingError:
            pass
        except Exception as error:
            self.connection.close()
            return False, f"expected ProgrammingError, got {_describe(error)}", None
        else:
            return False, "the invalid statement did not fail", None
        elapsed = time.monotonic() - started
        if len(self.events) > before:
            return False, "it was treated as retryable (a retry event was sent)", None
        if elapsed >= FAST:
            return False, f"it took {elapsed:.2f} s to surface", None
        return True, f"ProgrammingError in {elapsed * 1000:.0f} ms", None

    def _check_event(self, read_event: SettledEvent | None, storage_expected: bool):
        if read_event is None:
            return False, "no retry event was sent for the terminated read", None
        if not retry_settings(self.connection).record_events:
            return True, "sent; storage is off (record_events=False)", None
        from orca_db_app.models import RetryEvent as StoredEvent

        using = router.db_for_write(StoredEvent)
        table = StoredEvent._meta.db_table
        if not storage_expected:
            return True, "sent; no storage receiver is connected", None
        if table not in connections[using].introspection.table_names():
            return True, f"sent; table {table} does not exist on {using!r} (migrate)", None
        deadline = time.monotonic() + STORE_WITHIN
        while True:
            stored = self._stored_events(using).first()
            if stored is not None:
                return True, f"sent and stored ({table} id {stored.pk})", None
            if time.monotonic() > deadline:
                return False, f"sent, but no row appeared in {table} on {using!r}", None
            time.sleep(0.05)

    # ----- bookkeeping ------------------------------------------------------

    def _receive(self, sender, event: SettledEvent, **kwargs: Any) -> None:
        if event.database == self.alias:
            self.events.append(event)

    def _stored_events(self, using: str):
        from orca_db_app.models import RetryEvent as StoredEvent

        since = datetime.datetime.fromtimestamp(self.started_at - 1, tz=datetime.UTC)
        return StoredEvent.objects.using(using).filter(
            database=self.alias, statement__contains=MARKER, occurred_at__gte=since
        )

    def _clean_up(self, table: str) -> None:
        """Drop the scratch table and the events this run stored: they record
        faults the command made, not the cluster's."""
        errors = []
        try:
            admin = driver_connect(self.alias, connect_timeout=10)
            try:
                admin.cursor().execute(f"DROP TABLE IF EXISTS {table}")
            finally:
                admin.close()
        except Exception as error:
            errors.append(f"could not drop table {table}: {_describe(error)}")
        try:
            from orca_db_app.models import RetryEvent as StoredEvent

            using = router.db_for_write(StoredEvent)
            if StoredEvent._meta.db_table in connections[using].introspection.table_names():
                self._stored_events(using).delete()
        except Exception as error:
            errors.append(f"could not delete the events it stored: {_describe(error)}")
        for problem in errors:
            self.stderr.write(f"aurora_verify: {problem}")

    def _write_table(self, results: list[Result], server_version: str, verbosity: int) -> None:
        if verbosity >= 1:
            engine = self.connection.settings_dict["ENGINE"]
            self.stdout.write(
                f"Verifying retries on database {self.alias!r} "
                f"({engine}, {driver_name(self.alias)}, PostgreSQL {server_version})"
            )
            if not _has_retry_layer(self.connection):
                self.stdout.write(
                    f"  note: {engine} has no retry layer (orca_db.backends.aurora, "
                    f"orca_db.backends.aurora_data_api)"
                )
        width = max(len(result.name) for result in results)
        for result in results:
            status = self.style.SUCCESS("PASS") if result.passed else self.style.ERROR("FAIL")
            line = f"{status}  {result.name:<{width}}"
            if verbosity >= 1 or not result.passed:
                line += f"  {result.detail}"
            self.stdout.write(line)
            if verbosity >= 2 or (verbosity >= 1 and not result.passed):
                if result.injected:
                    self.stdout.write(f"      injected: {result.injected}")
                for event in result.retry_events:
                    self.stdout.write(f"      retry event: {event}")
        if verbosity >= 1:
            injected = [result for result in results if result.injected]
            provoked = [event for result in results for event in result.retry_events]
            self.stdout.write(
                f"Injected on purpose: {len(injected)} fault(s), which provoked "
                f"{len(provoked)} retry event(s); orca_db's log lines about them were "
                f"held back (-v 2 lists them here)."
            )
        failed = [result.name for result in results if not result.passed]
        if failed:
            self.stderr.write(
                f"{len(failed)} of {len(results)} checks failed: " + "; ".join(failed)
            )
        elif verbosity >= 1:
            self.stdout.write(self.style.SUCCESS(f"All {len(results)} checks passed."))


def _has_retry_layer(connection) -> bool:
    """The aurora engines (and backends built on their mixins) retry; a
    stock backend does not."""
    if isinstance(connection, AuroraRetryMixin):
        return True
    with contextlib.suppress(ImportError):  # the Data API engine needs boto3
        from orca_db.backends.aurora_data_api.base import DatabaseWrapper as DataApiWrapper

        return isinstance(connection, DataApiWrapper)
    return False


def _storage_receiver_connected() -> bool:
    """Whether orca_db_app's storage receiver listens to ``retry_event``
    (the app may be installed before that receiver exists or is enabled)."""
    with contextlib.suppress(Exception):
        live = retry_event._live_receivers(SettledEvent)
        receivers = [*live[0], *live[1]] if isinstance(live, tuple) else list(live)
        return any(
            getattr(receiver, "__module__", "").startswith("orca_db_app.") for receiver in receivers
        )
    return False
