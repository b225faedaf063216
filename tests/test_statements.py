"""Statement classification (orca_db.sql): tables of statements and what they are. No database:
tests/test_statements_server.py checks the same rules against a server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orca_db.sql import (
    STATEMENT_LIMIT,
    Profile,
    SessionEffect,
    is_replayable_read,
    lexer,
    lexical,
    profile,
    scrub_message,
    scrub_sql,
    session_effects,
)
from orca_db.sql.along import commits_along_the_way
from orca_db.sql.calls import hidden_calls
from orca_db.sql.tree import driver_to_server

# Statement texts Django 5.2's PostgreSQL compiler sends (captured from the
# ORM; tests/test_statements_server.py captures them again from the
# installed Django and checks them the same way).
DJANGO_READS = [
    'SELECT %s AS "a" FROM "testapp_note" WHERE "testapp_note"."text" = %s LIMIT 1',
    'SELECT COUNT(*) AS "__count" FROM "testapp_note"',
    'SELECT "testapp_note"."id", "testapp_note"."text", "testapp_note"."created", '
    'COUNT("testapp_tag"."id") AS "c" FROM "testapp_note" LEFT OUTER JOIN "testapp_tag" '
    'ON ("testapp_note"."id" = "testapp_tag"."note_id") GROUP BY "testapp_note"."id" '
    'HAVING COUNT("testapp_tag"."id") > %s',
    'SELECT SUM("testapp_note"."id") AS "id__sum", MAX("testapp_note"."created") AS '
    '"created__max" FROM "testapp_note"',
    'SELECT EXTRACT(YEAR FROM "testapp_note"."created" AT TIME ZONE %s) AS "y", '
    'DATE_TRUNC(%s, "testapp_note"."created" AT TIME ZONE %s) AS "d" FROM "testapp_note"',
    'SELECT "testapp_note"."id", "testapp_note"."text", "testapp_note"."created" '
    'FROM "testapp_note" ORDER BY RANDOM() ASC LIMIT 2',
    'SELECT "testapp_note"."id" AS "id" FROM "testapp_note" '
    'WHERE UPPER("testapp_note"."text"::text) LIKE UPPER(%s)',
    'SELECT "testapp_note"."id", "testapp_note"."text", "testapp_note"."created" '
    'FROM "testapp_note" WHERE "testapp_note"."text" = %s LIMIT 21',
    'SELECT "testapp_note"."id", "testapp_note"."text", "testapp_note"."created" '
    'FROM "testapp_note" WHERE ("testapp_note"."id" IN (SELECT U0."note_id" AS "note_id" '
    'FROM "testapp_tag" U0) OR "testapp_note"."text" = %s)',
    # JSONField lookups: key transform, has_key, contains, path, has_any_keys
    'SELECT "t"."id" FROM "t" WHERE ("t"."data" -> %s) = %s',
    'SELECT "t"."id" FROM "t" WHERE "t"."data" ? %s',
    'SELECT "t"."id" FROM "t" WHERE "t"."data" @> %s',
    'SELECT ("t"."data" #>> %s) AS "k" FROM "t"',
    'SELECT "t"."id" FROM "t" WHERE "t"."data" ?| %s',
    "SELECT %s::jsonb",
]
DJANGO_WRITES = [
    'INSERT INTO "testapp_note" ("text", "created") VALUES (%s, %s) RETURNING "testapp_note"."id"',
    'INSERT INTO "testapp_tag" ("note_id", "name") SELECT * FROM UNNEST((%s)::bigint[], '
    '(%s)::text[]) RETURNING "testapp_tag"."id"',
    'SELECT "testapp_note"."id", "testapp_note"."text", "testapp_note"."created" '
    'FROM "testapp_note" WHERE "testapp_note"."id" = %s FOR UPDATE',
    'UPDATE "testapp_note" SET "text" = "testapp_note"."text" WHERE "testapp_note"."id" = %s',
    'DELETE FROM "testapp_note" WHERE "testapp_note"."id" IN (%s)',
    'SAVEPOINT "s139882792700800_x1"',
    'RELEASE SAVEPOINT "s139882792700800_x1"',
    'ROLLBACK TO SAVEPOINT "s139882792700800_x1"',
    "SELECT set_config('TimeZone', %s, false)",
]

REPLAYABLE = [
    *DJANGO_READS,
    "SELECT 1",
    "select 1;",
    "  (SELECT 1) UNION (SELECT 2)",
    "((VALUES (1), (2)))",
    "TABLE t",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
    "SHOW TimeZone",
    "SHOW ALL",
    "EXPLAIN SELECT 1",
    "EXPLAIN (FORMAT JSON, COSTS off) SELECT * FROM t",
    "SELECT 'INSERT INTO t' AS text",
    'SELECT "update", "delete" FROM "insert"',  # keywords as quoted names
    "-- INSERT\nSELECT 1",
    "/* DELETE /* nested */ still a comment */ SELECT 1",
    "SELECT 'a--b', lower('x')",
    "SELECT '/*', lower('x'), '*/'",
    "SELECT $q$--$q$, lower('x')",
    "SELECT 'it''s; DELETE FROM t'",
    "SELECT $$;$$, E'\\';', U&'\\0041'",
    "SELECT count(*) FILTER (WHERE a > 1) OVER (PARTITION BY b) FROM t",
    "SELECT pg_catalog.lower('A'), \"lower\"('B')",
    "SELECT now(), clock_timestamp(), random(), gen_random_uuid(), pg_sleep(0)",
    "SELECT a BETWEEN 1 AND 2, a IS DISTINCT FROM b, NULLIF(a, b), COALESCE(a, 0) FROM t",
    "SELECT x FROM t WHERE a = ANY(SELECT 1) ORDER BY a USING <",
    "SELECT * FROM generate_series(1, 3) AS g(n)",
    "SELECT * FROM t TABLESAMPLE SYSTEM (10) REPEATABLE (1)",
    "SELECT CAST(a AS varchar(10)), s::timestamptz, ARRAY[c]::bigint[] FROM t",
    "SELECT a FROM t WHERE s LIKE 'a%%' AND c = %(name)s",
    "SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = %s) LIMIT 10 OFFSET 5",
    "SELECT 5 % 2",  # the modulo operator, in a text sent without parameters
]

NOT_REPLAYABLE = [
    *DJANGO_WRITES,
    # issue 12: the lexer must not take a literal for a comment, nor a
    # function of your own for a read
    "SELECT 'a--b', f(x)",
    "SELECT '/*', f(x), '*/'",
    "SELECT $q$--$q$, f(x)",
    'SELECT "f"(x)',
    "SELECT * FROM f(x)",
    "SELECT pg_notify('c', 'x')",
    "SELECT pg_try_advisory_lock(1)",
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t FOR NO KEY UPDATE",
    "SELECT * FROM t FOR SHARE",
    "SELECT * FROM t FOR KEY SHARE",
    "SELECT * FROM t FOR UPDATE SKIP LOCKED",
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET a = 1",
    "DELETE FROM t",
    "MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "WITH x AS (SELECT 1), d AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x",
    "SELECT * INTO new_table FROM t",
    "SELECT nextval('s')",
    "SELECT setval('s', 1)",
    "SELECT currval('s')",
    "SELECT txid_current()",
    "SELECT pg_current_xact_id()",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_advisory_xact_lock(1)",
    "SELECT set_config('a.b', 'c', false)",
    "SELECT lo_import('/etc/passwd')",
    "SELECT dblink_exec('x', 'DELETE FROM t')",
    "SELECT query_to_xml('SELECT nextval(''s'')', true, true, '')",
    "SELECT pg_terminate_backend(1)",
    "SELECT 1; DELETE FROM t",
    "SELECT 1; SELECT 2",
    "EXPLAIN ANALYZE DELETE FROM t",
    "EXPLAIN ANALYZE SELECT 1",
    "EXPLAIN (ANALYZE) SELECT 1",
    "EXPLAIN DELETE FROM t",
    "SELECT public.lower('A')",
    "SELECT myschema.now()",
    "SELECT 'x'::mytype",
    "SELECT CAST(a AS public.domain_with_a_check) FROM t",
    "SELECT a === b FROM t",
    "SELECT a OPERATOR(public.+) b FROM t",
    "SELECT * FROM t TABLESAMPLE my_method (10)",
    "LOCK TABLE t",
    "CREATE TABLE t (a int)",
    "SET search_path = x",
    "COPY t FROM STDIN",
    "CALL p()",
    "DO $$BEGIN DELETE FROM t; END$$",
    "NOTIFY c",
    "LISTEN c",
    "PREPARE p AS SELECT 1",
    "EXECUTE p",
    "DECLARE c CURSOR FOR SELECT 1",
    "FETCH 10 FROM c",
    "VACUUM t",
    "BEGIN",
    "COMMIT",
    b"INSERT INTO t VALUES (1)",
    "",
    "   ",
    "-- just a comment",
    "SELEC 1",  # the server's parser refuses it
    "SELECT 'unterminated",
    # A placeholder inside a literal or comment: drivers fill it in there too
    "SELECT * FROM t WHERE name LIKE '%s'",
    "SELECT 1 -- %s\n",
    # UESCAPE changes how a name is spelled: not decoded here
    "SELECT U&\"!0070g_notify\" UESCAPE '!' ('c', 'x')",
]


@pytest.mark.parametrize("sql", REPLAYABLE)
def test_replayable_reads(sql):
    assert is_replayable_read(sql)
    assert profile(sql).maybe_read


@pytest.mark.parametrize("sql", NOT_REPLAYABLE)
def test_not_replayable(sql):
    assert not is_replayable_read(sql)


@pytest.mark.parametrize("sql", REPLAYABLE + NOT_REPLAYABLE)
def test_maybe_read_is_necessary(sql):
    """The cheap hint never says no to a statement the parser would allow."""
    if is_replayable_read(sql):
        assert profile(sql).maybe_read


def test_what_is_not_text_is_unknown():
    class Composed:  # like psycopg.sql.Composed: unhashable
        __hash__ = None  # type: ignore[assignment]

    assert profile(Composed()) == lexical.UNKNOWN
    assert profile(object()) == lexical.UNKNOWN
    assert lexical.UNKNOWN.session and not lexical.UNKNOWN.maybe_read
    assert not is_replayable_read(Composed())
    assert session_effects(Composed()) == (SessionEffect("unknown"),)


# ----- profile ------------------------------------------------------------------


def P(first, control=None, *, name=None, chain=False, read=False, session=False, multiple=False):
    return Profile(first, control, name, chain, read, session, multiple)


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT 1", P("SELECT", read=True)),
        ("  /* c */ -- d\n ((select 1))", P("SELECT", read=True)),
        ("", P("")),
        ('"SELECT" 1', P("")),
        ("BEGIN", P("BEGIN", "begin")),
        ("begin transaction isolation level serializable", P("BEGIN", "begin")),
        ("START TRANSACTION READ ONLY", P("START", "begin")),
        ("COMMIT", P("COMMIT", "commit")),
        ("END WORK", P("END", "commit")),
        ("COMMIT AND CHAIN", P("COMMIT", "commit", chain=True)),
        ("COMMIT AND NO CHAIN", P("COMMIT", "commit")),
        ("ROLLBACK", P("ROLLBACK", "rollback")),
        ("ABORT TRANSACTION", P("ABORT", "rollback")),
        ("ROLLBACK WORK AND CHAIN", P("ROLLBACK", "rollback", chain=True)),
        ('SAVEPOINT "s140_x1"', P("SAVEPOINT", "savepoint", name="s140_x1")),
        ("SAVEPOINT Mixed_Case", P("SAVEPOINT", "savepoint", name="mixed_case")),
        ('SAVEPOINT "Mixed""Q"', P("SAVEPOINT", "savepoint", name='Mixed"Q')),
        ('RELEASE SAVEPOINT "s140_x1"', P("RELEASE", "release", name="s140_x1")),
        ("RELEASE sp", P("RELEASE", "release", name="sp")),
        ('ROLLBACK TO SAVEPOINT "s140_x1"', P("ROLLBACK", "rollback_to", name="s140_x1")),
        ("rollback work to sp", P("ROLLBACK", "rollback_to", name="sp")),
        ("ROLLBACK TO savepoint", P("ROLLBACK", "rollback_to", name="savepoint")),
        ("PREPARE TRANSACTION 'g'", P("PREPARE", "prepare_transaction")),
        ("COMMIT PREPARED 'g'", P("COMMIT", "commit_prepared")),
        ("ROLLBACK PREPARED 'g'", P("ROLLBACK", "rollback_prepared")),
        ("SELECT 1; COMMIT", P("SELECT", "mixed", multiple=True)),
        ("BEGIN; SELECT 1", P("BEGIN", "begin", multiple=True)),
        ("SELECT 1;;", P("SELECT", read=True)),
        ("FETCH 10 FROM c", P("FETCH")),
        ("EXPLAIN ANALYSE SELECT 1", P("EXPLAIN")),
        ("SET LOCAL x = 1", P("SET", session=True)),
        ("SELECT 1 FROM t FOR UPDATE", P("SELECT")),
    ],
)  # fmt: skip
def test_profile(sql, expected):
    assert profile(sql) == expected


SESSION = [
    "SET search_path = a",
    "set local statement_timeout = 0",
    "SET ROLE bob",
    "RESET ROLE",
    "SET SESSION AUTHORIZATION bob",
    "SET TIME ZONE 'UTC'",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "RESET ALL",
    "DISCARD ALL",
    "LISTEN c",
    "UNLISTEN *",
    "PREPARE p AS SELECT 1",
    "DEALLOCATE p",
    "LOAD 'auto_explain'",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "DO $$BEGIN PERFORM set_config('a', 'b', false); END$$",
    "CREATE TEMP TABLE t (a int)",
    "CREATE GLOBAL TEMPORARY TABLE t (a int)",
    "CREATE TEMPORARY VIEW v AS SELECT 1",
    "CREATE TABLE pg_temp.t (a int)",
    'CREATE FUNCTION "pg_temp".f() RETURNS int AS $$SELECT 1$$ LANGUAGE sql',
    "SELECT 1 INTO TEMP t",
    "SELECT set_config('a.b', 'c', false)",
    "SELECT pg_catalog.set_config(%s, %s, false)",
    'SELECT "set_config"(%s, %s, false)',
    "SELECT set_config /* why not */ (%s, %s, false)",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_advisory_lock_shared(1)",
    "SELECT pg_try_advisory_lock(1)",
    "SELECT pg_try_advisory_lock_shared(1, 2)",
    "SELECT pg_advisory_unlock(1)",
    "SELECT pg_advisory_unlock_shared(1)",
    "SELECT pg_advisory_unlock_all()",
    "SELECT dblink_connect('c', 'dbname=x')",
    "SELECT setseed(0.5)",
    "SELECT 1; SET x = 1",
    "EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1",
    "SELECT U&\"!0070g_advisory_lock\" UESCAPE '!' (1)",
]


@pytest.mark.parametrize("sql", SESSION)
def test_session_statements(sql):
    assert profile(sql).session
    assert not profile(sql).maybe_read
    assert session_effects(sql), "a session statement with no effect found by the parser"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "SELECT temp FROM weather",
        "SELECT 'SET x = 1', 'pg_advisory_lock(1)'",
        'SELECT "pg_advisory_lock" FROM t',  # a column
        "SELECT pg_advisory_xact_lock(1)",  # ends with the transaction
        "INSERT INTO t VALUES ('CREATE TEMP TABLE')",
        "COMMIT",
        "PREPARE TRANSACTION 'x'",
        "FETCH 10 FROM c",
        "ALTER ROLE bob SET search_path = a",  # for bob's next sessions
    ],
)
def test_not_session_statements(sql):
    assert not profile(sql).session


# ----- session effects ------------------------------------------------------------

E = SessionEffect


@pytest.mark.parametrize(
    "sql, effects",
    [
        ("SET search_path = a, b", [E("set", "search_path", False, True)]),
        ("SET LOCAL Statement_Timeout TO 0", [E("set", "statement_timeout", True, True)]),
        ("SET ROLE bob", [E("set", "role", False, True)]),
        ("SET SESSION AUTHORIZATION 'bob'", [E("set", "session_authorization", False, True)]),
        ("SET TIME ZONE 'UTC'", [E("set", "timezone", False, True)]),
        ("SET NAMES 'UTF8'", [E("set", "client_encoding", False, True)]),
        ("SET x.y TO DEFAULT", [E("set", "x.y", False, True)]),
        ("SET x FROM CURRENT", [E("set", "x", False, False)]),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY",
         [E("set", "transaction_isolation", True, True),
          E("set", "transaction_read_only", True, True)]),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
         [E("set", "default_transaction_read_only", False, True)]),
        ("SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
         [E("set", "transaction_snapshot", True, False)]),
        ("SET CONSTRAINTS ALL DEFERRED", [E("set", "constraints", True, True)]),
        ("RESET search_path", [E("reset", "search_path", False, True)]),
        ("RESET SESSION AUTHORIZATION", [E("reset", "session_authorization", False, True)]),
        ("RESET ALL", [E("reset_all", None, False, True)]),
        ("DISCARD ALL", [E("discard_all", None, False, True)]),
        ("DISCARD TEMP", [E("discard_temp", None, False, True)]),
        ("DISCARD PLANS", [E("discard_plans", None, False, True)]),
        ("DISCARD SEQUENCES", [E("discard_sequences", None, False, True)]),
        ('LISTEN "Chan"', [E("listen", "Chan")]),
        ("UNLISTEN chan", [E("unlisten", "chan", False, True)]),
        ("UNLISTEN *", [E("unlisten_all", None, False, True)]),
        ("PREPARE p(int) AS SELECT $1", [E("prepare", "p")]),
        ("DEALLOCATE p", [E("deallocate", "p")]),
        ("DEALLOCATE ALL", [E("deallocate_all", None, False, True)]),
        ("LOAD 'auto_explain'", [E("load", "auto_explain")]),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", [E("held_cursor", "c")]),
        ("DECLARE c CURSOR FOR SELECT 1", [E("held_cursor", "c", True)]),
        ("CREATE TEMP TABLE t (a int)", [E("temp_table", "t")]),
        ("CREATE TEMP TABLE t (a int) ON COMMIT DROP", [E("temp_table", "t", True)]),
        ("CREATE TEMP TABLE t ON COMMIT DROP AS SELECT 1", [E("temp_table", "t", True)]),
        ("CREATE TABLE pg_temp.t (a int)", [E("temp_table", "t")]),
        ("CREATE TEMP VIEW v AS SELECT 1", [E("temp_table", "v")]),
        ("CREATE TEMP SEQUENCE s", [E("temp_table", "s")]),
        ("SELECT 1 INTO TEMP t", [E("temp_table", "t")]),
        ("CREATE FUNCTION pg_temp.f() RETURNS int AS 'SELECT 1' LANGUAGE sql", [E("temp_table")]),
        ("SELECT set_config('TimeZone', %s, false)", [E("set", "timezone", False, True)]),
        ("SELECT pg_catalog.set_config(%(n)s, %(v)s, false) AS x", [E("set", None, False, True)]),
        ("SELECT set_config('a.b', 'c', true)", [E("set", "a.b", True, True)]),
        ("SELECT set_config('a.b', 'c', %s)", [E("set", "a.b", False, False)]),
        ("SELECT set_config('a.b', lower(%s), false)", [E("set", "a.b", False, False)]),
        ("SELECT set_config('a.b', 'c', false) FROM t", [E("set", "a.b", False, False)]),
        ("SELECT set_config('a', 'b', false), pg_advisory_lock(1)",
         [E("set", "a", False, False), E("advisory_lock", "1")]),
        ("SELECT pg_advisory_lock(1, 2)", [E("advisory_lock", "1,2")]),
        ("SELECT pg_try_advisory_lock(%s)", [E("advisory_lock")]),
        ("SELECT pg_advisory_xact_lock(7)", [E("advisory_lock", "7", True)]),
        ("SELECT pg_try_advisory_xact_lock_shared(7)", [E("advisory_lock", "7", True)]),
        ("SELECT pg_advisory_unlock(7)", [E("advisory_unlock", "7")]),
        ("SELECT pg_advisory_unlock_all()", [E("advisory_unlock_all")]),
        ("SELECT dblink_connect('c', 'dbname=x')", [E("unknown", "dblink_connect")]),
        ("SELECT setseed(0.5)", [E("unknown", "setseed")]),
        ("DO $$BEGIN END$$", [E("unknown", "do")]),
        ("SET a = 1; SET b = 2", [E("set", "a", False, True), E("set", "b", False, True)]),
        ("SET a = 1; INSERT INTO t VALUES (1)", [E("set", "a", False, False)]),
        ("EXPLAIN ANALYZE SELECT pg_advisory_lock(1)", [E("advisory_lock", "1")]),
        ("SELECT 1", []),
        ("INSERT INTO t VALUES (1)", []),
        ("SET x = ", [E("unknown")]),
    ],
)  # fmt: skip
def test_session_effects(sql, effects):
    assert session_effects(sql) == tuple(effects)


def test_session_effects_of_bytes():
    assert session_effects(b"SET a = 1") == (E("set", "a", False, True),)


class Composed:
    """Not text (as psycopg.sql.Composed): nothing can be known of it."""


@pytest.mark.parametrize(
    "analysis, of_composed",
    [
        (session_effects, (E("unknown"),)),
        (hidden_calls, True),
        (commits_along_the_way, True),
        (is_replayable_read, False),
        (scrub_sql, "Composed"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_every_analysis_reads_bytes_as_their_text_and_knows_nothing_of_the_rest(
    analysis, of_composed
):
    for sql in ("SELECT my_func(1) -- x", "SET a = 1", "SELECT 1; COMMIT", "SELECT 'é'"):
        assert analysis(sql.encode()) == analysis(sql)
    assert analysis(b"SELECT '\xff'") == analysis("SELECT '\ufffd'")
    assert analysis(Composed()) == of_composed


# ----- the lexer ---------------------------------------------------------------------


def kinds(sql):
    return [(t.kind, sql[t.start : t.end]) for t in lexer.tokens(sql) if t.kind != lexer.SPACE]


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("'a--b'", [("string", "'a--b'")]),
        ("-- 'a\n'b'", [("comment", "-- 'a"), ("string", "'b'")]),
        ("/* a /* b */ c */x", [("comment", "/* a /* b */ c */"), ("word", "x")]),
        ("/* unterminated", [("comment", "/* unterminated")]),
        ("'it''s'", [("string", "'it''s'")]),
        ("E'\\'--'x", [("string", "E'\\'--'"), ("word", "x")]),
        ("e'\\\\'", [("string", "e'\\\\'")]),
        ("'\\'x", [("string", "'\\'"), ("word", "x")]),  # standard strings: \ is plain
        ("somE'x'", [("word", "somE"), ("string", "'x'")]),
        ("U&'\\0041'", [("string", "U&'\\0041'")]),
        ("B'01' X'ff' N'n'", [("string", "B'01'"), ("string", "X'ff'"), ("string", "N'n'")]),
        ("$$a'b$$", [("string", "$$a'b$$")]),
        ("$q$ $$ $x$ $q$", [("string", "$q$ $$ $x$ $q$")]),
        ("$1 a$b$", [("param", "$1"), ("word", "a$b$")]),
        ('"a""b" U&"\\0041"', [("qident", '"a""b"'), ("qident", 'U&"\\0041"')]),
        ("%s %(n)s %% %b %t", [("placeholder", p) for p in ["%s", "%(n)s", "%%", "%b", "%t"]]),
        ("5 % 2", [("number", "5"), ("op", "%"), ("number", "2")]),
        ("1.5e3 .5 0x1F 1_000", [("number", n) for n in ["1.5e3", ".5", "0x1F", "1_000"]]),
        ("a+--x\n", [("word", "a"), ("op", "+"), ("comment", "--x")]),
        ("größe", [("word", "größe")]),
    ],
)
def test_lexer(sql, expected):
    assert kinds(sql) == expected


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT %s, %(a)s, %(b)s, %(a)s, %s", "SELECT $1, $2, $3, $2, $4"),
        ("SELECT 'a%%b' LIKE %s", "SELECT 'a%%b' LIKE $1"),  # literals untouched
        ("SELECT 10 %% 3", "SELECT 10 % 3"),
    ],
)
def test_placeholders_become_parameters(sql, expected):
    assert driver_to_server(sql)[0] == expected


def test_unicode_identifier_is_decoded():
    assert profile('SAVEPOINT U&"s\\0031"').savepoint_name == "s1"


# ----- the cache --------------------------------------------------------------------


def test_profile_cache_is_bounded():
    lexical.clear_cache()
    for n in range(lexical.CACHE_LIMIT + 10):
        profile(f"SELECT {n}")
    assert 0 < len(lexical.PROFILES) <= lexical.CACHE_LIMIT
    assert profile("SELECT 1") is profile("SELECT 1")


def test_bytes_are_cached_as_their_text():
    assert profile(b"SAVEPOINT a") == profile("SAVEPOINT a")
    assert b"SAVEPOINT a" in lexical.PROFILES


def test_import_is_light():
    """``import orca_db.sql`` runs at every Lambda cold start: no
    parser, no dataclasses, not even the lexer until a statement is seen."""
    heavy = ("pglast", "dataclasses", "orca_db.sql._pg_catalog", "orca_db.sql.lexer")
    code = f"import sys, orca_db.sql; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----- scrubbing ----------------------------------------------------------------------


def test_scrub_sql_removes_literals_and_comments():
    sql = (
        "SELECT * FROM users /* token=abc */ WHERE pw = 'hunter2' AND x = $q$s3cr3t$q$ AND id = %s"
    )
    scrubbed = scrub_sql(sql)
    assert scrubbed == "SELECT * FROM users WHERE pw = ? AND x = ? AND id = %s"


@pytest.mark.parametrize(
    "sql, expected",
    [
        # issue 12: a literal holding -- or /* must not hide the rest of it
        ("SELECT 'a--secret1' FROM t", "SELECT ? FROM t"),
        ("SELECT '/*', 'secret2', '*/' FROM t", "SELECT ?, ?, ? FROM t"),
        ("SELECT E'\\'--secret3', \"col\" FROM t", 'SELECT ?, "col" FROM t'),
        ("SELECT $a$ $$ secret4 $a$, U&'secret5', X'ff'", "SELECT ?, ?, ?"),
        ("SELECT 1 /* a /* secret6 */ b */ -- c\n + 2", "SELECT 1 + 2"),
        ("SELECT 'unterminated secret7", "SELECT ?"),
    ],
)
def test_scrub_sql(sql, expected):
    assert scrub_sql(sql) == expected


def test_scrub_sql_truncates():
    assert len(scrub_sql("SELECT " + "a, " * 1000)) == STATEMENT_LIMIT


def test_scrub_sql_of_other_objects():
    assert scrub_sql(b"SELECT 'x'") == "SELECT ?"
    assert scrub_sql(object()) == "object"


@pytest.mark.parametrize(
    "message, secret",
    [
        ("connection failed: host=db password=hunter2 dbname=x", "hunter2"),
        ("could not connect to postgresql://orca:hunter2@db:5432/x", "hunter2"),
        ("duplicate key value\nDETAIL:  Key (email)=(a@b.c) already exists.", "a@b.c"),
        # messages as the drivers give them (taken from a real server)
        ('invalid input syntax for type integer: "secretparam"\n'
         "LINE 1: SELECT 'secretparam'::int\n               ^\n", "secretparam"),
        ('invalid input syntax for type integer: "secretparam"\n'
         "CONTEXT:  unnamed portal parameter $1 = 'secretparam'", "secretparam"),
        ("syntax error at or near \"y\"\nLINE 1: SELECT 'hunter2' x y\n    ^", "hunter2"),
        ("unterminated quoted string at or near \"'hunter2\"\nLINE 1: SELECT 'hunter2\n ^",
         "hunter2"),
        ('invalid value "secr" for "YYYY"\nDETAIL:  Value must be an integer.', "secr"),
        ('malformed array literal: "{secret"', "secret"),
        ("invalid input syntax for type integer: \"secret\"\nQUERY:  SELECT 'secret'::int\n"
         "CONTEXT:  PL/pgSQL function inline_code_block line 1 at PERFORM", "secret"),
        ('invalid dsn: missing "=" after "hunter2" in connection info string', "hunter2"),
    ],
)  # fmt: skip
def test_scrub_message(message, secret):
    scrubbed = scrub_message(message)
    assert secret not in scrubbed
    assert scrubbed


def test_scrub_message_keeps_what_helps():
    assert scrub_message('relation "testapp_note" does not exist') == (
        'relation "testapp_note" does not exist'
    )
    assert scrub_message(
        "terminating connection due to administrator command\nSSL connection has been closed"
    ) == ("terminating connection due to administrator command SSL connection has been closed")
    assert scrub_message('syntax error at or near "SELEC"\nLINE 1: SELEC 1\n^') == (
        'syntax error at or near "SELEC"'
    )


# ----- the allowlist and the review agree --------------------------------------------


def test_denied_and_session_functions_are_not_allowlisted():
    from orca_db.sql import catalog_review
    from orca_db.sql._pg_catalog import FUNCTIONS
    from orca_db.sql.analysis import SESSION_FUNCTIONS

    assert not FUNCTIONS & SESSION_FUNCTIONS
    assert not {name for name in FUNCTIONS if catalog_review.denial(name)}
    assert not FUNCTIONS & set(catalog_review.DENIED)
    assert not set(catalog_review.DENIED) & set(catalog_review.VOLATILE_READS)


def test_identifier_characters_are_postgresqls_over_every_code_point():
    """The lexer's identifier classes (written as the ASCII they exclude, a
    pattern that compiles in milliseconds) accept exactly PostgreSQL's
    characters: A-Za-z_ and everything from U+0080; then digits and $."""
    import re

    from orca_db.sql import lexer

    start = re.compile(lexer._IDENT_START)
    cont = re.compile(lexer._IDENT_CONT)
    tag = re.compile(lexer._TAG_CONT)
    for code in range(0x110000):
        char = chr(code)
        first = char.isascii() and (char.isalpha() or char == "_") or code >= 0x80
        assert bool(start.fullmatch(char)) == first, hex(code)
        assert bool(tag.fullmatch(char)) == (first or char.isdigit() and char.isascii()), hex(code)
        assert bool(cont.fullmatch(char)) == (
            first or char.isascii() and (char.isdigit() or char == "$")
        ), hex(code)
    assert [t.kind for t in lexer.tokens("SELECT ñame$1, $tag$x$tag$")] == [
        "word", "space", "word", "op", "space", "string",
    ]  # fmt: skip
