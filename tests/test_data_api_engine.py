"""Django on the Data API engine, through the local endpoint: the ORM's
types and transactions, and the same retry guarantees as the connection
engines, with each outcome checked on the server directly."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DataError, IntegrityError, ProgrammingError, connections, models, transaction
from django.db.utils import OperationalError
from django.test.utils import isolate_apps

from orca_db import data_api
from orca_db.backends.aurora_data_api.base import DatabaseWrapper
from orca_db.exceptions import OutcomeUnknown, RetriesExhausted, TransactionRolledBack
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)
ALIAS = "data_api"
UTC = datetime.UTC


def notes(text: str) -> int:
    """Rows with ``text`` on the server, read by the psycopg engine."""
    return Note.objects.using("default").filter(text=text).count()


def create(text: str) -> Note:
    return Note.objects.using(ALIAS).create(text=text)


# ----- the ORM ----------------------------------------------------------------------


@isolate_apps("tests.testapp")
def test_every_field_type_round_trips(data_api_connection):
    class Kinds(models.Model):
        integer = models.IntegerField(null=True)
        big = models.BigIntegerField(null=True)
        small = models.SmallIntegerField(null=True)
        floating = models.FloatField(null=True)
        number = models.DecimalField(max_digits=12, decimal_places=3, null=True)
        text = models.TextField(null=True)  # noqa: DJ001  (NULLs are part of the test)
        char = models.CharField(max_length=20, null=True)  # noqa: DJ001
        flag = models.BooleanField(null=True)
        moment = models.DateTimeField(null=True)
        day = models.DateField(null=True)
        clock = models.TimeField(null=True)
        span = models.DurationField(null=True)
        ident = models.UUIDField(null=True)
        data = models.JSONField(null=True)
        blob = models.BinaryField(null=True)
        address = models.GenericIPAddressField(null=True)

        class Meta:
            app_label = "testapp"
            db_table = "data_api_kinds"

    with data_api_connection.schema_editor() as editor:
        editor.create_model(Kinds)
    try:
        values = {
            "integer": -1,
            "big": 2**40,
            "small": 3,
            "floating": 1.5,
            "number": decimal.Decimal("123.456"),
            "text": "it's 100%",
            "char": "x%sy",
            "flag": True,
            "moment": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
            "day": datetime.date(2024, 2, 29),
            "clock": datetime.time(1, 2, 3, 456789),
            "span": datetime.timedelta(days=2, seconds=5, microseconds=7),
            "ident": uuid.uuid4(),
            "data": {"a": [1, 2, {"b": None}], "c": "d"},
            "blob": b"\x00\x01\xff",
            "address": "2001:db8::1",
        }
        objects = Kinds.objects.using(ALIAS)
        pk = objects.create(**values).pk
        got = objects.get(pk=pk)
        for name, value in values.items():
            found = getattr(got, name)
            assert (bytes(found) if name == "blob" else found) == value, name
        objects.create()  # every column NULL
        assert objects.filter(data__a__2__b=None, data__c="d").count() == 1
        assert objects.filter(moment__year=2024, text__contains="100%").count() == 1
        assert objects.filter(ident__in=[values["ident"], uuid.uuid4()]).count() == 1
        assert objects.filter(span__gt=datetime.timedelta(days=1)).count() == 1
        objects.bulk_create([Kinds(integer=n, moment=values["moment"]) for n in range(5)])
        assert objects.filter(integer__lt=3).update(text="updated") == 4
        assert list(
            objects.filter(text="updated").order_by("integer").values_list("integer", flat=True)
        ) == [-1, 0, 1, 2]
    finally:
        with data_api_connection.schema_editor() as editor:
            editor.delete_model(Kinds)


def test_atomic_blocks_and_savepoints(data_api_connection):
    with transaction.atomic(using=ALIAS):
        create("outer")
        with pytest.raises(ValueError), transaction.atomic(using=ALIAS):
            create("inner")
            raise ValueError
        assert notes("outer") == 0  # not committed yet, seen from another session
    assert (notes("outer"), notes("inner")) == (1, 0)
    with pytest.raises(ValueError), transaction.atomic(using=ALIAS):
        create("rolled back")
        raise ValueError
    assert notes("rolled back") == 0


def test_sql_errors_are_djangos_and_surface_at_once(data_api_connection, data_api_endpoint, events):
    note = create("unique")
    calls = data_api_endpoint.stats["calls"]
    with pytest.raises(IntegrityError) as caught:
        Note.objects.using(ALIAS).create(id=note.id, text="again")
    assert isinstance(caught.value.__cause__, data_api.IntegrityError)
    assert caught.value.__cause__.sqlstate == "23505"
    with pytest.raises(DataError):
        with connections[ALIAS].cursor() as cursor:
            cursor.execute("SELECT 'x'::int")
    with pytest.raises(ProgrammingError):
        with connections[ALIAS].cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")
    assert data_api_endpoint.stats["calls"] == calls + 3  # one call each: no retry
    assert events == []


def test_a_statement_timeout_surfaces_at_once(data_api_connection, data_api_endpoint, events):
    data_api_endpoint.limits.call_seconds = 0.3
    with pytest.raises(OperationalError) as caught, connections[ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_sleep(3)")
    assert isinstance(caught.value.__cause__, data_api.errors.StatementTimeoutException)
    assert events == []


# ----- retries: nothing ran ---------------------------------------------------------


def test_a_paused_cluster_is_waited_for_reads_and_writes(
    data_api_connection, data_api_endpoint, events
):
    data_api_endpoint.pause(calls=3)
    create("after the pause")
    assert notes("after the pause") == 1
    (event,) = events
    assert (event.database, event.phase, event.outcome, event.attempts) == (
        ALIAS, "execute", "recovered", 4,
    )  # fmt: skip
    assert event.error_type == "DatabaseResumingException"
    assert event.sqlstate == "57P03"


def test_throttled_calls_are_retried(data_api_connection, data_api_endpoint, events):
    data_api_endpoint.fail_next(2, code="ThrottlingException")
    with transaction.atomic(using=ALIAS):
        create("throttled")
    assert notes("throttled") == 1
    assert [e.outcome for e in events] == ["recovered"]


def test_a_commit_refused_before_it_ran_is_retried(data_api_connection, data_api_endpoint, events):
    data_api_endpoint.fail_next(1, code="ThrottlingException", operation="CommitTransaction")
    with transaction.atomic(using=ALIAS):
        create("committed at last")
    assert notes("committed at last") == 1
    assert [(e.phase, e.outcome) for e in events] == [("transaction", "recovered")]


def test_a_pause_longer_than_the_deadline_is_retries_exhausted(
    data_api_endpoint, data_api_connection, events
):
    data_api_connection.settings_dict["OPTIONS"]["aurora"]["deadline"] = 0.3
    data_api_endpoint.pause()
    with pytest.raises(RetriesExhausted, match="DatabaseResumingException"):
        create("never")
    data_api_endpoint.resume()
    assert notes("never") == 0
    assert [e.outcome for e in events] == ["exhausted"]


def test_a_write_still_waiting_on_a_paused_cluster_at_the_deadline_is_retries_exhausted(
    data_api_endpoint, data_api_connection, events
):
    """Each answer takes longer than the whole deadline, so the retry begun
    within it is still running when the deadline passes. It must run to its
    answer ("nothing ran"), not be cut there into an unknown outcome: the
    deadline decides whether an attempt starts, as on a connection."""
    data_api_connection.settings_dict["OPTIONS"]["aurora"]["deadline"] = 0.3
    data_api_endpoint.pause(answer_after=0.4)
    with pytest.raises(RetriesExhausted, match="DatabaseResumingException"):
        create("never")
    data_api_endpoint.resume()
    assert notes("never") == 0
    assert data_api_endpoint.stats["resuming"] >= 2
    assert [e.outcome for e in events] == ["exhausted"]


def test_a_request_dropped_unread_is_still_an_unknown_outcome_for_a_write(
    data_api_connection, data_api_endpoint
):
    # The client cannot tell a request that never ran from an answer lost.
    data_api_endpoint.drop_requests(1)
    with pytest.raises(OutcomeUnknown):
        create("dropped")
    assert notes("dropped") == 0


# ----- retries: the answer was lost ---------------------------------------------------


def test_a_read_whose_answer_was_lost_is_run_again(data_api_connection, data_api_endpoint, events):
    create("read me")
    data_api_endpoint.lose_replies(1)
    assert Note.objects.using(ALIAS).filter(text="read me").count() == 1
    assert [(e.error_type, e.outcome) for e in events] == [("ReplyLost", "recovered")]


def test_a_write_whose_answer_was_lost_is_outcome_unknown_and_not_repeated(
    data_api_connection, data_api_endpoint, events
):
    data_api_endpoint.lose_replies(1)
    with pytest.raises(OutcomeUnknown, match="may or may not have been applied"):
        create("lost answer")
    assert notes("lost answer") == 1  # it ran, once
    assert [e.outcome for e in events] == ["raised"]


def test_retry_writes_replays_a_write_whose_answer_was_lost(data_api_endpoint, data_api_connection):
    data_api_connection.settings_dict["OPTIONS"]["aurora"]["retry_writes"] = True
    data_api_endpoint.lose_replies(1)
    create("idempotent?")
    assert notes("idempotent?") == 2  # as documented: only for idempotent writes


def test_a_lost_commit_answer_is_outcome_unknown(data_api_connection, data_api_endpoint):
    data_api_endpoint.lose_replies(1, operation="CommitTransaction")
    with pytest.raises(OutcomeUnknown, match="may or may not have committed"):
        with transaction.atomic(using=ALIAS):
            create("commit lost")
    assert notes("commit lost") == 1
    assert data_api_endpoint.stats["rollbacks"] == 0  # nothing raced the COMMIT


# ----- retries: the transaction is gone -----------------------------------------------


@pytest.mark.parametrize("fault", ["scale_event", "pause", "lost answer"])
def test_a_lost_transaction_is_rolled_back_and_says_so(
    data_api_connection, data_api_endpoint, events, fault
):
    with pytest.raises(TransactionRolledBack, match="nothing of it was committed"):
        with transaction.atomic(using=ALIAS):
            create(f"first {fault}")
            if fault == "scale_event":
                data_api_endpoint.scale_event()
            elif fault == "pause":
                data_api_endpoint.pause(calls=2)
            else:
                data_api_endpoint.lose_replies(1)
            create(f"second {fault}")
    assert (notes(f"first {fault}"), notes(f"second {fault}")) == (0, 0)
    # The connection goes on: the next block is a new transaction.
    with transaction.atomic(using=ALIAS):
        create(f"next {fault}")
    assert notes(f"next {fault}") == 1
    assert events[-1].outcome == "raised"


def test_code_that_carries_on_after_a_lost_transaction_is_stopped(
    data_api_connection, data_api_endpoint
):
    with pytest.raises(TransactionRolledBack):
        with transaction.atomic(using=ALIAS):
            create("before")
            data_api_endpoint.scale_event()
            try:
                create("during")
            except TransactionRolledBack:
                pass
            create("after")  # must not run in a new transaction of its own
    assert notes("before") + notes("during") + notes("after") == 0


# ----- retry_atomic -------------------------------------------------------------------


def test_retry_atomic_runs_a_transaction_again_after_a_scale_event(
    data_api_connection, data_api_endpoint, events
):
    from orca_db import retry_atomic

    runs = []

    def move():
        runs.append(1)
        create("retry_atomic")
        if len(runs) == 1:
            data_api_endpoint.scale_event()
        create("retry_atomic")

    retry_atomic(move, using=ALIAS)()
    assert len(runs) == 2
    assert notes("retry_atomic") == 2  # the second run, whole; nothing of the first
    assert [(e.phase, e.outcome, e.attempts) for e in events] == [("transaction", "recovered", 2)]


def test_retry_atomic_waits_for_a_paused_cluster_before_its_first_statement(
    data_api_connection, data_api_endpoint
):
    from orca_db import retry_atomic

    data_api_endpoint.pause(calls=2)
    retry_atomic(create, "paused first", using=ALIAS)
    assert notes("paused first") == 1


def test_retry_atomic_resolves_a_lost_commit(data_api_connection, data_api_endpoint, events):
    from orca_db import retry_atomic

    data_api_endpoint.lose_replies(1, operation="CommitTransaction")
    runs = []

    def write():
        runs.append(1)
        create("resolved")

    retry_atomic(write, using=ALIAS)()
    assert (len(runs), notes("resolved")) == (1, 1)  # committed: not run again


# ----- settings ---------------------------------------------------------------------


def _wrapper(options):
    settings = {
        **connections["default"].settings_dict,
        "ENGINE": "orca_db.backends.aurora_data_api",
    }
    return DatabaseWrapper({**settings, "OPTIONS": options}, "bad")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, r"OPTIONS\['aurora'\]\['cluster_arn'\] is required"),
        ({"aurora": {"cluster_arn": "x"}}, r"\['cluster_arn'\] must be an Aurora cluster's ARN"),
        (
            {"aurora": {"cluster_arn": "arn:aws:rds:us-east-1:123456789012:cluster:c"}},
            r"\['secret'\] is required",
        ),
        (
            {
                "aurora": {
                    "cluster_arn": "arn:aws:rds:us-east-1:123456789012:cluster:c",
                    "secret": "name",
                }
            },
            r"\['secret'\] must be a Secrets Manager secret's full ARN",
        ),
        ({"aurora": {"deadlin": 1}}, r"Unknown key OPTIONS\['aurora'\]\['deadlin'\]"),
        ({"sslmode": "require"}, r"OPTIONS\['sslmode'\] is not used by the Data API engine"),
    ],
)
def test_bad_settings_fail_at_the_first_connect_naming_the_key(options, message):
    wrapper = _wrapper(options)
    with pytest.raises(ImproperlyConfigured, match=message):
        wrapper.ensure_connection()


def test_a_wrong_secret_fails_fast_and_is_not_retried(data_api_endpoint, events):
    settings = data_api_endpoint.django_settings(connections["default"].settings_dict["NAME"])
    settings["OPTIONS"]["aurora"]["secret"] = settings["OPTIONS"]["aurora"]["secret"] + "x"
    wrapper = DatabaseWrapper({**connections["default"].settings_dict, **settings}, "wrong")
    with pytest.raises(OperationalError, match="SecretsErrorException"):
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
    assert data_api_endpoint.stats["calls"] == 1
    assert events == []


# ----- events, Lambda -----------------------------------------------------------------


def test_retry_events_are_stored_through_the_data_api(
    data_api_connection, data_api_endpoint, monkeypatch
):
    from orca_db_app.models import RetryEvent

    # The receiver stores an event through the database it is about, looked
    # up in DATABASES (after connecting: Django's test case refuses to
    # connect aliases of DATABASES a test did not declare).
    data_api_connection.ensure_connection()
    monkeypatch.setitem(connections.settings, ALIAS, data_api_connection.settings_dict)
    executes = data_api_endpoint.stats["executes"]
    data_api_endpoint.pause(calls=2)
    create("event")
    (row,) = RetryEvent.objects.using("default").filter(database=ALIAS)
    assert (row.phase, row.outcome, row.error_type, row.attempts) == (
        "execute",
        "recovered",
        "DatabaseResumingException",
        3,
    )
    assert row.statement.startswith('INSERT INTO "testapp_note"')
    # The note, then the event's row: through the Data API.
    assert data_api_endpoint.stats["executes"] == executes + 2
    # On the application's own boto3 client (the same settings, so the same
    # shared client): making a second one took most of a store's time,
    # which a loaded machine pushed past its bound.
    from orca_db_app.receivers import events_connection

    events = events_connection(ALIAS).settings_dict["OPTIONS"]
    assert events.get("connect_timeout") == data_api_connection.settings_dict["OPTIONS"].get(
        "connect_timeout"
    )


def test_database_handler_caps_retries_at_the_remaining_time(
    data_api_connection, data_api_endpoint
):
    from orca_db.aws_lambda import database_handler
    from orca_db.exceptions import DeadlineExceeded

    class Context:
        aws_request_id = "req-1"

        def __init__(self, remaining_ms):
            self.remaining_ms = remaining_ms

        def get_remaining_time_in_millis(self):
            return self.remaining_ms

    @database_handler
    def handler(event, context):
        return Note.objects.using(ALIAS).count()

    data_api_endpoint.pause()
    # 300 ms to retry in, after the 1 s margin: the retries stop there, or
    # the call in flight at that moment is given up.
    with pytest.raises((RetriesExhausted, DeadlineExceeded)):
        handler({}, Context(1300))
    data_api_endpoint.resume()
    assert handler({}, Context(10_000)) == 0


def test_an_isolation_level_starts_each_transaction(data_api_endpoint, data_api_connection):
    from django.db.backends.postgresql.psycopg_any import IsolationLevel

    data_api_connection.settings_dict["OPTIONS"]["isolation_level"] = IsolationLevel.SERIALIZABLE
    data_api_connection.close()
    with transaction.atomic(using=ALIAS), connections[ALIAS].cursor() as cursor:
        cursor.execute("SHOW transaction_isolation")
        assert cursor.fetchone() == ("serializable",)
    assert data_api_connection.connection.isolation_level == IsolationLevel.SERIALIZABLE


def test_a_transaction_a_statement_failed_in_is_not_usable(data_api_connection, data_api_endpoint):
    with transaction.atomic(using=ALIAS):
        with pytest.raises(DataError), connections[ALIAS].cursor() as cursor:
            cursor.execute("SELECT 'x'::int")
        calls = data_api_endpoint.stats["calls"]
        assert not data_api_connection.is_usable()  # as PostgreSQL would say, without a call
        assert data_api_endpoint.stats["calls"] == calls
        transaction.set_rollback(True, using=ALIAS)
    assert data_api_connection.is_usable()


def test_the_rollback_of_a_lost_transaction_outlasts_throttling(
    data_api_connection, data_api_endpoint
):
    # Its locks are held until the rollback runs (or for 3 minutes): a
    # throttled rollback is retried, even inside retry_atomic's operation.
    data_api_endpoint.fail_next(2, code="ThrottlingException", operation="RollbackTransaction")
    with pytest.raises(TransactionRolledBack):
        with transaction.atomic(using=ALIAS):
            create("locked")
            data_api_endpoint.lose_replies(1)
            create("answer lost")
    data_api_endpoint.wait_for(lambda s: s["rollbacks"] == 1 and s["open"] == 0)
    assert data_api_endpoint.stats["failed"] == 2


def test_a_rollback_of_a_transaction_already_gone_settles_quietly(
    data_api_connection, data_api_endpoint, events
):
    # Closing with a transaction open rolls it back (through the cleanup
    # caller). Here a scale event ended it, and the rollback first meets a
    # paused cluster: once the cluster answers, "not found" is the rollback
    # done, not a failure.
    data_api_connection.ensure_connection()
    raw = data_api_connection.connection
    raw.autocommit = False
    raw.cursor().execute("SELECT 1")
    data_api_endpoint.scale_event()
    data_api_endpoint.fail_next(
        2, code="DatabaseResumingException", operation="RollbackTransaction"
    )
    raw.close()
    assert [(e.phase, e.outcome, e.attempts) for e in events] == [("transaction", "recovered", 3)]


def test_retry_atomic_runs_a_transaction_again_after_a_serialization_failure(
    data_api_connection, data_api_endpoint
):
    from orca_db import retry_atomic

    runs = []

    def write():
        runs.append(1)
        create("conflict")
        if len(runs) == 1:
            with connections[ALIAS].cursor() as cursor:
                cursor.execute(
                    "DO $$ BEGIN RAISE EXCEPTION 'lost a race' "
                    "USING ERRCODE = 'serialization_failure'; END $$"
                )

    retry_atomic(write, using=ALIAS)()
    assert (len(runs), notes("conflict")) == (2, 1)


def test_a_call_still_running_at_the_lambda_deadline_is_given_up(
    data_api_connection, data_api_endpoint
):
    """A call whose answer does not come (here: a 30 s statement; the same
    for an endpoint that went silent) ends at the function's cap."""
    import time

    from orca_db.aws_lambda import database_handler
    from orca_db.exceptions import DeadlineExceeded, WriteDeadlineExceeded
    from tests.test_aws_lambda import FakeContext

    data_api_endpoint.limits.call_seconds = 4  # the endpoint ends them soon after

    @database_handler
    def read(event, context):
        with connections[ALIAS].cursor() as cursor:
            cursor.execute("SELECT pg_sleep(30)")

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as raised:
        read({}, FakeContext(2_500))
    assert time.monotonic() - started < 2.5
    assert not isinstance(raised.value, OutcomeUnknown)

    @database_handler
    def write(event, context):
        with connections[ALIAS].cursor() as cursor:
            cursor.execute(
                "INSERT INTO testapp_note (text, created) SELECT 'late', now() FROM pg_sleep(30)"
            )

    with pytest.raises(WriteDeadlineExceeded):
        write({}, FakeContext(2_500))
    # The endpoint still runs them until its own limit: leave nothing behind.
    data_api_endpoint.wait_for(lambda stats: stats["timeouts"] >= 2, timeout=20)


@contextlib.contextmanager
def statement_deadline(seconds: float):
    """The Data API database's ``statement_deadline`` for the block."""
    from orca_db import conf

    aurora = connections[ALIAS].settings_dict["OPTIONS"]["aurora"]
    aurora["statement_deadline"] = seconds
    conf.clear_cache()
    try:
        yield
    finally:
        aurora.pop("statement_deadline")
        conf.clear_cache()


def test_statement_deadline_bounds_each_call(data_api_connection, data_api_endpoint):
    import time

    from orca_db.exceptions import DeadlineExceeded

    data_api_endpoint.limits.call_seconds = 4
    with statement_deadline(0.5):
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded), connections[ALIAS].cursor() as cursor:
            cursor.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 5
        data_api_endpoint.wait_for(lambda stats: stats["timeouts"] >= 1, timeout=20)


def test_a_begin_transaction_given_up_at_the_statement_deadline_wrote_nothing(
    data_api_connection, data_api_endpoint
):
    """A transaction whose BeginTransaction did not answer in time was never
    known to the client, so nothing can have run in it: DeadlineExceeded,
    not an unknown outcome."""
    from orca_db.exceptions import DeadlineExceeded

    create("before")  # the connection's own first calls (the server's version) behind us
    with statement_deadline(0.2):
        data_api_endpoint.pause(answer_after=1)
        try:
            with pytest.raises(DeadlineExceeded) as raised, transaction.atomic(using=ALIAS):
                create("in a transaction never begun")
            assert not isinstance(raised.value, OutcomeUnknown)
            assert data_api_endpoint.stats["resuming"] >= 1
        finally:
            data_api_endpoint.resume()
    assert notes("in a transaction never begun") == 0
