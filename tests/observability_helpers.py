"""Shared by the tests/test_observability*.py files: EMF documents checked
against AWS's specification, and loggers that capture formatted lines."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import numbers
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "emf_schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
#: CloudWatch Logs' limit on one event, and so on one EMF document.
MAX_BYTES = 256 * 1024


def assert_emf_document(line: str) -> dict[str, Any]:
    """Parse ``line`` and check it is an EMF document: the schema, then the
    rules a schema cannot state. Returns the document."""
    assert len(line.encode()) <= MAX_BYTES
    document = json.loads(line)
    VALIDATOR.validate(document)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for names in directive["Dimensions"]:
            for name in names:
                assert isinstance(document.get(name), str) and document[name], (name, document)
        for metric in directive["Metrics"]:
            value = document.get(metric["Name"])
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100, metric
            for item in values:
                assert isinstance(item, numbers.Real) and not isinstance(item, bool), metric
    return document


@contextlib.contextmanager
def captured(formatter: logging.Formatter, logger: str = "orca_db") -> Iterator[io.StringIO]:
    """Format what ``logger`` logs (DEBUG and up) with ``formatter``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    target = logging.getLogger(logger)
    old_level = target.level
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        target.removeHandler(handler)
        target.setLevel(old_level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]
