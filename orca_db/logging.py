"""JSON log lines for the ``orca_db.*`` loggers (CloudWatch Logs Insights,
Datadog, Loki...): one object per record, with the facts orca-db attaches to
its records (``extra={"orca_db": {...}}``) as top-level fields.

    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "orca_db.logging.JsonFormatter"}},
        "handlers": {"stdout": {"class": "logging.StreamHandler",
                                "stream": "ext://sys.stdout", "formatter": "json"}},
        "loggers": {"orca_db": {"handlers": ["stdout"], "level": "INFO",
                                "propagate": False}},
    }

See docs/events.md. ``EmfFormatter`` writes the same lines and makes each
settled retry event a CloudWatch metric too (docs/observability.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from .events import SettledEvent, lambda_request_id, listen, unlisten
from .metrics_emf import DEFAULT_DIMENSIONS, DEFAULT_NAMESPACE, Directive

#: The attribute orca-db's records carry their facts in.
PAYLOAD = "orca_db"
#: Payload keys that would shadow a field of the log line itself.
_RENAMED = {"message": "error_message", "level": "orca_db_level", "logger": "orca_db_logger"}


class JsonFormatter(_BaseJsonFormatter):
    """``python-json-logger``'s formatter with orca-db's payload flattened.

    Every line has ``timestamp``, ``level``, ``logger`` and ``message``; an
    orca-db record adds ``kind`` (``retry``, ``settled``, ...), ``database``,
    ``phase``, ``error_type``, ``sqlstate``, ``attempts``, ``outcome``,
    ``elapsed_ms``... The event's driver message becomes ``error_message``
    (``message`` is the line's own text). Records from the Lambda support
    gain ``lambda_request_id``. Any ``fmt``/keyword python-json-logger takes
    still works; the defaults suit CloudWatch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not args and "fmt" not in kwargs:
            kwargs["fmt"] = ["levelname", "name", "message"]
            kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", True)
        super().__init__(*args, **kwargs)

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        payload = log_data.pop(PAYLOAD, None)
        if not isinstance(payload, dict):
            if payload is not None:
                log_data[PAYLOAD] = payload
            return
        for key, value in payload.items():
            name = _RENAMED.get(str(key), str(key))
            if name in log_data:
                name = f"{PAYLOAD}_{name}"
            log_data[name] = value
        if "lambda_request_id" not in log_data:
            request_id = lambda_request_id.get()
            if request_id is not None:
                log_data["lambda_request_id"] = request_id


def _settled(record: logging.LogRecord) -> dict[str, Any] | None:
    payload = getattr(record, PAYLOAD, None)
    if isinstance(payload, dict) and payload.get("kind") == "settled":
        return payload
    return None


class EmfFormatter(JsonFormatter):
    """:class:`JsonFormatter` whose settled-event lines are also CloudWatch
    Embedded Metric Format documents (``RetryEvents``, ``RetryElapsed``,
    ``RetryAttempts``; see :mod:`orca_db.metrics_emf`). Other records are
    written exactly as ``JsonFormatter`` writes them, so it can replace it::

        "formatters": {"json": {"()": "orca_db.logging.EmfFormatter",
                                "namespace": "MyApp/Aurora",
                                "dimensions": [["database", "outcome"]]}},

    ``namespace`` (default ``"orca-db"``) and ``dimensions`` (sets of names
    from ``database``, ``phase``, ``outcome``, ``function_name``; default
    ``[["database", "outcome"]]``) are checked when logging is configured.
    """

    def __init__(
        self,
        *args: Any,
        namespace: str = DEFAULT_NAMESPACE,
        dimensions: Iterable[Iterable[str]] = DEFAULT_DIMENSIONS,
        **kwargs: Any,
    ) -> None:
        self.directive = Directive(namespace, dimensions)
        super().__init__(*args, **kwargs)

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        payload = _settled(record)
        if payload is not None:
            log_data.update(self.directive.members(payload))

    def format_event(self, event: SettledEvent) -> str:
        """``event`` as one EMF document (its fields, the metrics and
        ``_aws``), for writing events without going through logging."""
        data = {"kind": "settled"}
        for key, value in event.as_dict().items():
            data[_RENAMED.get(key, key)] = value  # as JsonFormatter names them
        return json.dumps({**data, **self.directive.members(data)}, default=str)


class SettledEvents(logging.Filter):
    """Let through only the records of settled retry events: for a handler
    that should write metric lines and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _settled(record) is not None


@contextlib.contextmanager
def emf_events_to(target: str | Path | IO[str], **options: Any) -> Iterator[EmfFormatter]:
    """Within this block, append every settled retry event (the
    listeners of ``orca_db.events``, whatever the logging levels) to ``target`` (a
    path or a text stream) as an EMF line; ``options`` go to
    :class:`EmfFormatter`. Used by ``aurora_demo --emf``."""
    formatter = EmfFormatter(**options)
    lock = threading.Lock()  # events arrive from the application's threads
    with contextlib.ExitStack() as stack:
        stream: IO[str] = (
            stack.enter_context(open(target, "a", encoding="utf-8"))
            if isinstance(target, str | Path)
            else target
        )

        def write(event: SettledEvent) -> None:
            line = formatter.format_event(event)
            with lock:
                stream.write(line + "\n")
                stream.flush()

        listen(write)
        try:
            yield formatter
        finally:
            unlisten(write)
