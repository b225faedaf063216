"""Statement classification checked against a real server: the allowlist
against the server's catalogue, replayable reads inside READ ONLY
transactions, Django's own statements, restorable session effects."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, F, Max, Q, Sum
from django.db.models.functions import ExtractYear, TruncDay

from orca_db.classify import driver_error
from orca_db.sql import catalog_review, is_replayable_read, profile, session_effects
from orca_db.sql._pg_catalog import FUNCTIONS, OPERATORS, TYPES
from tests.conftest import admin_connection
from tests.test_statements import REPLAYABLE
from tests.testapp.models import Note, Tag

pytestmark = pytest.mark.django_db(transaction=True)

READ_ONLY_VIOLATION = "25006"
# What a query can call: no "internal" arguments or results, no triggers
# (the generator's rule).
CALLABLE = """
    pronamespace = 'pg_catalog'::regnamespace
    AND NOT 'internal'::regtype = ANY (proargtypes::oid[])
    AND prorettype NOT IN ('internal'::regtype, 'trigger'::regtype, 'event_trigger'::regtype)
"""

# Parameters for the REPLAYABLE statements that have placeholders.
PARAMS = {
    'SELECT %s AS "a" FROM "testapp_note" WHERE "testapp_note"."text" = %s LIMIT 1': (1, "a"),
    'SELECT "testapp_note"."id", "testapp_note"."text", "testapp_note"."created", '
    'COUNT("testapp_tag"."id") AS "c" FROM "testapp_note" LEFT OUTER JOIN "testapp_tag" '
    'ON ("testapp_note"."id" = "testapp_tag"."note_id") GROUP BY "testapp_note"."id" '
    'HAVING COUNT("testapp_tag"."id") > %s': (0,),
    'SELECT EXTRACT(YEAR FROM "testapp_note"."created" AT TIME ZONE %s) AS "y", '
    'DATE_TRUNC(%s, "testapp_note"."created" AT TIME ZONE %s) AS "d" FROM "testapp_note"': (
        "UTC",
        "day",
        "UTC",
    ),
    'SELECT "testapp_note"."id" AS "id" FROM "testapp_note" '
    'WHERE UPPER("testapp_note"."text"::text) LIKE UPPER(%s)': ("%a%",),
    'SELECT "testapp_note"."id", "testapp_note"."text", "testapp_note"."created" '
    'FROM "testapp_note" WHERE "testapp_note"."text" = %s LIMIT 21': ("b",),
    'SELECT "testapp_note"."id", "testapp_note"."text", "testapp_note"."created" '
    'FROM "testapp_note" WHERE ("testapp_note"."id" IN (SELECT U0."note_id" AS "note_id" '
    'FROM "testapp_tag" U0) OR "testapp_note"."text" = %s)': ("z",),
    'SELECT "t"."id" FROM "t" WHERE ("t"."data" -> %s) = %s': ("a", "1"),
    'SELECT "t"."id" FROM "t" WHERE "t"."data" ? %s': ("a",),
    'SELECT "t"."id" FROM "t" WHERE "t"."data" @> %s': ("{}",),
    'SELECT ("t"."data" #>> %s) AS "k" FROM "t"': ("{a}",),
    'SELECT "t"."id" FROM "t" WHERE "t"."data" ?| %s': (["a"],),
    "SELECT %s::jsonb": ("{}",),
    "SELECT a FROM t WHERE s LIKE 'a%%' AND c = %(name)s": {"name": 1},
    "SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = %s) LIMIT 10 OFFSET 5": (1,),
}


@pytest.fixture
def tables():
    """The tables the statement tables of tests/test_statements.py read."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE t (id int, a int, b int, c int, x int, s text, data jsonb);"
            "CREATE TABLE u (a int, b int, c int);"
            'CREATE TABLE "insert" ("update" int, "delete" int)'
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute('DROP TABLE t, u, "insert"')


def sqlstate(error: BaseException) -> str | None:
    inner = driver_error(error)
    return getattr(inner, "sqlstate", None) or getattr(inner, "pgcode", None)


def run_read_only(sql: str, params=None) -> None:
    """Run ``sql`` in a READ ONLY transaction, as the backend runs a replay."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION READ ONLY")
        cursor.execute(sql, params)


def server_rows(sql: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# ----- the allowlist against the server's catalogue -------------------------------


def test_every_volatile_function_is_reviewed():
    """A VOLATILE function may be in the allowlist only with a reason in
    VOLATILE_READS; and a server with VOLATILE functions nobody reviewed
    (a newer PostgreSQL) fails here until they are."""
    query = f"SELECT proname FROM pg_proc WHERE {CALLABLE} AND provolatile = 'v'"
    volatile = {row[0] for row in server_rows(query)}
    allowed_unreviewed = sorted(
        name for name in volatile & FUNCTIONS if name not in catalog_review.VOLATILE_READS
    )
    assert allowed_unreviewed == []
    unreviewed = sorted(
        name
        for name in volatile
        if name not in catalog_review.VOLATILE_READS and catalog_review.denial(name) is None
    )
    assert unreviewed == [], "review these and rerun scripts/generate_pg_functions.py"


def test_the_allowlist_names_this_servers_builtins():
    functions = {row[0] for row in server_rows(f"SELECT proname FROM pg_proc WHERE {CALLABLE}")}
    operators = {row[0] for row in server_rows("SELECT oprname FROM pg_operator")}
    types = {row[0] for row in server_rows("SELECT typname FROM pg_type")}
    # Most names exist on this server (the rest come from another version).
    assert len(FUNCTIONS & functions) > 0.95 * len(FUNCTIONS)
    assert operators >= OPERATORS
    assert len(TYPES & types) > 0.95 * len(TYPES)


def test_allowlisted_functions_without_arguments_write_nothing():
    """Every allowlisted function a query can call without arguments runs
    in a READ ONLY transaction without the server calling it a write."""
    names = sorted(
        {
            row[0]
            for row in server_rows(
                f"SELECT proname FROM pg_proc WHERE {CALLABLE} AND prokind = 'f' AND pronargs = 0"
            )
        }
        & FUNCTIONS
    )
    assert len(names) > 50
    refused = []
    for name in names:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION READ ONLY")
                cursor.execute("SET LOCAL statement_timeout = '5s'")
                cursor.execute(f'SELECT * FROM pg_catalog."{name}"()')
        except DatabaseError as error:
            if sqlstate(error) == READ_ONLY_VIOLATION:
                refused.append(name)
    assert refused == []


# ----- replayable reads inside READ ONLY ------------------------------------------


@pytest.mark.parametrize("sql", REPLAYABLE)
def test_replayable_reads_run_in_a_read_only_transaction(tables, sql):
    """Defence in depth: what the classifier replays, the server agrees is
    a read (the backend replays inside BEGIN READ ONLY)."""
    assert is_replayable_read(sql)
    run_read_only(sql, PARAMS.get(sql))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_notify('orca_test', 'x')",
        "SELECT set_config('orca.test', 'x', false)",
    ],
)
def test_read_only_alone_is_not_enough(sql):
    """These change something (a lock, a notification, a setting), yet a
    READ ONLY transaction runs them: the classifier must refuse them."""
    assert not is_replayable_read(sql)
    run_read_only(sql)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock_all()")


# ----- Django's own statements -------------------------------------------------------


def test_django_statements(tables):
    """The statements the installed Django sends for common ORM calls: reads
    are replayable and run read-only, the rest are not, savepoints are
    named as the server sees them."""
    sent: list[tuple[str, object]] = []

    def capture(execute, sql, params, many, context):
        sent.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        note = Note.objects.create(text="a")
        Tag.objects.bulk_create([Tag(note=note, name="x"), Tag(note=note, name="y")])
        Note.objects.filter(text="a").exists()
        Note.objects.count()
        list(Note.objects.annotate(c=Count("tag")).filter(c__gt=0))
        Note.objects.aggregate(Sum("id"), Max("created"))
        list(
            Note.objects.annotate(y=ExtractYear("created"), d=TruncDay("created")).values("y", "d")
        )
        list(Note.objects.order_by("?")[:2])
        list(Note.objects.filter(text__icontains="A").values_list("id", flat=True))
        list(Tag.objects.select_related("note").filter(note__text__startswith="a"))
        list(Note.objects.filter(Q(id__in=Tag.objects.values("note_id")) | Q(text="z")))
        with transaction.atomic():
            list(Note.objects.select_for_update().filter(id=note.id))
            with transaction.atomic():
                Note.objects.filter(id=note.id).update(text=F("text"))
            Note.objects.get_or_create(text="b")
        Note.objects.filter(text="b").delete()

    reads = [(sql, params) for sql, params in sent if sql.startswith("SELECT")]
    assert len(reads) >= 10
    for sql, params in sent:
        read = sql.startswith("SELECT") and "FOR UPDATE" not in sql
        assert is_replayable_read(sql) is read, sql
        if read:
            run_read_only(sql, params)
        if sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")):
            assert profile(sql).savepoint_name == sql.split('"')[1]


def test_django_time_zone_statement_is_a_restorable_setting():
    sql = connection.ops.set_time_zone_sql()
    assert profile(sql).session
    (effect,) = session_effects(sql)
    assert (effect.kind, effect.name, effect.restorable) == ("set", "timezone", True)


# ----- restorable effects, on two real sessions ---------------------------------------


@pytest.mark.parametrize(
    "sql, params, setting",
    [
        ("SET search_path = pg_catalog, public", None, "search_path"),
        ("SELECT set_config('orca.test', %s, false)", ["restored"], "orca.test"),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", None,
         "default_transaction_read_only"),
        ("SET TIME ZONE 'Asia/Tokyo'", None, "timezone"),
    ],
)  # fmt: skip
def test_restorable_effects_are_restored_by_running_them_again(sql, params, setting):
    """Running a restorable statement again on a new session gives that
    session the same setting the first one had."""
    assert all(effect.restorable for effect in session_effects(sql))
    values = []
    for _ in range(2):  # two sessions
        conn = admin_connection()
        try:
            cursor = conn.cursor()
            cursor.execute("SELECT current_setting(%s, true)", [setting])
            default = cursor.fetchone()[0]
            cursor.execute(sql, params)
            cursor.execute("SELECT current_setting(%s, true)", [setting])
            values.append(cursor.fetchone()[0])
        finally:
            conn.close()
    assert values[0] == values[1] != default
