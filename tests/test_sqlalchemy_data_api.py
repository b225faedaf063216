"""The SQLAlchemy dialect over the RDS Data API (``postgresql+aurora_data_api``)
through the local endpoint: found by its URL, settings checked as the Django
Data API engine's, types both ways as SQLAlchemy's PostgreSQL dialect maps
them, and the Django Data API engine's guarantees through pauses, scale
events, lost answers and throttling, each outcome counted on the server."""

from __future__ import annotations

import datetime
import decimal
import enum
import time
import uuid

import pytest

from tests.sim_clients import on_server

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import (  # noqa: E402
    ARRAY,
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    Integer,
    Interval,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Uuid,
    create_engine,
    exc,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import INT4RANGE, JSONB, TSTZRANGE, Range  # noqa: E402

from orca_db import sqlalchemy as orca  # noqa: E402

# Tables are made and counted on the server's postgres database directly.


def _registered() -> None:
    """As the ``sqlalchemy.dialects`` entry point of setup.cfg does once
    orca-db is installed (a checkout run before its reinstall lacks it)."""
    from importlib.metadata import entry_points

    from sqlalchemy.dialects import registry

    if not any(
        e.name == "postgresql.aurora_data_api" for e in entry_points(group="sqlalchemy.dialects")
    ):
        registry.register(
            "postgresql.aurora_data_api", "orca_db.sqlalchemy.data_api", "AuroraDataApiDialect"
        )


_registered()
pytestmark = pytest.mark.django_db(transaction=False)
UTC = datetime.UTC


@pytest.fixture
def aurora(data_api_endpoint):
    return {
        "cluster_arn": data_api_endpoint.cluster_arn,
        "secret": data_api_endpoint.secret_arn,
        "deadline": 20,
    }


@pytest.fixture
def engines(aurora):
    made = []

    def make(**kwargs):
        options = {**aurora, **kwargs.pop("aurora", {})}
        engine = create_engine("postgresql+aurora_data_api:///postgres", aurora=options, **kwargs)
        made.append(engine)
        # The first connect's calls (SQLAlchemy's initialize, boto3's client
        # made) behind us: the faults of a test hit its own statements.
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return engine

    yield make
    for engine in made:
        engine.dispose()


@pytest.fixture
def engine(engines):
    return engines()


@pytest.fixture
def notes():
    name = f"orca_da_{uuid.uuid4().hex[:10]}"
    on_server(f"CREATE TABLE {name} (id serial PRIMARY KEY, v text)")

    class Notes:
        table = name
        insert = text(f"INSERT INTO {name} (v) VALUES (:v)")

        def count(self, value=None):
            where = "" if value is None else f" WHERE v = '{value}'"
            return on_server(f"SELECT count(*) FROM {name}{where}")[0][0]

    yield Notes()
    on_server(f"DROP TABLE IF EXISTS {name}")


# ----- the dialect ------------------------------------------------------------------


def test_setup_cfg_registers_the_dialect_under_sqlalchemys_entry_point():
    import configparser
    from pathlib import Path

    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    points = config["options.entry_points"]["sqlalchemy.dialects"]
    assert (
        "postgresql.aurora_data_api = orca_db.sqlalchemy.data_api:AuroraDataApiDialect"
        in points.splitlines()
    )


def test_the_url_finds_the_dialect_on_orca_db_data_api(engine):
    from orca_db import data_api
    from orca_db.sqlalchemy.data_api import AuroraDataApiDialect

    assert isinstance(engine.dialect, AuroraDataApiDialect)
    assert engine.dialect.loaded_dbapi is data_api
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1 + 1")).scalar() == 2
        assert engine.dialect.server_version_info >= (15,)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"cluster_arn": None}, r"aurora\['cluster_arn'\] is required"),
        ({"cluster_arn": "x"}, r"aurora\['cluster_arn'\] must be an Aurora cluster's ARN"),
        ({"secret": "s"}, r"aurora\['secret'\] must be a Secrets Manager secret's full ARN"),
        ({"deadline": -1}, r"aurora\['deadline'\]"),
        ({"nonsense": 1}, r"Unknown key aurora\['nonsense'\]"),
    ],
)
def test_settings_are_checked_as_the_django_engines(aurora, given, message):
    options = {key: value for key, value in {**aurora, **given}.items() if value is not None}
    with pytest.raises(exc.ArgumentError, match=message):
        create_engine("postgresql+aurora_data_api:///postgres", aurora=options)


def test_a_url_with_a_host_or_user_is_refused(aurora):
    with pytest.raises(exc.ArgumentError, match="names the database only"):
        create_engine("postgresql+aurora_data_api://user:pw@host/db", aurora=aurora)


# ----- types ------------------------------------------------------------------------


class Mood(enum.Enum):
    happy = "happy"
    sad = "sad"


def test_types_round_trip_as_the_postgresql_dialect_maps_them(engine):
    metadata = MetaData()
    kinds = Table(
        f"orca_da_kinds_{uuid.uuid4().hex[:8]}",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("big", BigInteger),
        Column("moment", DateTime(timezone=True)),
        Column("naive", DateTime),
        Column("number", Numeric(12, 3)),
        Column("ident", Uuid),
        Column("blob", LargeBinary),
        Column("day", Date),
        Column("span", Interval),
        Column("flag", Boolean),
        Column("doc", JSON),
        Column("docb", JSONB),
        Column("ints", ARRAY(Integer)),
        Column("words", ARRAY(Text)),
        Column("mood", Enum(Mood, name=f"orca_mood_{uuid.uuid4().hex[:6]}")),
        Column("label", String(20)),
        Column("span_ints", INT4RANGE),
        Column("period", TSTZRANGE),
    )
    values = {
        "id": 1,
        "big": 2**40,
        "moment": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        "naive": datetime.datetime(2024, 2, 29, 1, 2, 3, 4),
        "number": decimal.Decimal("123.456"),
        "ident": uuid.uuid4(),
        "blob": b"\x00\x01\xff",
        "day": datetime.date(2024, 2, 29),
        "span": datetime.timedelta(days=2, seconds=5, microseconds=7),
        "flag": True,
        "doc": {"a": [1, 2, {"b": None}], "c": "d"},
        "docb": {"k": "it's 100%"},
        "ints": [1, 2, None],
        "words": ["a,b", 'c"d'],
        "mood": Mood.sad,
        "label": "x%sy",
        "span_ints": Range(1, 5),
        "period": Range(datetime.datetime(2024, 1, 1, tzinfo=UTC), None, bounds="[)"),
    }
    metadata.create_all(engine)
    try:
        with engine.begin() as connection:
            returned = connection.execute(
                insert(kinds).returning(kinds.c.id, kinds.c.moment), values
            ).one()
            assert returned == (1, values["moment"])
            connection.execute(insert(kinds), {"id": 2})  # every other column NULL
            connection.execute(insert(kinds), [{"id": 3, "ints": [4]}, {"id": 4, "ints": [5]}])
        with engine.connect() as connection:
            row = connection.execute(select(kinds).where(kinds.c.id == 1)).one()._mapping
            for name, value in values.items():
                assert row[name] == value, name
            assert connection.execute(select(kinds.c.doc).where(kinds.c.id == 2)).scalar() is None
            # JSON paths and comparisons bind with their types.
            assert connection.execute(select(kinds.c.docb["k"].as_string())).scalar() == (
                "it's 100%"
            )
            assert (
                connection.execute(
                    select(kinds.c.id).where(
                        kinds.c.moment > values["moment"] - datetime.timedelta(1)
                    )
                ).scalar()
                == 1
            )
            assert connection.execute(
                select(kinds.c.id).where(kinds.c.ident.in_([values["ident"], uuid.uuid4()]))
            ).all() == [(1,)]
    finally:
        metadata.drop_all(engine)


def test_a_value_no_parameter_can_carry_is_refused_by_name(engine):
    with pytest.raises(exc.ProgrammingError, match="cannot adapt type 'object'"):
        with engine.connect() as connection:
            connection.execute(text("SELECT :x"), {"x": object()})


def test_several_statements_in_one_text_are_refused_before_sending(engine, data_api_endpoint):
    executes = data_api_endpoint.stats["executes"]
    with pytest.raises(exc.NotSupportedError, match="one SQL statement per call"):
        with engine.connect() as connection:
            connection.execute(text("SELECT 1; SELECT 2"))
    assert data_api_endpoint.stats["executes"] == executes  # nothing sent


# ----- faults: nothing ran ------------------------------------------------------------


def test_a_paused_cluster_is_waited_for(engine, data_api_endpoint, notes, events):
    data_api_endpoint.pause(calls=3)
    with engine.begin() as connection:
        connection.execute(notes.insert, {"v": "after the pause"})
    assert notes.count("after the pause") == 1
    assert [(e.outcome, e.error_type) for e in events] == [
        ("recovered", "DatabaseResumingException")
    ]


def test_throttled_calls_are_retried(engine, data_api_endpoint, notes, events):
    data_api_endpoint.fail_next(2, code="ThrottlingException")
    with engine.begin() as connection:
        connection.execute(notes.insert, {"v": "throttled"})
    data_api_endpoint.fail_next(1, code="ThrottlingException", operation="CommitTransaction")
    with engine.begin() as connection:
        connection.execute(notes.insert, {"v": "throttled"})
    assert notes.count("throttled") == 2
    assert [e.outcome for e in events] == ["recovered", "recovered"]


def test_a_pause_longer_than_the_deadline_is_retries_exhausted(engines, data_api_endpoint, notes):
    engine = engines(aurora={"deadline": 0.3})
    data_api_endpoint.pause()
    with pytest.raises(orca.RetriesExhausted, match="DatabaseResumingException"):
        with engine.begin() as connection:
            connection.execute(notes.insert, {"v": "never"})
    data_api_endpoint.resume()
    assert notes.count("never") == 0


# ----- faults: the answer was lost ------------------------------------------------------


def autocommit(engine):
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def test_an_autocommit_read_whose_answer_was_lost_is_run_again(
    engine, data_api_endpoint, notes, events
):
    with autocommit(engine).connect() as connection:
        connection.execute(notes.insert, {"v": "read me"})
        data_api_endpoint.lose_replies(1)
        query = text(f"SELECT count(*) FROM {notes.table} WHERE v = 'read me'")
        assert connection.execute(query).scalar() == 1
    assert [(e.error_type, e.outcome) for e in events] == [("ReplyLost", "recovered")]


def test_a_write_whose_answer_was_lost_is_outcome_unknown_and_not_sent_again(
    engine, data_api_endpoint, notes
):
    with autocommit(engine).connect() as connection:
        data_api_endpoint.lose_replies(1)
        calls = data_api_endpoint.stats["calls"]
        with pytest.raises(orca.OutcomeUnknown, match="may or may not have been applied") as raised:
            connection.execute(notes.insert, {"v": "lost answer"})
        assert not isinstance(raised.value, exc.OperationalError)
        assert data_api_endpoint.stats["calls"] == calls + 1  # no botocore re-send either
        # The connection goes on.
        connection.execute(notes.insert, {"v": "next"})
    assert (notes.count("lost answer"), notes.count("next")) == (1, 1)


def test_a_write_dropped_unread_is_still_outcome_unknown(engine, data_api_endpoint, notes):
    data_api_endpoint.drop_requests(1)
    with pytest.raises(orca.OutcomeUnknown), autocommit(engine).connect() as connection:
        connection.execute(notes.insert, {"v": "dropped"})
    assert notes.count("dropped") == 0


def test_a_lost_commit_answer_is_outcome_unknown(engine, data_api_endpoint, notes):
    data_api_endpoint.lose_replies(1, operation="CommitTransaction")
    rollbacks = data_api_endpoint.stats["rollbacks"]
    with pytest.raises(orca.OutcomeUnknown, match="may or may not have committed") as raised:
        with engine.begin() as connection:
            connection.execute(notes.insert, {"v": "commit lost"})
    assert not isinstance(raised.value, exc.OperationalError)
    assert notes.count("commit lost") == 1
    assert data_api_endpoint.stats["rollbacks"] == rollbacks  # nothing raced the COMMIT


# ----- faults: the transaction is gone ------------------------------------------------


@pytest.mark.parametrize("fault", ["scale_event", "pause", "lost answer"])
def test_a_lost_transaction_is_transaction_rolled_back(engine, data_api_endpoint, notes, fault):
    with pytest.raises(orca.TransactionRolledBack, match="nothing of it was committed"):
        with engine.begin() as connection:
            connection.execute(notes.insert, {"v": "first"})
            if fault == "scale_event":
                data_api_endpoint.scale_event()
            elif fault == "pause":
                data_api_endpoint.pause(calls=2)
            else:
                data_api_endpoint.lose_replies(1)
            connection.execute(notes.insert, {"v": "second"})
    assert notes.count() == 0
    # An OperationalError: a decorator that runs the function again is right.
    with engine.begin() as connection:
        connection.execute(notes.insert, {"v": "next"})
    assert notes.count("next") == 1


def test_code_that_carries_on_after_a_lost_transaction_is_stopped(engine, data_api_endpoint, notes):
    with pytest.raises(orca.TransactionRolledBack):
        with engine.begin() as connection:
            connection.execute(notes.insert, {"v": "before"})
            data_api_endpoint.scale_event()
            try:
                connection.execute(notes.insert, {"v": "during"})
            except orca.TransactionRolledBack:
                pass
            connection.execute(notes.insert, {"v": "after"})  # never in a new transaction
    assert notes.count() == 0


def test_the_orm_session_sees_a_lost_transaction(engine, data_api_endpoint, notes):
    from sqlalchemy.orm import Session

    with pytest.raises(orca.TransactionRolledBack), Session(engine) as session:
        session.execute(notes.insert, {"v": "orm"})
        data_api_endpoint.scale_event()
        session.commit()
    assert notes.count() == 0


# ----- bounds -------------------------------------------------------------------------


def test_statement_deadline_bounds_each_call(engines, data_api_endpoint):
    from orca_db.outcomes import DeadlineExceeded

    # The bound holds for the engine's first calls too (the fixture's
    # warm-up): 2 s leaves them room on a loaded machine, and the
    # endpoint's own limit comes well after it.
    engine = engines(aurora={"statement_deadline": 2})
    data_api_endpoint.limits.call_seconds = 8
    with pytest.raises(orca.ScaleEventError) as raised:
        with autocommit(engine).connect() as connection:
            connection.execute(text("SELECT pg_sleep(30)"))
    # The cut is ours: left alone, the endpoint would end the call itself
    # at 8 s with an error of its own. (No bound on the time taken: on a
    # loaded machine the connect before it may take seconds.)
    assert isinstance(raised.value.orig, DeadlineExceeded)
    data_api_endpoint.wait_for(lambda stats: stats["timeouts"] >= 1, timeout=20)


def test_the_transaction_status_reads_as_libpqs(engine, data_api_endpoint, notes):
    """What a run_transaction reads from the driver connection
    (orca_db.drivers), as for psycopg."""
    from orca_db import drivers

    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert drivers.transaction_status(raw) == drivers.IDLE
        connection.execute(notes.insert, {"v": "x"})
        assert drivers.transaction_status(raw) == drivers.INTRANS
        data_api_endpoint.scale_event()
        with pytest.raises(orca.TransactionRolledBack):
            connection.execute(notes.insert, {"v": "y"})
        assert drivers.transaction_status(raw) == drivers.UNKNOWN
        connection.rollback()
        assert drivers.transaction_status(raw) == drivers.IDLE


def test_every_call_is_bounded_by_the_lambda_cap(engine, data_api_endpoint, notes):
    from orca_db.outcomes import DeadlineExceeded, WriteDeadlineExceeded
    from orca_db.retry import deadline_cap

    data_api_endpoint.limits.call_seconds = 4  # the endpoint ends them soon after
    started = time.monotonic()
    with deadline_cap(1.5), pytest.raises(orca.ScaleEventError) as read:
        with autocommit(engine).connect() as connection:
            connection.execute(text("SELECT pg_sleep(30)"))
    assert time.monotonic() - started < 3
    assert isinstance(read.value.orig, DeadlineExceeded)
    assert not isinstance(read.value.orig, WriteDeadlineExceeded)
    write = text(f"INSERT INTO {notes.table} (v) SELECT 'late' FROM pg_sleep(30)")
    with deadline_cap(1.5), pytest.raises(orca.OutcomeUnknown) as raised:
        with autocommit(engine).connect() as connection:
            connection.execute(write)
    assert isinstance(raised.value.orig, WriteDeadlineExceeded)
    data_api_endpoint.wait_for(lambda stats: stats["timeouts"] >= 2, timeout=20)


def test_a_lost_commit_can_be_resolved_from_another_call(engine, data_api_endpoint, notes):
    """What a run_transaction needs to resolve a lost CommitTransaction over
    the Data API: the transaction's id read inside it, and its status asked
    in a call of its own once the answer was lost."""
    data_api_endpoint.lose_replies(1, operation="CommitTransaction")
    with pytest.raises(orca.OutcomeUnknown):
        with engine.begin() as connection:
            connection.execute(notes.insert, {"v": "resolve me"})
            xid = connection.execute(text("SELECT pg_current_xact_id()::text")).scalar()
    with autocommit(engine).connect() as connection:
        status = connection.execute(
            text("SELECT pg_xact_status(CAST(:xid AS xid8))"), {"xid": xid}
        ).scalar()
    assert status == "committed"
    assert notes.count("resolve me") == 1
