"""Adopting a database whose ORCA tables already exist (made by ORCA's own
SQL), instead of creating them.

The tables of a PostgreSQL schema are described as plain strings, read from
the catalogs (``pg_attribute``, ``pg_constraint``, ``pg_index``), so two
databases can be compared and a difference printed the way a person reads
DDL. :class:`AdoptOrCreate`, the operation of migration 0001, creates the
tables on an empty database and, on one that has them all, checks they match
the shape the migration would have made: a match is adopted (nothing is
changed), anything else is refused with the differences.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import migrations

logger = logging.getLogger("orca_db.migrations")

# The catalogs render a name schema-qualified unless its schema is on the
# search_path; with only pg_catalog there, every name reads "orca.<table>",
# whatever the role's own search_path is.
_NEUTRAL_SEARCH_PATH = "pg_catalog"

_TABLES_SQL = """
    SELECT c.relname, c.relkind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""

_COLUMNS_SQL = """
    SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
           pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
"""

_CONSTRAINTS_SQL = """
    SELECT con.conname, pg_get_constraintdef(con.oid)
    FROM pg_constraint con
    JOIN pg_class c ON c.oid = con.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %s AND c.relname = %s
"""

# Indexes that are not the index of a constraint (a partial unique index, say).
_INDEXES_SQL = """
    SELECT ic.relname, pg_get_indexdef(i.indexrelid)
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_class c ON c.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %s AND c.relname = %s
      AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid
                      AND con.conrelid = i.indrelid)
"""


class SchemaMismatch(Exception):
    """Existing tables differ from what the migration would create."""


def existing_tables(connection, schema: str) -> dict[str, str]:
    """``{table: kind}`` of the schema's tables (partitions left out)."""
    with connection.cursor() as cursor:
        cursor.execute(_TABLES_SQL, [schema])
        return {name: "partitioned table" if kind == "p" else "table" for name, kind in cursor}


def describe_tables(connection, schema: str, tables) -> dict[str, dict[str, Any]]:
    """The shape of ``tables`` in ``schema``: per table its kind, partition
    key, columns, constraints and other indexes, each as a string."""
    present = existing_tables(connection, schema)
    described: dict[str, dict[str, Any]] = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('search_path')")
        saved = cursor.fetchone()[0]
        cursor.execute("SELECT set_config('search_path', %s, false)", [_NEUTRAL_SEARCH_PATH])
        try:
            for table in tables:
                if table not in present:
                    continue
                described[table] = _describe_table(cursor, schema, table, present[table])
        finally:
            cursor.execute("SELECT set_config('search_path', %s, false)", [saved])
    return described


def _describe_table(cursor, schema: str, table: str, kind: str) -> dict[str, Any]:
    columns = {}
    cursor.execute(_COLUMNS_SQL, [schema, table])
    for name, type_, not_null, default, identity, generated in cursor.fetchall():
        text = type_ + (" NOT NULL" if not_null else "")
        if generated:
            text += f" GENERATED ALWAYS AS ({default}) STORED"
        elif default is not None:
            text += f" DEFAULT {default}"
        if identity:
            text += " GENERATED {} AS IDENTITY".format(
                "ALWAYS" if identity == "a" else "BY DEFAULT"
            )
        columns[name] = text
    cursor.execute(_CONSTRAINTS_SQL, [schema, table])
    constraints = dict(cursor.fetchall())
    cursor.execute(_INDEXES_SQL, [schema, table])
    indexes = dict(cursor.fetchall())
    partition_key = None
    if kind == "partitioned table":
        cursor.execute("SELECT pg_get_partkeydef(%s::regclass)", [f'"{schema}"."{table}"'])
        partition_key = cursor.fetchone()[0]
    return {
        "kind": kind,
        "partition_key": partition_key,
        "columns": columns,
        "constraints": constraints,
        "indexes": indexes,
    }


def _index_shape(name: str, definition: str) -> str:
    # "CREATE UNIQUE INDEX name ON ..." -> the same without the name.
    return definition.replace(f" INDEX {name} ON ", " INDEX ON ", 1)


def compare(expected: dict, actual: dict, *, names: bool = False) -> list[str]:
    """Differences between two descriptions, one line each; empty when they
    match. Constraint and index names count only with ``names=True``: a
    database made by another tool may name them otherwise, and a name
    changes nothing a client sees."""
    lines: list[str] = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            lines.append(f"{table}: missing")
            continue
        if table not in expected:
            lines.append(f"{table}: not expected")
            continue
        want, have = expected[table], actual[table]
        for key in ("kind", "partition_key"):
            if want[key] != have[key]:
                lines.append(f"{table}: {key} is {have[key]!r}, expected {want[key]!r}")
        for column in sorted(set(want["columns"]) | set(have["columns"])):
            a, b = want["columns"].get(column), have["columns"].get(column)
            if a == b:
                continue
            if b is None:
                lines.append(f"{table}.{column}: missing (expected {a})")
            elif a is None:
                lines.append(f"{table}.{column}: not expected ({b})")
            else:
                lines.append(f"{table}.{column}: is {b}, expected {a}")
        for key in ("constraints", "indexes"):
            if names:
                w = {f"{n} {d}" for n, d in want[key].items()}
                h = {f"{n} {d}" for n, d in have[key].items()}
            elif key == "indexes":
                w = {_index_shape(n, d) for n, d in want[key].items()}
                h = {_index_shape(n, d) for n, d in have[key].items()}
            else:
                w, h = set(want[key].values()), set(have[key].values())
            singular = key[:-1] if key == "constraints" else "index"
            for item in sorted(w - h):
                lines.append(f"{table}: missing {singular} {item}")
            for item in sorted(h - w):
                lines.append(f"{table}: unexpected {singular} {item}")
    return lines


def plan(connection, schema: str, expected: dict) -> tuple[str, list[str]]:
    """What :class:`AdoptOrCreate` would do on ``connection``: ``("create",
    [])``, ``("adopt", [])`` or ``("refuse", differences)``."""
    present = set(existing_tables(connection, schema))
    ours = set(expected)
    found = ours & present
    if not found:
        return "create", []
    if found != ours:
        missing = ", ".join(sorted(ours - found))
        return "refuse", [
            f"some ORCA tables exist ({len(found)} of {len(ours)}) and some do not: {missing}"
        ]
    differences = compare(expected, describe_tables(connection, schema, sorted(ours)))
    return ("refuse", differences) if differences else ("adopt", [])


class AdoptOrCreate(migrations.SeparateDatabaseAndState):
    """Run ``operations`` on a database without the tables; on one that has
    them all in the expected shape, change nothing (adopt them); otherwise
    stop with the differences. The migration state is the same either way."""

    def __init__(self, *, schema: str, expected: dict, operations: list):
        self.schema = schema
        self.expected = expected
        self.inner = operations
        super().__init__(database_operations=operations, state_operations=operations)

    def deconstruct(self):
        return (
            self.__class__.__qualname__,
            [],
            {"schema": self.schema, "expected": self.expected, "operations": self.inner},
        )

    def describe(self) -> str:
        return f"Create the tables of schema {self.schema!r}, or adopt them if they exist"

    def explain_plan(self, connection) -> list[str]:
        """What applying it would do on ``connection``, for
        ``aurora_migrate --plan``: the first line the verdict, then any
        differences."""
        action, differences = plan(connection, self.schema, self.expected)
        verdict = {
            "create": f"create the tables of schema {self.schema!r}",
            "adopt": f"adopt the existing tables of schema {self.schema!r} (they match)",
            "refuse": f"REFUSE: the existing tables of schema {self.schema!r} differ",
        }[action]
        return [verdict, *differences]

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not schema_editor.collect_sql:  # sqlmigrate shows the create path
            action, differences = plan(schema_editor.connection, self.schema, self.expected)
            if action == "refuse":
                raise SchemaMismatch(
                    f"The existing tables of schema {self.schema!r} do not match "
                    f"this migration, so they cannot be adopted:\n  "
                    + "\n  ".join(differences)
                    + "\nMigrate them to the expected shape first (docs/orca-schema.md)."
                )
            if action == "adopt":
                logger.info("Adopted the existing tables of schema %r: they match.", self.schema)
                return
        super().database_forwards(app_label, schema_editor, from_state, to_state)


class WithoutLikeIndexes(migrations.operations.base.Operation):
    """Keep the ``text_pattern_ops`` ("_like") indexes Django adds beside a
    text primary key from being created on ``tables`` (ORCA has none).
    Django queues them to run when the migration ends, so they are taken off
    that queue rather than dropped by a later statement."""

    reduces_to_sql = True
    reversible = True

    def __init__(self, tables: list[str]):
        self.tables = tables

    def deconstruct(self):
        return (self.__class__.__qualname__, [self.tables], {})

    def describe(self) -> str:
        return "Skip the LIKE indexes of " + ", ".join(self.tables)

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        schema_editor.deferred_sql = [
            statement
            for statement in schema_editor.deferred_sql
            if not (
                "text_pattern_ops" in str(statement)
                and any(
                    getattr(statement, "references_table", lambda _: False)(table)
                    for table in self.tables
                )
            )
        ]

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass
