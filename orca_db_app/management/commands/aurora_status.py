"""``manage.py aurora_status``: the cluster as AWS sees it, and the database
as it answers.

From the RDS API and CloudWatch (``OPTIONS["aurora"]["cluster"]``): status,
engine version, capacity range, ``SecondsUntilAutoPause``, current capacity
(0: paused), the writer's status. From the database, when the cluster is not
paused (connecting would resume it) and it answers within ``--timeout``: the
connection count and the sessions ``aurora_blockers`` would list.
Exit codes: 0 reported, 1 the database did not answer, 2 usage or
configuration error (docs/commands.md#aurora_status).
"""

from __future__ import annotations

import math
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django.db import connections

from orca_db.classify import classify
from orca_db.conf import retry_settings
from orca_db.sql import scrub_message
from orca_db_app.management.base import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    DatabaseCommand,
    connect_with,
    driver_params,
)
from orca_db_app.management.commands.aurora_blockers import list_sessions

CONNECTIONS_SQL = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"


class Probe:
    """Connect and ask, in a thread of its own, so that the command keeps to
    its timeout while libpq waits."""

    def __init__(self, params: dict[str, Any]):
        self.params = params
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        threading.Thread(target=self._run, name="aurora_status", daemon=True).start()

    def _run(self) -> None:
        try:
            conn = connect_with(self.params)
            try:
                cursor = conn.cursor()
                cursor.execute(CONNECTIONS_SQL)
                count = cursor.fetchone()[0]
                sessions, _ = list_sessions(cursor, conn.info.server_version)
            finally:
                conn.close()
            blocking = sum(1 for s in sessions if s["reasons"][0]["kind"] != "connected")
            self.result = {"connections": count, "sessions": sessions, "blocking": blocking}
        except BaseException as error:
            self.error = error
        finally:
            self.done.set()


class Command(DatabaseCommand):
    help = (
        "Show the Aurora cluster's state from the RDS API and CloudWatch (status, "
        "capacity, paused or not, writer) and, unless it is paused, the database's "
        "connections and blocking sessions. Exit 0 reported, 1 the database did not "
        "answer, 2 usage or configuration error."
    )

    default_timeout = 10.0

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--no-database",
            action="store_true",
            help="Ask AWS only; do not connect to the database.",
        )

    def handle(
        self, *, database: str, as_json: bool, timeout: float, no_database: bool,
        verbosity: int, **options: Any,
    ) -> None:  # fmt: skip
        self.database_alias(database)
        from orca_db.aws.rds import ClusterUnavailable, cluster_status

        try:
            aws = retry_settings(connections[database]).aws
            if aws is None or not aws.cluster:
                raise CommandError(
                    f"Database {database!r} names no cluster: set "
                    f"OPTIONS['aurora']['cluster'] to its DB cluster identifier.",
                    returncode=EXIT_USAGE,
                )
            cluster = cluster_status(aws)
        except (ImproperlyConfigured, ClusterUnavailable) as error:
            raise CommandError(str(error), returncode=EXIT_USAGE) from None

        db: dict[str, Any]
        if no_database:
            db = {"queried": False, "reason": "--no-database"}
        elif cluster.paused:
            db = {"queried": False, "reason": "the cluster is paused; connecting would resume it"}
        else:
            db = self._ask_database(database, timeout)
        code = EXIT_FAILED if db["queried"] and not db["answered"] else EXIT_OK
        if db.get("refused"):
            code = EXIT_USAGE
        if as_json:
            self.write_json(
                {"database": database, "cluster": cluster.as_dict(), "db": db, "exit_code": code}
            )
        else:
            self._write_text(database, cluster, db, verbosity)
        self.exit(code)

    def _ask_database(self, alias: str, timeout: float) -> dict[str, Any]:
        probe = Probe(driver_params(alias, math.ceil(timeout)))
        if not probe.done.wait(timeout):
            return {"queried": True, "answered": False, "error": f"no answer within {timeout:g} s"}
        if probe.error is not None:
            failure = classify(probe.error)
            message = " ".join(scrub_message(failure.message).split())
            return {
                "queried": True,
                "answered": False,
                "refused": not failure.retryable,
                "error": f"{failure.error_type}: {message}",
            }
        return {"queried": True, "answered": True, **(probe.result or {})}

    def _write_text(self, alias: str, cluster, db: dict[str, Any], verbosity: int) -> None:
        out = self.stdout.write
        engine = " ".join(x for x in (cluster.engine, cluster.engine_version) if x)
        out(f"Cluster {cluster.identifier!r} ({engine}): {cluster.state}")
        if cluster.capacity is None:
            capacity = "unknown (no CloudWatch datapoint in the last 15 minutes)"
        else:
            capacity = f"{cluster.capacity:g} ACU (minute of {cluster.capacity_at:%H:%M} UTC)"
        out(f"  capacity: {capacity}")
        if cluster.min_acu is not None:
            pause = cluster.seconds_until_auto_pause
            pause_text = f", auto-pause after {pause} s idle" if pause else ""
            out(f"  range: {cluster.min_acu:g}-{cluster.max_acu:g} ACU{pause_text}")
        out(f"  writer: {cluster.writer or '-'} ({cluster.writer_status or 'unknown'})")
        if not db["queried"]:
            out(f"Database {alias!r}: not queried ({db['reason']}).")
        elif not db["answered"]:
            self.stderr.write(f"Database {alias!r} did not answer: {db['error']}")
        else:
            out(
                f"Database {alias!r}: {db['connections']} client connection(s); "
                f"{db['blocking']} session(s) can block a scaling point, every "
                f"connection blocks auto-pause."
            )
            if verbosity >= 2:
                for session in db["sessions"]:
                    reasons = "; ".join(r["detail"] for r in session["reasons"])
                    out(f"  pid {session['pid']} {session['user']}: {reasons}")
