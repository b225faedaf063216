"""The Data API driver's SQL handling, without a server: placeholders,
parameter encoding, literals, statement counting, result decoding and
error mapping (each checked against what PostgreSQL and the Data API do in
tests/test_data_api_driver.py)."""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import uuid

import pytest
from django.db.backends.postgresql.psycopg_any import (
    DateRange,
    DateTimeTZRange,
    Jsonb,
    NumericRange,
)

from orca_db.data_api import decode, errors, literals
from orca_db.data_api.placeholders import bind, bind_many
from orca_db.data_api.sqltext import named_parameters, statement_count

UTC = datetime.UTC


# ----- placeholders ---------------------------------------------------------------


def test_positional_placeholders_become_named_parameters():
    sql, params = bind("SELECT %s, %s", [2**40, "a"])
    assert sql == "SELECT :p1, :p2"
    assert params == [
        {"name": "p1", "value": {"longValue": 2**40}},
        {"name": "p2", "value": {"stringValue": "a"}},
    ]


def test_small_ints_are_integers_as_postgresql_literals_are():
    # A longValue is a bigint: repeat(text, bigint) and jsonb -> bigint do
    # not exist, where an integer literal finds repeat(text, integer).
    assert bind("SELECT repeat('a', %s)", [3])[0] == "SELECT repeat('a', CAST(:p1 AS integer))"


def test_the_sqls_own_cast_replaces_the_drivers():
    assert bind("SELECT %s::int8range, %s", [NumericRange(1, 5), NumericRange(1, 5)])[0] == (
        "SELECT :p1::int8range, CAST(:p2 AS int4range)"
    )
    assert bind("SELECT %s :: bigint", [1])[0] == "SELECT :p1 :: bigint"


def test_percent_percent_is_a_literal_percent_even_inside_quotes():
    sql, _ = bind("SELECT '%%' || %s LIKE '%%x'", ["a"])
    assert sql == "SELECT '%' || :p1 LIKE '%x'"


def test_without_parameters_the_text_is_sent_unchanged():
    assert bind("SELECT '%%', 100 % 7", None) == ("SELECT '%%', 100 % 7", [])


def test_an_empty_parameter_list_still_reads_placeholders():
    assert bind("SELECT '%%'", []) == ("SELECT '%'", [])


def test_named_placeholders_repeat_one_parameter():
    sql, params = bind("SELECT %(a)s + %(a)s, %(b c)s", {"a": "x", "b c": "y"})
    assert sql == "SELECT :p1 + :p1, :p2"
    assert [p["name"] for p in params] == ["p1", "p2"]


def test_a_placeholder_after_a_colon_is_not_read_as_a_cast():
    sql, _ = bind("SELECT a[%s:%s]", [2**40, 2**41])
    assert sql == "SELECT a[:p1: :p2]"
    assert [name for _, _, name in named_parameters(sql)] == ["p1", "p2"]


@pytest.mark.parametrize(
    ("sql", "params", "message"),
    [
        ("SELECT %s", [], "1 placeholder(s) but 0"),
        ("SELECT %s", [1, 2], "1 placeholder(s) but 2"),
        ("SELECT %d", [1], "only '%s'"),
        ("SELECT %", [], "incomplete"),
        ("SELECT %(a)s", [1], "pass a mapping"),
        ("SELECT %(a)s", {"b": 1}, "no value for placeholder %(a)s"),
        ("SELECT %s, %(a)s", {"a": 1}, "mixes"),
        ("SELECT %s", "a", "not a string"),
    ],
)
def test_placeholder_mistakes_are_programming_errors(sql, params, message):
    with pytest.raises(
        errors.ProgrammingError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        bind(sql, params)


def test_a_batch_shares_one_text_or_says_it_cannot():
    sql, sets = bind_many("INSERT INTO t VALUES (%s)", [[None], [1]])
    assert sql == "INSERT INTO t VALUES (CAST(:p1 AS integer))"
    assert sets == [
        [{"name": "p1", "value": {"isNull": True}}],
        [{"name": "p1", "value": {"longValue": 1}}],
    ]
    # An aware datetime needs a cast an int does not: not one text.
    now = datetime.datetime.now(UTC)
    assert bind_many("INSERT INTO t VALUES (%s)", [["a"], [now]]) is None


# ----- parameter types ------------------------------------------------------------


def _one(value):
    sql, params = bind("%s", [value])
    return sql, params[0] if params else None


@pytest.mark.parametrize(
    ("value", "field", "hint", "sql"),
    [
        (None, {"isNull": True}, None, ":p1"),
        (True, {"booleanValue": True}, None, ":p1"),
        (2**63 - 1, {"longValue": 2**63 - 1}, None, ":p1"),
        (2**63, {"stringValue": str(2**63)}, None, "CAST(:p1 AS numeric)"),
        (1.5, {"doubleValue": 1.5}, None, ":p1"),
        (float("nan"), {"stringValue": "NaN"}, None, "CAST(:p1 AS double precision)"),
        (decimal.Decimal("1.50"), {"stringValue": "1.50"}, "DECIMAL", ":p1"),
        (decimal.Decimal("NaN"), {"stringValue": "NaN"}, None, "CAST(:p1 AS numeric)"),
        ("x", {"stringValue": "x"}, None, ":p1"),
        (b"\x00\xff", {"blobValue": b"\x00\xff"}, None, ":p1"),
        (memoryview(b"ab"), {"blobValue": b"ab"}, None, ":p1"),
        (datetime.date(2024, 2, 29), {"stringValue": "2024-02-29"}, "DATE", ":p1"),
        (datetime.time(1, 2, 3, 4), {"stringValue": "01:02:03.000004"}, "TIME", ":p1"),
        (
            datetime.datetime(2024, 1, 2, 3, 4, 5),
            {"stringValue": "2024-01-02 03:04:05.000000"},
            "TIMESTAMP",
            ":p1",
        ),
        (
            datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            {"stringValue": "2024-01-02 03:04:05.000000+00:00"},
            None,
            "CAST(:p1 AS timestamptz)",
        ),
        (
            datetime.timedelta(days=-1, seconds=5),
            {"stringValue": "-1 days 5.000000 seconds"},
            None,
            "CAST(:p1 AS interval)",
        ),
        (uuid.UUID(int=1), {"stringValue": str(uuid.UUID(int=1))}, "UUID", ":p1"),
        (ipaddress.ip_address("10.0.0.1"), {"stringValue": "10.0.0.1"}, None, "CAST(:p1 AS inet)"),
        (7, {"longValue": 7}, None, "CAST(:p1 AS integer)"),
        (2**31, {"longValue": 2**31}, None, ":p1"),
        ([1, None, 3], {"stringValue": '{"1",NULL,"3"}'}, None, "CAST(:p1 AS integer[])"),
        ([2**40], {"stringValue": '{"1099511627776"}'}, None, "CAST(:p1 AS bigint[])"),
        ([["a"], ['b"\\']], {"stringValue": '{{"a"},{"b\\"\\\\"}}'}, None, "CAST(:p1 AS text[])"),
    ],
)
def test_each_type_travels_with_its_type(value, field, hint, sql):
    text, parameter = _one(value)
    assert text == sql
    assert parameter["value"] == field
    assert parameter.get("typeHint") == hint


def test_an_empty_array_is_an_untyped_literal():
    assert bind("%s", [[]]) == ("'{}'", [])
    assert bind("%s", [[None, None]]) == ("'{NULL,NULL}'", [])


def test_json_wrappers_of_either_driver_are_jsonb():
    # Django's PostgreSQL operations wrap JSONField values in the driver's
    # Jsonb (psycopg 3's, or Django's subclass of psycopg2's Json).
    assert _one(Jsonb({"a": 1})) == (
        "CAST(:p1 AS jsonb)",
        {"name": "p1", "value": {"stringValue": '{"a": 1}'}, "typeHint": "JSON"},
    )


def test_subclasses_of_known_types_are_encoded_as_their_base():
    from django.utils.safestring import SafeString

    class Small(int):  # psycopg 3's Int4 is one
        pass

    assert _one(SafeString("<b>"))[1]["value"] == {"stringValue": "<b>"}
    assert _one(Small(5))[1]["value"] == {"longValue": 5}


def test_an_unknown_type_is_refused():
    with pytest.raises(errors.ProgrammingError, match="cannot adapt type 'object'"):
        bind("%s", [object()])


# ----- literals -------------------------------------------------------------------


def test_literals_quote_as_the_parameters_type():
    assert literals.quote("it's") == "'it''s'"
    assert literals.quote("a\\b") == "E'a\\\\b'"
    assert literals.quote(None) == "NULL"
    assert literals.quote(b"\x01") == "'\\x01'::bytea"
    assert literals.quote(datetime.date(2024, 1, 2)) == "'2024-01-02'::date"
    assert literals.quote([1, 2]) == '\'{"1","2"}\'::integer[]'
    assert literals.mogrify("SELECT %s, '%%'", [2**40]) == "SELECT 1099511627776, '%'"
    assert literals.quote(-1) == "-1"
    with pytest.raises(errors.DataError):
        literals.quote("nul\x00")


# ----- statements -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "count"),
    [
        ("SELECT 1", 1),
        ("SELECT 1;", 1),
        ("SELECT 1; SELECT 2", 2),
        ("SELECT ';'", 1),
        ('SELECT 1 AS ";"', 1),
        ("SELECT 1; -- ; comment", 1),
        ("/* ; /* nested ; */ */ SELECT 1", 1),
        ("SELECT $tag$;$tag$", 1),
        ("SELECT E'\\';'", 1),
        ("SELECT E'\\\\';'", 2),
        ("", 0),
    ],
)
def test_statements_are_counted_outside_literals_and_comments(sql, count):
    assert statement_count(sql) == count


def test_parameters_are_read_outside_literals_and_never_as_casts():
    sql = "SELECT :a, ':b', x::int, \"c:d\", $$:e$$ -- :f"
    assert [name for _, _, name in named_parameters(sql)] == ["a"]


# ----- results --------------------------------------------------------------------


def _decoded(type_name: str, field: dict):
    return decode.rows([{"name": "c", "typeName": type_name}], [[field]])[0][0]


@pytest.mark.parametrize(
    ("type_name", "field", "value"),
    [
        ("int4", {"longValue": 3}, 3),
        ("float8", {"doubleValue": 1.5}, 1.5),
        ("bool", {"booleanValue": False}, False),
        ("text", {"isNull": True}, None),
        ("numeric", {"stringValue": "1.50"}, decimal.Decimal("1.50")),
        ("bytea", {"blobValue": b"\x00"}, b"\x00"),
        ("date", {"stringValue": "2024-02-29"}, datetime.date(2024, 2, 29)),
        ("time", {"stringValue": "01:02:03.5"}, datetime.time(1, 2, 3, 500000)),
        (
            "timestamp",
            {"stringValue": "2024-01-02 03:04:05"},
            datetime.datetime(2024, 1, 2, 3, 4, 5),
        ),
        (
            "timestamptz",
            {"stringValue": "2024-01-02 03:04:05.25"},
            datetime.datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=UTC),
        ),
        (
            "timestamptz",
            {"stringValue": "2024-01-02 05:04:05+02"},
            datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        ),
        (
            "interval",
            {"stringValue": "1 day 02:00:00.5"},
            datetime.timedelta(days=1, hours=2, microseconds=500000),
        ),
        ("interval", {"stringValue": "-1 days +01:00:00"}, datetime.timedelta(days=-1, hours=1)),
        ("interval", {"stringValue": "1 mon 2 days"}, datetime.timedelta(days=32)),
        (
            "interval",
            {"stringValue": "0 years 0 mons 1 days 2 hours 3 mins 4.5 secs"},
            datetime.timedelta(days=1, hours=2, minutes=3, seconds=4.5),
        ),
        ("uuid", {"stringValue": str(uuid.UUID(int=7))}, uuid.UUID(int=7)),
        ("jsonb", {"stringValue": '{"a": 1}'}, '{"a": 1}'),
        ("json", {"stringValue": '{"a": 1}'}, {"a": 1}),
        ("inet", {"stringValue": "10.0.0.1"}, "10.0.0.1"),
        ("_int4", {"arrayValue": {"longValues": [1, 2]}}, [1, 2]),
        (
            "_date",
            {"arrayValue": {"arrayValues": [{"stringValues": ["2024-01-01"]}]}},
            [[datetime.date(2024, 1, 1)]],
        ),
    ],
)
def test_results_come_back_as_psycopg_gives_them_to_django(type_name, field, value):
    assert _decoded(type_name, field) == value


def test_description_carries_postgresql_type_oids_and_sizes():
    (column,) = decode.description(
        [{"name": "c", "label": "c", "typeName": "varchar", "precision": 20, "nullable": 1}]
    )
    assert (column.name, column.type_code, column.internal_size, column.null_ok) == (
        "c",
        1043,
        20,
        True,
    )


def test_an_unreadable_value_is_a_data_error():
    with pytest.raises(errors.DataError, match="timestamp"):
        _decoded("timestamp", {"stringValue": "infinity"})


# ----- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "cls", "sqlstate"),
    [
        ("DatabaseErrorException", "ERROR: dup; SQLState: 23505", errors.IntegrityError, "23505"),
        ("DatabaseErrorException", "ERROR: x; SQLState: 22P02", errors.DataError, "22P02"),
        ("DatabaseErrorException", "ERROR: x; SQLState: 42P01", errors.ProgrammingError, "42P01"),
        ("DatabaseErrorException", "ERROR: no code", errors.DatabaseError, None),
        ("DatabaseResumingException", "paused", errors.DatabaseResumingException, "57P03"),
        ("ThrottlingException", "Rate exceeded", errors.ThrottlingException, "57P03"),
        ("TransactionNotFoundException", "gone", errors.TransactionNotFoundException, "08003"),
        ("StatementTimeoutException", "slow", errors.StatementTimeoutException, "57014"),
        ("InternalServerErrorException", "", errors.ReplyLost, "08006"),
        (
            "BadRequestException",
            "Database returned more than the allowed response size limit",
            errors.LimitExceeded,
            None,
        ),  # fmt: skip
        ("ForbiddenException", "no", errors.ServiceError, None),
    ],
)
def test_aws_errors_become_db_api_classes(code, message, cls, sqlstate):
    error = errors.from_client_error(code, message)
    assert type(error) is cls
    assert error.sqlstate == sqlstate
    assert error.aws_code == code


def test_transport_errors_say_whether_the_call_was_sent():
    from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

    assert isinstance(
        errors.from_exception(EndpointConnectionError(endpoint_url="u")), errors.EndpointUnreachable
    )
    for sent in (ConnectionClosedError(endpoint_url="u"), ReadTimeoutError(endpoint_url="u")):
        assert isinstance(errors.from_exception(sent), errors.ReplyLost)


def test_ranges_are_typed_from_their_bounds_and_read_back():
    from orca_db.backends.aurora_data_api.base import _django_range

    assert _one(NumericRange(1, 10))[0] == "CAST(:p1 AS int4range)"
    assert _one(NumericRange(1, 2**40))[0] == "CAST(:p1 AS int8range)"
    assert _one(NumericRange(decimal.Decimal("1.5"), None))[0] == "CAST(:p1 AS numrange)"
    assert _one(DateRange(datetime.date(2024, 1, 1), None))[0] == "CAST(:p1 AS daterange)"
    assert _one(NumericRange(empty=True)) == (
        ":p1",
        {"name": "p1", "value": {"stringValue": "empty"}},
    )

    def read(type_name, text):
        meta = [{"typeName": type_name}]
        return decode.rows(meta, [[{"stringValue": text}]], range_factory=_django_range)[0][0]

    assert read("int4range", "[1,10)") == NumericRange(1, 10, "[)")
    assert read("int4range", "empty") == NumericRange(empty=True)
    assert read("tstzrange", '["2024-01-01 00:00:00",)') == DateTimeTZRange(
        datetime.datetime(2024, 1, 1, tzinfo=UTC), None, "[)"
    )


def test_hstore_dicts_both_ways():
    assert _one({"a": 'x"y', "b": None}) == (
        "CAST(:p1 AS hstore)",
        {"name": "p1", "value": {"stringValue": '"a"=>"x\\"y", "b"=>NULL'}},
    )
    assert _decoded("hstore", {"stringValue": '"a"=>"x\\"y", "b"=>NULL'}) == {"a": 'x"y', "b": None}


def test_statements_split_at_their_semicolons():
    from orca_db.data_api.sqltext import split

    assert split("UPDATE t SET a = ';'; SET CONSTRAINTS ALL IMMEDIATE;") == [
        "UPDATE t SET a = ';'",
        "SET CONSTRAINTS ALL IMMEDIATE",
    ]


# ----- what a retry may do ------------------------------------------------------------


def _aws(code: str, message: str = "x") -> errors.Error:
    return errors.from_client_error(code, message)


@pytest.mark.parametrize(
    ("error", "retryable", "not_applied", "error_type"),
    [
        (_aws("DatabaseResumingException"), True, True, "DatabaseResumingException"),
        (_aws("ThrottlingException"), True, True, "ThrottlingException"),
        (errors.EndpointUnreachable("x"), True, True, "EndpointUnreachable"),
        (_aws("TransactionNotFoundException"), True, True, "TransactionNotFoundException"),
        (errors.ReplyLost("x"), True, False, "ReplyLost"),
        (
            _aws("DatabaseErrorException", "FATAL: x; SQLState: 57P01"),
            True,
            True,
            "OperationalError",
        ),
        (
            _aws("DatabaseErrorException", "ERROR: dup\n  Detail: Key (a)=(1); SQLState: 23505"),
            False,
            False,
            "IntegrityError",
        ),
        (_aws("StatementTimeoutException"), False, False, "StatementTimeoutException"),
        (_aws("ForbiddenException"), False, False, "ForbiddenException"),
    ],
)
def test_data_api_classification(error, retryable, not_applied, error_type):
    from orca_db.classify import classify

    failure = classify(error)
    assert (failure.retryable, failure.not_applied, failure.error_type) == (
        retryable,
        not_applied,
        error_type,
    )
    assert "Key (a)" not in failure.message  # row values never reach logs


def test_psycopg_int_wrappers_say_the_integer_type():
    # Django's operations wrap integer fields' values in psycopg 3's Int2,
    # Int4, Int8 (classes of those names): the column's type, kept.
    Int8 = type("Int8", (int,), {})
    Int2 = type("Int2", (int,), {})
    assert bind("%s, %s, %s", [Int8(1), Int2(1), [Int8(1)]])[0] == (
        ":p1, CAST(:p2 AS smallint), CAST(:p3 AS bigint[])"
    )


def test_description_names_the_type_for_django_61():
    (column,) = decode.description([{"name": "tags", "typeName": "hstore"}])
    assert column.type_display == "hstore"
    assert len(column) == 7


def test_resuming_and_throttling_back_off_as_a_storm_conflicts_go_to_retry_atomic():
    from orca_db.classify import classify

    assert classify(_aws("DatabaseResumingException")).storm
    assert classify(_aws("ThrottlingException")).storm
    conflict = classify(
        _aws("DatabaseErrorException", "ERROR: could not serialize; SQLState: 40001")
    )
    assert (conflict.retryable, conflict.conflict) == (False, True)
