"""The endpoint's PostgreSQL sessions, with psycopg 3 or psycopg2 (whichever
imports: the project's tests hide psycopg 3 in their psycopg2 runs).

Every session runs in autocommit, transactions are ``BEGIN``/``COMMIT`` sent
as SQL, and results come back as PostgreSQL's text, whatever the type: the
endpoint writes the Data API's fields from that text, as the Data API
writes them from JDBC's strings.
"""

from __future__ import annotations

import contextlib
from typing import Any

try:
    import psycopg
    import psycopg.adapt
    import psycopg.postgres
    from psycopg.types.string import TextLoader

    _PSYCOPG3 = True
except ImportError:
    import psycopg2
    import psycopg2.extensions

    _PSYCOPG3 = False

#: Session settings of a Data API session: UTC, as Aurora's default
#: parameter group has it, and PostgreSQL's own output styles.
OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3"


_TYPES_SQL = "SELECT oid::int, typname::text FROM pg_type"
# Type names by (host, port, database), shared by the sessions of a process:
# loading pg_type costs a new session more than connecting does.
_type_names: dict[tuple, dict[int, str]] = {}
_text_everywhere: Any = None


def _raw(value: str | None, cursor: Any) -> str | None:
    return value


def _text_context() -> Any:
    """psycopg 3: adapters that hand every built-in type over as PostgreSQL's
    text (types made later have no loader: text already)."""
    global _text_everywhere
    if _text_everywhere is None:
        context = psycopg.adapt.AdaptersMap(psycopg.adapters)
        for info in psycopg.postgres.types:
            context.register_loader(info.oid, TextLoader)
            if info.array_oid:
                context.register_loader(info.array_oid, TextLoader)
        _text_everywhere = context
    return _text_everywhere


def _register_text(conn: Any, types: dict[int, str]) -> None:
    """psycopg2: the same, with one typecaster for every type there is."""
    global _text_everywhere
    if _text_everywhere is None:
        _text_everywhere = psycopg2.extensions.new_type(tuple(types), "ORCA_RAW", _raw)
    psycopg2.extensions.register_type(_text_everywhere, conn)


class Session:
    """One server session."""

    def __init__(self, *, host: str, port: int, user: str, password: str, dbname: str):
        kwargs: dict[str, Any] = {
            "host": host,
            "port": port,
            "user": user,
            "password": password,
            "dbname": dbname,
            "options": OPTIONS,
            "connect_timeout": 10,
            "application_name": "orca_db_data_api",
        }
        key = (host, port, dbname)
        if _PSYCOPG3:
            self.conn: Any = psycopg.connect(
                autocommit=True,
                cursor_factory=psycopg.ClientCursor,
                context=_text_context(),
                **kwargs,
            )
        else:
            self.conn = psycopg2.connect(**kwargs)
            self.conn.autocommit = True
        if key not in _type_names:
            with self.conn.cursor() as cursor:
                cursor.execute(_TYPES_SQL)
                _type_names[key] = dict(cursor.fetchall())
        self.types = _type_names[key]
        if not _PSYCOPG3:
            _register_text(self.conn, self.types)
        self.pid = self.backend_pid()
        self.dbname = dbname
        #: Inside a Data API transaction (BEGIN sent, no COMMIT/ROLLBACK yet).
        self.in_transaction = False

    def type_names(self, oids: list[int]) -> dict[int, str]:
        """Type names by OID; types made since the session began (CREATE
        TYPE) are looked up."""
        missing = [oid for oid in oids if oid not in self.types]
        if missing:
            _, rows, _ = self.run("SELECT oid, typname FROM pg_type WHERE oid = ANY(%s)", [missing])
            self.types.update((int(oid), name) for oid, name in rows)
        return self.types

    def backend_pid(self) -> int:
        if _PSYCOPG3:
            return self.conn.info.backend_pid
        return self.conn.get_backend_pid()

    def run(self, sql: str, args: list | None) -> tuple[list[tuple] | None, list, int]:
        """``(columns as (name, oid, precision, scale) or None, rows of
        text, rowcount)``."""
        with self.conn.cursor() as cursor:
            if args is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, args)
            if cursor.description is None:
                return None, [], cursor.rowcount
            columns = [(column[0], column[1], *_size(column)) for column in cursor.description]
            return columns, cursor.fetchall(), cursor.rowcount

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.cancel()

    @property
    def closed(self) -> bool:
        return bool(self.conn.closed)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def _size(column: Any) -> tuple[int, int]:
    """(precision, scale) as JDBC reports them: a varchar's length, a
    numeric's digits and decimals, else 0."""
    precision = getattr(column, "precision", None)
    if precision:
        return int(precision), int(getattr(column, "scale", None) or 0)
    display = getattr(column, "display_size", None)
    if display and display > 0:
        return int(display), 0
    return 0, 0


def sqlstate(error: BaseException) -> str | None:
    return getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)


def driver_errors() -> tuple[type[BaseException], ...]:
    if _PSYCOPG3:
        return (psycopg.Error,)
    return (psycopg2.Error,)


def error_message(error: BaseException) -> str:
    """The error as JDBC words it: ``ERROR: text`` and a ``Detail:`` line."""
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if not primary:
        return str(error).strip()
    severity = getattr(diag, "severity", None) or "ERROR"
    text = f"{severity}: {primary}"
    detail = getattr(diag, "message_detail", None)
    if detail:
        text += f"\n  Detail: {detail}"
    hint = getattr(diag, "message_hint", None)
    if hint:
        text += f"\n  Hint: {hint}"
    return text
