"""``manage.py aurora_blockers``: the sessions that keep an Aurora Serverless
cluster from reaching a scaling point or from pausing.

What blocks what (docs/commands.md#aurora_blockers): a scaling point (v1)
needs a moment with no running query, no open transaction, no temporary
table, no table or advisory lock and no LISTEN; an auto-pause (v2) needs no
connection at all. Exit codes: 0 listed (blockers or not), 1 the database
did not answer within --timeout, 2 could not run (docs/commands.md).
"""

from __future__ import annotations

import datetime
from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError, connections

from orca_db.retry import deadline_cap
from orca_db_app.management.base import (
    DatabaseCommand,
    describe_error,
    exit_code_of,
    usage_error,
)

# One row per client session other than ours, with the locks it holds and
# (PostgreSQL 16+) its temporary tables. pg_locks' relation names resolve
# only in the current database; elsewhere the relation's oid is shown.
SESSIONS_SQL = """
WITH here AS (
    SELECT oid FROM pg_database WHERE datname = current_database()
),
held AS (
    SELECT
        l.pid,
        array_agg(DISTINCT
            CASE WHEN l.database = (SELECT oid FROM here)
                THEN l.relation::regclass::text ELSE 'oid ' || l.relation END
            || ' (' || l.mode || ')'
        ) FILTER (WHERE l.locktype = 'relation') AS table_locks,
        array_agg(DISTINCT
            CASE WHEN l.objsubid = 1
                THEN ((l.classid::bigint << 32) | l.objid::bigint)::text
                ELSE '(' || l.classid || ', ' || l.objid || ')' END
            || ' (' || l.mode || ')'
        ) FILTER (WHERE l.locktype = 'advisory') AS advisory_locks
    FROM pg_locks l
    LEFT JOIN pg_class c ON l.locktype = 'relation' AND c.oid = l.relation
        AND l.database = (SELECT oid FROM here)
    WHERE l.granted AND l.pid IS NOT NULL
        AND l.locktype IN ('relation', 'advisory')
        -- catalog locks come and go with every statement; an index or a
        -- sequence is locked along with its table
        AND (l.locktype = 'advisory' OR c.oid IS NULL
             OR (c.relnamespace <> 'pg_catalog'::regnamespace
                 AND c.relkind NOT IN ('i', 'I', 'S')))
    GROUP BY l.pid
),
temp_tables AS (
    SELECT n.nspname, array_agg(c.relname::text ORDER BY c.relname) AS tables
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relpersistence = 't' AND c.relkind IN ('r', 'p')
        AND n.nspname LIKE 'pg\\_temp\\_%%'
        AND n.oid <> pg_my_temp_schema()
    GROUP BY n.nspname
),
temp_owners AS (
    -- From PostgreSQL 16 the ids pg_stat_get_backend_idset() returns are the
    -- backend numbers that name temporary schemas (pg_temp_N).
    SELECT pg_stat_get_backend_pid(id) AS pid, 'pg_temp_' || id AS nspname
    FROM pg_stat_get_backend_idset() AS id
    WHERE %(map_temp)s
)
SELECT
    a.pid, a.usename, a.application_name, host(a.client_addr), a.datname,
    a.state, a.backend_start, a.xact_start, a.query_start, now(),
    a.query, h.table_locks, h.advisory_locks, t.nspname, t.tables
FROM pg_stat_activity a
LEFT JOIN held h ON h.pid = a.pid
LEFT JOIN temp_owners o ON o.pid = a.pid
LEFT JOIN temp_tables t ON t.nspname = o.nspname
WHERE a.backend_type = 'client backend'
    AND a.pid <> pg_backend_pid()
    AND (%(all_databases)s OR a.datname = current_database())
ORDER BY coalesce(a.xact_start, a.query_start, a.backend_start), a.pid
"""

# Before PostgreSQL 16 a temporary schema cannot be traced to its session;
# its tables are still listed, under their schema.
ORPHAN_TEMP_SQL = """
SELECT n.nspname, array_agg(c.relname::text ORDER BY c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relpersistence = 't' AND c.relkind IN ('r', 'p')
    AND n.nspname LIKE 'pg\\_temp\\_%'
    AND n.oid <> pg_my_temp_schema()
GROUP BY n.nspname
ORDER BY n.nspname
"""

COLUMNS = ("PID", "AGE", "USER", "APPLICATION", "STATE", "BLOCKS BECAUSE", "QUERY")


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _age(now: datetime.datetime, then: datetime.datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


def describe_session(row: tuple, long_query: float, query_length: int) -> dict[str, Any]:
    (
        pid, user, application, client_addr, datname, state, backend_start,
        xact_start, query_start, now, query, table_locks, advisory_locks,
        temp_schema, temp_tables,
    ) = row  # fmt: skip
    state = state or ""
    xact_age = _age(now, xact_start)
    query_age = _age(now, query_start)
    reasons = []
    if state == "active" and query_age is not None and query_age >= long_query:
        reasons.append(("long_query", f"query running for {format_age(query_age)}"))
    if state.startswith("idle in transaction"):
        reasons.append(("idle_in_transaction", f"{state} for {format_age(xact_age)}"))
    elif xact_age is not None and xact_age >= long_query:
        reasons.append(("open_transaction", f"transaction open {format_age(xact_age)}"))
    if table_locks:
        reasons.append(("table_locks", "table locks: " + ", ".join(sorted(table_locks))))
    if advisory_locks:
        reasons.append(("advisory_locks", "advisory locks: " + ", ".join(sorted(advisory_locks))))
    if temp_tables:
        reasons.append(("temporary_tables", "temporary tables: " + ", ".join(temp_tables)))
    if (query or "").lstrip().upper().startswith("LISTEN"):
        reasons.append(("listen", "last statement was LISTEN"))
    if not reasons:
        reasons.append(("connected", "connected (blocks auto-pause)"))
    # The age of what blocks: the transaction, else the running query,
    # else the session itself.
    if xact_start is not None:
        age = xact_age
    elif state == "active":
        age = query_age
    else:
        age = _age(now, backend_start)
    query = " ".join((query or "").split())
    if query_length and len(query) > query_length:
        query = query[: max(1, query_length - 3)] + "..."
    return {
        "pid": pid,
        "age_seconds": round(age, 1) if age is not None else None,
        "user": user,
        "application_name": application,
        "client_addr": client_addr,
        "database": datname,
        "state": state,
        "backend_start": backend_start,
        "xact_start": xact_start,
        "query_start": query_start,
        "reasons": [{"kind": kind, "detail": detail} for kind, detail in reasons],
        "query": query,
    }


def list_sessions(
    cursor, server_version: int, *, long_query: float = 10.0, query_length: int = 60,
    all_databases: bool = False,
) -> tuple[list[dict[str, Any]], list[tuple]]:  # fmt: skip
    """The other sessions on the cursor's database (or cluster), each with
    why it blocks, and the temporary schemas PostgreSQL < 16 cannot trace to
    a session. Works on any driver cursor (aurora_status uses a plain one)."""
    map_temp = server_version >= 160000
    cursor.execute(SESSIONS_SQL, {"map_temp": map_temp, "all_databases": all_databases})
    sessions = [describe_session(row, long_query, query_length) for row in cursor.fetchall()]
    unmapped: list[tuple] = []
    if not map_temp:
        cursor.execute(ORPHAN_TEMP_SQL)
        unmapped = cursor.fetchall()
    return sessions, unmapped


class Command(DatabaseCommand):
    help = (
        "List the sessions that can block an Aurora Serverless scaling point or "
        "auto-pause: long queries, open and idle-in-transaction sessions, table and "
        "advisory locks, temporary tables, LISTEN, idle connections."
    )
    default_timeout = 60.0

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--long-query",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="A running query or open transaction older than this is listed "
            "as long-running (default: 10).",
        )
        parser.add_argument(
            "--no-idle",
            action="store_true",
            help="Leave out sessions whose only effect is blocking auto-pause "
            "(connected, idle, no transaction, no lock).",
        )
        parser.add_argument(
            "--all-databases",
            action="store_true",
            help="Sessions on every database of the cluster, not only this one.",
        )
        parser.add_argument(
            "--query-length",
            type=int,
            default=60,
            metavar="CHARS",
            help="Truncate queries to this many characters (default: 60; 0: no limit).",
        )

    def handle(
        self,
        *,
        database: str,
        as_json: bool,
        timeout: float,
        verbosity: int,
        long_query: float,
        no_idle: bool,
        all_databases: bool,
        query_length: int,
        **options: Any,
    ) -> None:
        self.database_alias(database)
        if long_query < 0:
            raise usage_error("--long-query must not be negative.")
        connection = connections[database]
        self.connect(database, timeout)
        try:
            with deadline_cap(timeout), connection.cursor() as cursor:
                sessions, unmapped = list_sessions(
                    cursor,
                    connection.pg_version,  # type: ignore[attr-defined]
                    long_query=long_query,
                    query_length=query_length,
                    all_databases=all_databases,
                )
        except DatabaseError as error:
            raise CommandError(
                f"Cannot list sessions on database {database!r}: {describe_error(error)}",
                returncode=exit_code_of(error),
            ) from error

        if no_idle:
            sessions = [s for s in sessions if s["reasons"][0]["kind"] != "connected"]
        # Before PostgreSQL 16 a temporary table cannot be tied to the
        # session that made it: listed apart, not counted as a session.
        unattributed = [{"schema": schema, "tables": list(tables)} for schema, tables in unmapped]
        if as_json:
            self.write_json(
                {
                    "database": database,
                    "long_query_seconds": long_query,
                    "sessions": sessions,
                    "unattributed_temporary_tables": unattributed,
                }
            )
        else:
            self._write_table(database, sessions, unattributed, verbosity)

    def _write_table(
        self,
        alias: str,
        sessions: list[dict[str, Any]],
        unattributed: list[dict[str, Any]],
        verbosity: int,
    ) -> None:
        if not sessions and not unattributed:
            if verbosity >= 1:
                self.stdout.write(f"No other session on database {alias!r}: nothing blocks.")
            return
        rows = [
            (
                str(s["pid"]),
                format_age(s["age_seconds"]),
                s["user"] or "-",
                s["application_name"] or "-",
                s["state"] or "-",
                "; ".join(reason["detail"] for reason in s["reasons"]),
                s["query"],
            )
            for s in sessions
        ]
        widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
        if verbosity >= 1 and rows:
            self.stdout.write(self._line(COLUMNS, widths), self.style.MIGRATE_HEADING)
        for row in rows:
            self.stdout.write(self._line(row, widths))
        for temp in unattributed:
            self.stdout.write(
                f"temporary tables in {temp['schema']}: {', '.join(temp['tables'])} "
                "(they block a scaling point; PostgreSQL < 16 cannot name their session)"
            )
        if verbosity >= 1:
            blocking = sum(1 for s in sessions if s["reasons"][0]["kind"] != "connected")
            self.stdout.write(
                f"{len(sessions)} session(s) on {alias!r}; {blocking} can block a "
                f"scaling point, all of them block auto-pause."
            )

    @staticmethod
    def _line(values, widths) -> str:
        cells = (value.ljust(width) for value, width in zip(values, widths, strict=True))
        return "  ".join(cells).rstrip()
