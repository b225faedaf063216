"""Retry events in OpenTelemetry (``orca_db.otel``): span events on the
application's current span and metric points, read back through the SDK's
in-memory exporters, after real scale events (the Aurora simulator,
``pg_terminate_backend``) during a traced Django request and a traced
block; nothing when nothing failed, when it is off, or when OpenTelemetry
is not installed."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.test import override_settings
from django.urls import path
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orca_db import otel
from orca_db.backends.aurora.base import DatabaseWrapper
from orca_db.logging import EmfFormatter, JsonFormatter
from orca_db.transaction import retry_atomic
from orca_db_app.models import RetryEvent
from tests.observability_helpers import assert_emf_document, captured, lines
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
tracer = trace.get_tracer("tests")


class Telemetry:
    """The SDK, configured once per process as an application would, with
    exporters that keep what they receive in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        trace.set_tracer_provider(provider)
        # Delta temporality: each read holds only what was recorded since
        # the one before, so a test sees its own points.
        self.reader = InMemoryMetricReader(
            preferred_temporality={
                Counter: AggregationTemporality.DELTA,
                Histogram: AggregationTemporality.DELTA,
            }
        )
        metrics.set_meter_provider(MeterProvider(metric_readers=[self.reader]))

    def reset(self) -> None:
        self.spans.clear()
        self.reader.get_metrics_data()

    def points(self) -> dict[str, list]:
        """{metric name: its data points} of the ``orca_db`` meter."""
        found: dict[str, list] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                if scope.scope.name != "orca_db":
                    continue
                for metric in scope.metrics:
                    found[metric.name] = list(metric.data.data_points)
        return found

    def span(self, name: str):
        [span] = [s for s in self.spans.get_finished_spans() if s.name == name]
        return span


@pytest.fixture(scope="session")
def _sdk() -> Telemetry:
    return Telemetry()


@pytest.fixture
def telemetry(_sdk, settings) -> Telemetry:
    settings.ORCA_DB_OPENTELEMETRY = True
    _sdk.reset()
    return _sdk


# ----- a traced Django request through a scale event ------------------------------

SIMULATOR = None


def notes(request: HttpRequest) -> JsonResponse:
    """Reads notes through the simulator; ``?scale_event=1`` makes Aurora
    scale while the request holds its connection."""
    sim = connections["sim"]
    sim.ensure_connection()
    if request.GET.get("scale_event"):
        assert SIMULATOR is not None and SIMULATOR.scale_event() >= 1
    return JsonResponse({"notes": Note.objects.using("sim").count()})


urlpatterns = [path("notes/", notes)]


class TracingMiddleware:
    """A server span around each request, current while the view runs: what
    opentelemetry-instrumentation-django's middleware does."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with tracer.start_as_current_span(f"GET {request.path}", kind=trace.SpanKind.SERVER):
            return self.get_response(request)


@pytest.fixture
def traced_site(aurora_simulator):
    global SIMULATOR
    settings_dict = aurora_simulator.django_settings(connections["default"].settings_dict)
    connections["sim"] = DatabaseWrapper({**settings_dict, "OPTIONS": {}}, alias="sim")
    SIMULATOR = aurora_simulator
    try:
        with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[f"{__name__}.TracingMiddleware"]):
            yield aurora_simulator
    finally:
        SIMULATOR = None
        connections["sim"].close()
        del connections["sim"]


def test_scale_event_in_a_traced_request_is_a_span_event_and_metric_points(
    traced_site, telemetry, client, events
):
    response = client.get("/notes/", {"scale_event": "1"})

    assert response.status_code == 200 and traced_site.stats["terminated"] >= 1
    [event] = events
    assert (event.database, event.phase, event.outcome) == ("sim", "execute", "recovered")
    request_span = telemetry.span("GET /notes/")
    [span_event] = request_span.events
    assert span_event.name == "orca_db.retry"
    assert dict(span_event.attributes) == otel.span_event_attributes(event)
    assert span_event.attributes["orca_db.attempts"] == event.attempts == 2
    assert span_event.attributes["error.type"] == event.error_type
    assert request_span.start_time <= span_event.timestamp <= request_span.end_time

    points = telemetry.points()
    assert set(points) == {
        "orca_db.retry.events",
        "orca_db.retry.duration",
        "orca_db.retry.attempts",
    }
    labels = {"orca_db.database": "sim", "orca_db.phase": "execute", "orca_db.outcome": "recovered"}
    [count] = points["orca_db.retry.events"]
    assert (dict(count.attributes), count.value) == (labels, 1)
    [duration] = points["orca_db.retry.duration"]
    assert (dict(duration.attributes), duration.count) == (labels, 1)
    assert duration.sum == pytest.approx(event.elapsed_ms / 1000)
    assert list(duration.explicit_bounds) == list(otel.DURATION_BUCKETS)
    [attempts] = points["orca_db.retry.attempts"]
    assert (attempts.count, attempts.sum) == (1, 2)


def test_request_without_a_failure_leaves_no_trace(traced_site, telemetry, client, events):
    response = client.get("/notes/")

    assert response.status_code == 200 and events == []
    assert telemetry.span("GET /notes/").events == ()
    assert telemetry.points() == {}


def test_nothing_is_sent_while_the_setting_is_off(traced_site, telemetry, client, settings, events):
    settings.ORCA_DB_OPENTELEMETRY = False
    client.get("/notes/", {"scale_event": "1"})

    assert len(events) == 1
    assert telemetry.span("GET /notes/").events == ()
    assert telemetry.points() == {}


# ----- a traced block through retry_atomic ---------------------------------------


def test_transaction_run_again_adds_its_event_to_the_current_span(telemetry, kill_backend, events):
    runs = []

    @retry_atomic
    def write():
        runs.append(1)
        Note.objects.create(text="otel")
        if len(runs) == 1:
            kill_backend()  # a scale event between two statements
        Note.objects.create(text="otel 2")

    with tracer.start_as_current_span("nightly job"):
        write()

    span = telemetry.span("nightly job")
    settled = {(e.phase, e.outcome) for e in events}
    assert ("transaction", "recovered") in settled
    assert [
        (e.attributes["orca_db.phase"], e.attributes["orca_db.outcome"]) for e in span.events
    ] == [(e.phase, e.outcome) for e in events]
    [count] = [
        p
        for p in telemetry.points()["orca_db.retry.events"]
        if p.attributes["orca_db.phase"] == "transaction"
    ]
    assert count.value == 1


def test_without_a_current_span_only_the_metrics_are_recorded(telemetry, kill_backend):
    Note.objects.create(text="x")
    kill_backend()
    Note.objects.count()

    assert telemetry.spans.get_finished_spans() == ()
    assert [p.value for p in telemetry.points()["orca_db.retry.events"]] == [1]


# ----- one event, every output ------------------------------------------------------


def test_table_logs_metrics_and_traces_carry_the_same_fields(telemetry, kill_backend, admin_client):
    Note.objects.create(text="a")
    with captured(JsonFormatter()) as json_stream, captured(EmfFormatter()) as emf_stream:
        with tracer.start_as_current_span("request"):
            kill_backend()
            assert Note.objects.count() == 1

    row = RetryEvent.objects.get()
    [log] = [line for line in lines(json_stream) if line.get("kind") == "settled"]
    [emf] = [line for line in lines(emf_stream) if line.get("kind") == "settled"]
    assert_emf_document(json.dumps(emf))
    [span_event] = telemetry.span("request").events
    attributes = span_event.attributes
    points = telemetry.points()

    assert row.database == log["database"] == emf["database"] == attributes["orca_db.database"]
    assert row.phase == log["phase"] == emf["phase"] == attributes["orca_db.phase"]
    assert row.outcome == log["outcome"] == emf["outcome"] == attributes["orca_db.outcome"]
    assert row.attempts == log["attempts"] == emf["RetryAttempts"] == attributes["orca_db.attempts"]
    assert row.error_type == log["error_type"] == attributes["error.type"]
    assert row.sqlstate == log["sqlstate"] == attributes.get("db.response.status_code")
    assert (
        round(row.elapsed_ms, 1) == log["elapsed_ms"] == emf["RetryElapsed"]
        == attributes["orca_db.elapsed_ms"]
    )  # fmt: skip
    assert datetime.datetime.fromisoformat(log["occurred_at"]) == row.occurred_at
    [duration] = points["orca_db.retry.duration"]
    assert duration.sum * 1000 == pytest.approx(row.elapsed_ms)
    assert dict(duration.attributes) == {
        "orca_db.database": row.database,
        "orca_db.phase": row.phase,
        "orca_db.outcome": row.outcome,
    }
    # No statement, parameters or message in the traces.
    assert not any("statement" in key or "message" in key for key in attributes)
    # And the admin still shows it.
    page = admin_client.get(f"/admin/orca_db_app/retryevent/{row.pk}/change/")
    assert page.status_code == 200
    for value in (row.error_type, row.phase, row.outcome, str(row.attempts)):
        assert value in page.content.decode()


# ----- switched on and off ------------------------------------------------------------


def test_system_checks_report_a_bad_or_unusable_setting(settings, monkeypatch):
    settings.ORCA_DB_OPENTELEMETRY = "yes"
    assert [m.id for m in run_checks() if m.id.startswith("orca_db.W04")] == ["orca_db.W040"]

    settings.ORCA_DB_OPENTELEMETRY = True
    assert [m.id for m in run_checks() if m.id.startswith("orca_db.W04")] == []
    for name in ("opentelemetry", "opentelemetry.metrics", "opentelemetry.trace"):
        monkeypatch.setitem(sys.modules, name, None)
    [message] = [m for m in run_checks() if m.id.startswith("orca_db.W04")]
    assert message.id == "orca_db.W041" and "orca-db[otel]" in message.hint


PROCESS = """
import datetime, json, logging, sys
if HIDE:
    sys.modules["opentelemetry"] = None
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=["orca_db_app"], ORCA_DB_OPENTELEMETRY=SETTING,
                   DATABASES={}, USE_TZ=True)
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
django.setup()
after_setup = "opentelemetry" in sys.modules
from orca_db.events import SettledEvent, deliver
for _ in range(2):
    deliver(SettledEvent(database="elsewhere", phase="execute", outcome="recovered", attempts=2,
                       elapsed_ms=5.0, occurred_at=datetime.datetime.now(datetime.UTC)))
print(json.dumps({"after_setup": after_setup, "after_events": "opentelemetry" in sys.modules}))
"""


def run_process(setting: bool, hide: bool) -> tuple[dict, str]:
    code = PROCESS.replace("HIDE", repr(hide)).replace("SETTING", repr(setting))
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1]), result.stderr


@pytest.mark.django_db(transaction=False)
def test_opentelemetry_is_never_imported_while_off():
    imported, _ = run_process(setting=False, hide=False)
    assert imported == {"after_setup": False, "after_events": False}


@pytest.mark.django_db(transaction=False)
def test_opentelemetry_is_imported_at_the_first_event_once_on():
    imported, stderr = run_process(setting=True, hide=False)
    assert imported == {"after_setup": False, "after_events": True}
    assert "Traceback" not in stderr


@pytest.mark.django_db(transaction=False)
def test_missing_opentelemetry_is_one_warning_never_an_error():
    _, stderr = run_process(setting=True, hide=True)
    warnings = [
        line for line in stderr.splitlines() if "opentelemetry-api is not installed" in line
    ]
    assert len(warnings) == 1 and warnings[0].startswith("orca_db.events: ")
    assert "Traceback" not in stderr
