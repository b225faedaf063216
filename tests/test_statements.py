import pytest

from orca_db.statements import is_read_only, scrub_message, scrub_sql


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  select * from t where a = %s",
        "(SELECT 1) UNION (SELECT 2)",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "SHOW TimeZone",
        "VALUES (1), (2)",
        "SELECT 'INSERT INTO t' AS text",  # a word inside a literal
        'SELECT "update" FROM t',  # a quoted identifier
        "-- INSERT\nSELECT 1",
        "SELECT 1;",
        "EXPLAIN SELECT 1",
    ],
)
def test_reads(sql):
    assert is_read_only(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "SELECT * INTO new_table FROM t",
        "SELECT nextval('s')",
        "SELECT pg_advisory_lock(1)",
        "SELECT set_config('a.b', 'c', false)",
        "SELECT * FROM t FOR UPDATE; DELETE FROM t",
        "EXPLAIN ANALYZE DELETE FROM t",
        "LOCK TABLE t",
        "CREATE TABLE t (a int)",
        "SET search_path = x",
        "COPY t FROM STDIN",
        b"INSERT INTO t VALUES (1)",
        "",
    ],
)
def test_writes_and_unknowns(sql):
    assert not is_read_only(sql)


def test_composed_sql_counts_as_write():
    assert not is_read_only(object())


def test_scrub_sql_removes_literals_and_comments():
    sql = (
        "SELECT * FROM users /* token=abc */ WHERE pw = 'hunter2' AND x = $q$s3cr3t$q$ AND id = %s"
    )
    scrubbed = scrub_sql(sql)
    assert "hunter2" not in scrubbed and "s3cr3t" not in scrubbed and "abc" not in scrubbed
    assert scrubbed == "SELECT * FROM users WHERE pw = ? AND x = ? AND id = %s"


def test_scrub_sql_truncates():
    assert len(scrub_sql("SELECT " + "a, " * 1000)) == 1000


@pytest.mark.parametrize(
    "message, secret",
    [
        ("connection failed: host=db password=hunter2 dbname=x", "hunter2"),
        ("could not connect to postgresql://orca:hunter2@db:5432/x", "hunter2"),
        ("duplicate key value\nDETAIL:  Key (email)=(a@b.c) already exists.", "a@b.c"),
    ],
)
def test_scrub_message(message, secret):
    assert secret not in scrub_message(message)
