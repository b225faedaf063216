"""The Data API driver (``orca_db.data_api``) through the local endpoint on
the test server: values round trip with their PostgreSQL types, the Data
API's rules (varchar strings, one statement per call) hold, transactions
start, end and get lost as the Data API's do, and limits are named."""

from __future__ import annotations

import datetime
import decimal
import threading
import uuid

import pytest
from django.db import connections

from orca_db import data_api
from orca_db.data_api import errors
from orca_db.testing.data_api import Limits
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
UTC = datetime.UTC


@pytest.fixture
def conn(data_api_endpoint):
    connection = data_api.connect(
        database=connections["default"].settings_dict["NAME"],
        resource_arn=data_api_endpoint.cluster_arn,
        secret_arn=data_api_endpoint.secret_arn,
    )
    yield connection
    connection.close()


@pytest.fixture
def table(conn):
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE data_api_t (id int PRIMARY KEY, u uuid, note text)")
    yield "data_api_t"
    conn.rollback()
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE data_api_t")


def on_server(sql, params=None):
    with connections["default"].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


SLEEPING = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s"


def one(conn, sql, params=None):
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() if cursor.description else None


@pytest.mark.parametrize(
    ("value", "sql_type"),
    [
        (7, "int"),
        (2**62, "bigint"),
        (1.25, "float8"),
        (decimal.Decimal("12345678901234567890.123"), "numeric"),
        ("é ' \\ %", "text"),
        (b"\x00\x01\xff", "bytea"),
        (True, "bool"),
        (datetime.date(2024, 2, 29), "date"),
        (datetime.time(23, 59, 58, 123456), "time"),
        (datetime.datetime(2024, 2, 29, 1, 2, 3, 456789), "timestamp"),
        (datetime.datetime(2024, 2, 29, 1, 2, 3, 456789, tzinfo=UTC), "timestamptz"),
        (datetime.timedelta(days=3, seconds=7, microseconds=11), "interval"),
        (uuid.uuid4(), "uuid"),
        ([1, 2, None], "int[]"),
        (["a,b", 'c"d', None], "text[]"),
        ([[1.5], [2.5]], "float8[]"),
        ([datetime.date(2024, 1, 1)], "date[]"),
    ],
)
def test_values_round_trip_with_their_type(conn, value, sql_type):
    row = one(conn, f"SELECT %s::{sql_type}, pg_typeof(%s::{sql_type})::text", [value, value])
    assert row[0] == value
    assert row[1] == one(conn, f"SELECT pg_typeof(NULL::{sql_type})::text")[0]


def test_timestamptz_comes_back_in_utc_whatever_the_offset_sent(conn):
    sent = datetime.datetime(
        2024, 6, 1, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=5))
    )
    (got,) = one(conn, "SELECT %s::timestamptz", [sent])
    assert got == sent and got.tzinfo == UTC


def test_a_string_is_a_varchar_as_behind_the_real_data_api(conn, table):
    # The Data API binds a stringValue as varchar (JDBC's default), so a
    # string is refused where a uuid is needed: the driver sends a UUID with
    # its typeHint instead.
    with conn.cursor() as cursor:
        with pytest.raises(
            errors.ProgrammingError, match="uuid but expression is of type character varying"
        ):
            cursor.execute(f"INSERT INTO {table} (id, u) VALUES (1, %s)", [str(uuid.uuid4())])
        value = uuid.uuid4()
        cursor.execute(f"INSERT INTO {table} (id, u) VALUES (1, %s)", [value])
        cursor.execute(f"SELECT u FROM {table} WHERE u = %s", [value])
        assert cursor.fetchall() == [(value,)]


def test_description_and_rowcount(conn, table):
    with conn.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (id, note) VALUES (1, 'a'), (2, 'b')")
        assert cursor.rowcount == 2
        assert cursor.description is None
        cursor.execute(f"SELECT id, note FROM {table} ORDER BY id")
        assert [(c.name, c.type_code) for c in cursor.description] == [("id", 23), ("note", 25)]
        assert cursor.rowcount == 2
        assert cursor.fetchone() == (1, "a")
        assert cursor.fetchmany(5) == [(2, "b")]
        assert cursor.fetchall() == []


def test_sql_errors_carry_their_sqlstate_and_postgresql_text(conn, table):
    with conn.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (id) VALUES (1)")
        with pytest.raises(errors.IntegrityError) as caught:
            cursor.execute(f"INSERT INTO {table} (id) VALUES (1)")
    assert caught.value.sqlstate == "23505"
    assert "duplicate key value violates unique constraint" in str(caught.value)


def test_several_statements_in_one_call_are_refused_before_sending(conn, data_api_endpoint):
    calls = data_api_endpoint.stats["calls"]
    with conn.cursor() as cursor:
        with pytest.raises(errors.NotSupportedError, match="one SQL statement per call"):
            cursor.execute("SELECT 1; SELECT 2")
        cursor.execute("SELECT ';' AS \"x;y\";")  # one statement, a trailing ;
    assert data_api_endpoint.stats["calls"] == calls + 1


def test_executemany_is_one_batch_call(conn, table, data_api_endpoint):
    with conn.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} (id, note) VALUES (%s, %s)", [(1, "a"), (2, None)])
    assert data_api_endpoint.stats["batches"] == 1
    assert on_server(f"SELECT id, note FROM {table} ORDER BY id") == [(1, "a"), (2, None)]


def test_a_transaction_begins_with_its_first_statement_and_ends_with_commit(
    conn, table, data_api_endpoint
):
    conn.autocommit = False
    assert data_api_endpoint.stats["begins"] == 0
    with conn.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (id) VALUES (1)")
        assert data_api_endpoint.stats["begins"] == 1
        assert on_server(f"SELECT count(*) FROM {table}") == [(0,)]  # not committed yet
        conn.commit()
    assert on_server(f"SELECT count(*) FROM {table}") == [(1,)]
    conn.commit()  # nothing open: no call
    assert data_api_endpoint.stats["commits"] == 1


def test_rollback_undoes_and_savepoints_work_inside(conn, table):
    conn.autocommit = False
    with conn.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (id) VALUES (1)")
        cursor.execute("SAVEPOINT s")
        cursor.execute(f"INSERT INTO {table} (id) VALUES (2)")
        cursor.execute("ROLLBACK TO SAVEPOINT s")
        conn.commit()
        cursor.execute(f"INSERT INTO {table} (id) VALUES (3)")
        conn.rollback()
    assert on_server(f"SELECT id FROM {table}") == [(1,)]


def test_a_transaction_ended_by_a_scale_event_is_never_silently_replaced(
    conn, table, data_api_endpoint
):
    conn.autocommit = False
    with conn.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (id) VALUES (1)")
        assert data_api_endpoint.scale_event() == 1
        with pytest.raises(errors.TransactionNotFoundException):
            cursor.execute(f"INSERT INTO {table} (id) VALUES (2)")
        # Until rollback, every statement says so again: no new transaction
        # is begun in the middle of the block.
        begins = data_api_endpoint.stats["begins"]
        with pytest.raises(errors.TransactionNotFoundException, match="roll back"):
            cursor.execute(f"INSERT INTO {table} (id) VALUES (3)")
        with pytest.raises(
            errors.TransactionNotFoundException, match="nothing of it was committed"
        ):
            conn.commit()
        assert data_api_endpoint.stats["begins"] == begins
        assert conn.broken
        conn.rollback()
        cursor.execute(f"INSERT INTO {table} (id) VALUES (4)")
        conn.commit()
    assert on_server(f"SELECT id FROM {table}") == [(4,)]


def test_a_lost_answer_inside_a_transaction_rolls_it_back(conn, table, data_api_endpoint):
    conn.autocommit = False
    with conn.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (id) VALUES (1)")
        data_api_endpoint.lose_replies(1)
        with pytest.raises(errors.ReplyLost):
            cursor.execute(f"INSERT INTO {table} (id) VALUES (2)")
    data_api_endpoint.wait_for(lambda s: s["rollbacks"] == 1)
    conn.rollback()
    assert on_server(f"SELECT count(*) FROM {table}") == [(0,)]


def test_rollback_of_a_transaction_already_gone_is_quiet(conn, table, data_api_endpoint):
    conn.autocommit = False
    one(conn, "SELECT 1")
    data_api_endpoint.scale_event()
    conn.rollback()
    assert conn.transaction_id is None


def test_the_response_size_limit_is_named_and_says_the_statement_ran(
    data_api_endpoint, conn, table
):
    data_api_endpoint.limits.response_bytes = 2000
    with conn.cursor() as cursor:
        with pytest.raises(errors.LimitExceeded, match="1 MiB per call; the statement did run"):
            cursor.execute(
                f"INSERT INTO {table} (id, note) SELECT g, repeat('x', 100) FROM "
                f"generate_series(1, 50) g RETURNING note"
            )
    assert on_server(f"SELECT count(*) FROM {table}") == [(50,)]


def test_a_statement_past_the_call_limit_times_out(data_api_endpoint, conn):
    data_api_endpoint.limits.call_seconds = 0.3
    with pytest.raises(errors.StatementTimeoutException, match="limit per call"):
        one(conn, "SELECT pg_sleep(5)")
    # Cancelled on the server: nothing of it is still running.
    assert on_server(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(5)%%'"
    ) == [(0,)]
    assert data_api_endpoint.stats["timeouts"] == 1


def test_a_transaction_without_a_call_expires(data_api_endpoint, conn, table):
    data_api_endpoint.limits.transaction_idle_seconds = 0.2
    conn.autocommit = False
    one(conn, f"INSERT INTO {table} (id) VALUES (1)")
    data_api_endpoint.wait_for(lambda s: s["expired"] == 1)
    with pytest.raises(errors.TransactionNotFoundException):
        one(conn, "SELECT 1")
    conn.rollback()
    assert on_server(f"SELECT count(*) FROM {table}") == [(0,)]


def test_one_statement_at_a_time_per_transaction(data_api_endpoint, conn, table):
    conn.autocommit = False
    one(conn, "SELECT 1")
    other = data_api.connect(
        database=conn.database, resource_arn=conn.resource_arn, secret_arn=conn.secret_arn
    )
    other.autocommit = False
    other.transaction_id = conn.transaction_id  # a second client on the same transaction
    started = threading.Event()

    def sleep():
        started.set()
        one(conn, "SELECT pg_sleep(1)")

    thread = threading.Thread(target=sleep)
    thread.start()
    started.wait()
    wait_until(lambda: on_server(SLEEPING, ["SELECT pg_sleep(1)%"]) == [(1,)])
    with pytest.raises(errors.ServiceError, match="one statement at a time"):
        one(other, "SELECT 2")
    thread.join()
    conn.rollback()


def test_a_closed_connection_refuses_work(conn):
    cursor = conn.cursor()
    conn.close()
    with pytest.raises(errors.InterfaceError):
        cursor.execute("SELECT 1")


def test_limits_default_to_the_data_apis():
    limits = Limits()
    assert (limits.response_bytes, limits.call_seconds, limits.transaction_idle_seconds) == (
        1 << 20,
        45.0,
        180.0,
    )


def test_the_transaction_status_reads_as_libpqs(conn, table, data_api_endpoint):
    # What orca_db.drivers (and through it retry_atomic) asks a connection.
    from orca_db import drivers

    assert drivers.transaction_status(conn) == drivers.IDLE
    conn.autocommit = False
    assert drivers.transaction_status(conn) == drivers.IDLE  # begins with a statement
    one(conn, "SELECT 1")
    assert drivers.transaction_status(conn) == drivers.INTRANS
    with pytest.raises(errors.DataError):
        one(conn, "SELECT 'x'::int")
    assert drivers.transaction_status(conn) == drivers.INERROR
    conn.rollback()
    one(conn, "SELECT 1")
    data_api_endpoint.scale_event()
    with pytest.raises(errors.TransactionNotFoundException):
        one(conn, "SELECT 1")
    assert drivers.transaction_status(conn) == drivers.UNKNOWN
    assert drivers.is_closed(conn)  # for retry_atomic: the transaction's session is gone
    conn.rollback()
    assert not drivers.Link(conn).server_closed()  # nothing to close while idle
