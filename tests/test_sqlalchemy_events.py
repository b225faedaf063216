"""The SQLAlchemy plugin's events in a SQLAlchemy-only process (no Django
settings): the same JSON/EMF log lines as the Django host for each retry and
each refusal, and OpenTelemetry span events and metrics once
``orca_db.sqlalchemy.use_opentelemetry()`` is called."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.db import connections

from tests.driver import DRIVER
from tests.observability_helpers import assert_emf_document

pytest.importorskip("sqlalchemy")
pytest.importorskip("opentelemetry.sdk")

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import io, json, logging, os, sys

    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from sqlalchemy import URL, create_engine, text

    import orca_db.sqlalchemy as orca
    from orca_db.logging import EmfFormatter
    from orca_db.testing.simulator import AuroraSimulator

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    orca.use_opentelemetry()

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EmfFormatter())
    logging.getLogger("orca_db").addHandler(handler)
    logging.getLogger("orca_db").setLevel(logging.INFO)

    server = json.loads(os.environ["ORCA_TEST_SERVER"])
    sim = AuroraSimulator(server["HOST"], int(server["PORT"])).start()
    outcomes = []
    try:
        engine = create_engine(
            URL.create(
                "postgresql+" + os.environ["ORCA_DB_DRIVER"], username=server["USER"],
                password=server["PASSWORD"] or None, host=sim.host, port=sim.port,
                database="postgres",
            ),
            plugins=["orca_db"],
            aurora={"deadline": 20},
        )
        with trace.get_tracer("job").start_as_current_span("job"):
            sim.reject_startups(2)
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            sim.lose_replies(1, contains="COMMIT")
            try:
                with engine.begin() as connection:
                    connection.execute(text("CREATE TEMP TABLE orca_events (x int)"))
                    connection.execute(text("INSERT INTO orca_events VALUES (1)"))
            except orca.OutcomeUnknown:
                outcomes.append("OutcomeUnknown")
        engine.dispose()
    finally:
        sim.stop()

    from django.conf import settings

    [job] = spans.get_finished_spans()
    points = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points[metric.name] = [
                    dict(point.attributes) for point in metric.data.data_points
                ]
    print(json.dumps({
        "lines": stream.getvalue().splitlines(),
        "outcomes": outcomes,
        "span_events": [[e.name, dict(e.attributes)] for e in job.events],
        "points": points,
        "django_configured": settings.configured,
    }))
    """
)


def test_events_logs_emf_and_opentelemetry_without_django_settings():
    settings = connections["default"].settings_dict
    server = {key: settings[key] for key in ("HOST", "PORT", "USER", "PASSWORD")}
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "DJANGO_SETTINGS_MODULE" and not key.startswith("OTEL_")
    }
    env.update(ORCA_TEST_SERVER=json.dumps(server), ORCA_DB_DRIVER=DRIVER, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["django_configured"] is False
    assert found["outcomes"] == ["OutcomeUnknown"]

    lines = [json.loads(line) for line in found["lines"]]
    retries = [line for line in lines if line.get("kind") == "retry"]
    settled = [line for line in lines if line.get("kind") == "settled"]
    assert [(r["phase"], r["attempt"]) for r in retries] == [("connect", 1), ("connect", 2)]
    assert [(s["phase"], s["outcome"], s["attempts"]) for s in settled] == [
        ("connect", "recovered", 3),
        ("transaction", "raised", 1),
    ]
    assert settled[1]["statement"] == "COMMIT"
    for line in settled:
        document = assert_emf_document(json.dumps(line))
        assert document["RetryEvents"] == 1 and document["database"] == "postgres"
    if server["PASSWORD"]:
        assert all(server["PASSWORD"] not in raw for raw in found["lines"])

    events = [attributes for name, attributes in found["span_events"] if name == "orca_db.retry"]
    assert [(e["orca_db.phase"], e["orca_db.outcome"]) for e in events] == [
        ("connect", "recovered"),
        ("transaction", "raised"),
    ]
    outcomes = sorted(p["orca_db.outcome"] for p in found["points"]["orca_db.retry.events"])
    assert outcomes == ["raised", "recovered"]
