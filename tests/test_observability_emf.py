"""Retry events as CloudWatch Embedded Metric Format documents
(``orca_db.logging.EmfFormatter``), checked against AWS's specification:
for every phase and outcome, and after real faults on a real PostgreSQL."""

from __future__ import annotations

import datetime
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connections, transaction

from orca_db.backends.aurora.base import DatabaseWrapper
from orca_db.events import OUTCOMES, PHASES, SettledEvent, deliver
from orca_db.exceptions import RetriesExhausted, TransactionRolledBack
from orca_db.logging import EmfFormatter, JsonFormatter, SettledEvents, emf_events_to
from orca_db.metrics_emf import Directive
from orca_db.testing.postgres import free_port
from orca_db.transaction import retry_atomic
from tests.observability_helpers import assert_emf_document, captured, lines
from tests.testapp.models import Note

NAMESPACE = "ORCA/Aurora"
METRICS = {"RetryEvents", "RetryElapsed", "RetryAttempts"}


def an_event(**fields) -> SettledEvent:
    defaults = dict(
        # Not an alias of DATABASES: orca_db_app's receiver stores nothing.
        database="reports",
        phase="execute",
        occurred_at=datetime.datetime(2026, 11, 27, 19, 32, 5, 54302, tzinfo=datetime.UTC),
        error_type="AdminShutdown",
        sqlstate="57P01",
        message="terminating connection due to administrator command",
        attempts=2,
        outcome="recovered",
        elapsed_ms=64.31,
        statement='SELECT "testapp_note"."text" FROM "testapp_note" WHERE "id" = ?',
    )
    return SettledEvent(**{**defaults, **fields})


def settled(stream) -> list[dict]:
    return [line for line in lines(stream) if line.get("kind") == "settled"]


# ----- every kind of event, through the logging path -------------------------------


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("phase", PHASES)
def test_each_kind_of_settled_event_is_a_valid_emf_document(phase, outcome):
    formatter = EmfFormatter(
        namespace=NAMESPACE, dimensions=[["database", "outcome"], ["database", "phase", "outcome"]]
    )
    with captured(formatter) as stream:
        deliver(
            an_event(phase=phase, outcome=outcome, sqlstate=None if phase == "connect" else "57P01")
        )

    [line] = settled(stream)
    document = assert_emf_document(json.dumps(line))
    [directive] = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [["database", "outcome"], ["database", "phase", "outcome"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
        "RetryEvents": "Count",
        "RetryElapsed": "Milliseconds",
        "RetryAttempts": "Count",
    }
    assert (document["database"], document["phase"], document["outcome"]) == (
        "reports",
        phase,
        outcome,
    )
    assert (document["RetryEvents"], document["RetryElapsed"], document["RetryAttempts"]) == (
        1,
        64.3,
        2,
    )
    # The metric is stamped when the operation settled.
    settled_at = an_event().occurred_at + datetime.timedelta(milliseconds=64.31)
    assert document["_aws"]["Timestamp"] == int(settled_at.timestamp() * 1000)
    # Still the JSON line Logs Insights reads, details as plain members.
    assert document["error_type"] == "AdminShutdown" and "statement" in document


def test_other_records_are_written_as_json_formatter_writes_them(caplog):
    with captured(EmfFormatter()) as emf, captured(JsonFormatter()) as plain:
        logging.getLogger("orca_db.retry").info(
            "retrying", extra={"orca_db": {"kind": "retry", "database": "default", "attempt": 1}}
        )
        logging.getLogger("orca_db.events").warning("plain text")
    strip = [{k: v for k, v in line.items() if k != "timestamp"} for line in lines(emf)]
    assert strip == [{k: v for k, v in line.items() if k != "timestamp"} for line in lines(plain)]
    assert all("_aws" not in line for line in lines(emf))


def test_settled_events_filter_keeps_only_the_metric_lines():
    formatter = EmfFormatter()
    with captured(formatter) as stream:
        handler = logging.getLogger("orca_db").handlers[-1]
        handler.addFilter(SettledEvents())
        logging.getLogger("orca_db.retry").info("retrying", extra={"orca_db": {"kind": "retry"}})
        deliver(an_event())
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["kind"] == "settled"
    assert_emf_document(line)


def test_function_name_dimension_comes_from_the_lambda_runtime(monkeypatch):
    formatter = EmfFormatter(dimensions=[["database", "function_name", "outcome"]])
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    with captured(formatter) as stream:
        deliver(an_event())
    [outside] = settled(stream)
    assert outside["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["database", "outcome"]]
    assert "function_name" not in outside

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orca-recovery")
    with captured(formatter) as stream:
        deliver(an_event())
    [inside] = settled(stream)
    assert_emf_document(json.dumps(inside))
    assert inside["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["database", "function_name", "outcome"]
    ]
    assert inside["function_name"] == "orca-recovery"


def test_an_event_without_its_start_is_stamped_now():
    before = int(time.time() * 1000)
    members = Directive().members({"database": "default", "outcome": "recovered"})
    assert before <= members["_aws"]["Timestamp"] <= int(time.time() * 1000)
    assert (members["RetryEvents"], members["RetryElapsed"], members["RetryAttempts"]) == (1, 0, 0)


def test_secrets_and_statements_are_never_dimensions():
    document = json.loads(EmfFormatter().format_event(an_event(statement="SELECT ?")))
    dimension_names = {
        name
        for directive in document["_aws"]["CloudWatchMetrics"]
        for names in directive["Dimensions"]
        for name in names
    }
    assert dimension_names == {"database", "outcome"}
    for name in ("statement", "message", "error_message", "error_type", "sqlstate", "host"):
        with pytest.raises(ValueError, match=f"Unknown EMF dimension '{name}'"):
            Directive(dimensions=[["database", name]])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"namespace": "AWS/RDS"}, "EMF namespace"),
        ({"namespace": ""}, "EMF namespace"),
        ({"namespace": "bad|name"}, "EMF namespace"),
        ({"dimensions": "database"}, "list of lists"),
        ({"dimensions": ["database"]}, "is not a list"),
        ({"dimensions": []}, "at least one dimension set"),
        ({"dimensions": [["database", "database"]]}, "twice"),
        ({"dimensions": [["statement"]]}, "Unknown EMF dimension 'statement'"),
    ],
)
def test_bad_options_are_refused_naming_them(options, message):
    with pytest.raises(ValueError, match=message):
        EmfFormatter(**options)


# A process configured the way docs/observability.md says, in Lambda.
LAMBDA_PROCESS = """
import datetime, django, sys
from django.conf import settings
settings.configure(LOGGING={
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"emf": {"()": "orca_db.logging.EmfFormatter", **OPTIONS}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                            "formatter": "emf"}},
    "loggers": {"orca_db": {"handlers": ["stdout"], "level": "INFO", "propagate": False}},
})
django.setup()
from orca_db.events import SettledEvent, deliver
deliver(SettledEvent(database="default", phase="connect", outcome="exhausted", attempts=7,
                   elapsed_ms=60000.0, occurred_at=datetime.datetime.now(datetime.UTC)))
"""


def run_process(options: dict, env: dict | None = None) -> subprocess.CompletedProcess:
    code = LAMBDA_PROCESS.replace("OPTIONS", repr(options))
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parent.parent,
    )


def test_logging_setting_writes_emf_lines_to_stdout():
    result = run_process(
        {"namespace": NAMESPACE, "dimensions": [["function_name", "database", "outcome"]]},
        env={"AWS_LAMBDA_FUNCTION_NAME": "orca-recovery"},
    )
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    document = assert_emf_document(line)
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["function_name", "database", "outcome"]
    ]
    assert (document["function_name"], document["outcome"], document["RetryAttempts"]) == (
        "orca-recovery",
        "exhausted",
        7,
    )
    assert document["level"] == "ERROR" and document["logger"] == "orca_db.events"


def test_bad_logging_setting_fails_at_start_up_naming_the_problem():
    result = run_process({"dimensions": [["database", "sqlstate"]]})
    assert result.returncode != 0
    assert "Unable to configure formatter 'emf'" in result.stderr
    assert "Unknown EMF dimension 'sqlstate'" in result.stderr


def test_emf_events_to_a_file_from_many_threads(tmp_path):
    path = tmp_path / "events.emf"
    with emf_events_to(path, namespace=NAMESPACE):
        threads = [
            threading.Thread(target=lambda i=i: [deliver(an_event(attempts=i)) for _ in range(20)])
            for i in range(1, 5)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    deliver(an_event())  # after the block: not written
    written = path.read_text().splitlines()
    assert len(written) == 80
    documents = [assert_emf_document(line) for line in written]
    assert sorted({d["RetryAttempts"] for d in documents}) == [1, 2, 3, 4]
    assert all(d["error_message"] == an_event().message for d in documents)


# ----- after real faults -------------------------------------------------------------


@pytest.fixture
def emf_lines():
    formatter = EmfFormatter(
        namespace=NAMESPACE, dimensions=[["database", "outcome"], ["database", "phase", "outcome"]]
    )
    with captured(formatter) as stream:
        yield lambda: [assert_emf_document(json.dumps(line)) for line in settled(stream)]


def kinds(documents) -> list[tuple]:
    return [(d["database"], d["phase"], d["outcome"], d["RetryEvents"]) for d in documents]


@pytest.mark.django_db(transaction=True)
def test_recovered_read_after_pg_terminate_backend(kill_backend, emf_lines, events):
    Note.objects.create(text="a")
    kill_backend()
    assert Note.objects.count() == 1

    [document] = emf_lines()
    assert kinds([document]) == [("default", "execute", "recovered", 1)]
    [event] = events
    assert document["RetryAttempts"] == event.attempts == 2
    assert document["RetryElapsed"] == round(event.elapsed_ms, 1)


@pytest.mark.django_db(transaction=True)
def test_write_in_a_killed_transaction_is_raised(kill_backend, emf_lines):
    with pytest.raises(TransactionRolledBack), transaction.atomic():
        Note.objects.create(text="t1")
        kill_backend()
        Note.objects.create(text="t2")
    assert kinds(emf_lines()) == [("default", "execute", "raised", 1)]


@pytest.mark.django_db(transaction=True)
def test_transaction_run_again_by_retry_atomic(kill_backend, emf_lines):
    runs = []

    @retry_atomic
    def write():
        runs.append(1)
        Note.objects.create(text="r")
        if len(runs) == 1:
            kill_backend()
        Note.objects.create(text="s")

    write()
    documents = emf_lines()
    assert ("default", "transaction", "recovered", 1) in kinds(documents)


@pytest.fixture
def wrapper_on():
    """An aurora ``DatabaseWrapper`` as alias ``name`` (outside DATABASES)."""
    made = []

    def make(name: str, settings_dict: dict):
        wrapper = DatabaseWrapper(settings_dict, alias=name)
        connections[name] = wrapper
        made.append(name)
        return wrapper

    yield make
    for name in made:
        connections[name].close()
        del connections[name]


@pytest.mark.django_db(transaction=True)
def test_connect_through_simulated_startup_rejections(aurora_simulator, wrapper_on, emf_lines):
    settings = aurora_simulator.django_settings(connections["default"].settings_dict)
    sim = wrapper_on("sim", {**settings, "OPTIONS": {}})
    aurora_simulator.reject_startups(2)
    with sim.cursor() as cursor:
        cursor.execute("SELECT 1")
    [document] = emf_lines()
    assert kinds([document]) == [("sim", "connect", "recovered", 1)]
    assert document["RetryAttempts"] == 3


@pytest.mark.django_db(transaction=True)
def test_connect_to_a_server_that_is_down_is_exhausted(wrapper_on, emf_lines):
    settings = {**connections["default"].settings_dict, "PORT": str(free_port())}
    down = wrapper_on("down", {**settings, "OPTIONS": {"aurora": {"deadline": 1.0}}})
    with pytest.raises(RetriesExhausted):
        down.ensure_connection()
    [document] = emf_lines()
    assert kinds([document]) == [("down", "connect", "exhausted", 1)]
    assert document["RetryAttempts"] >= 2
