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

See docs/events.md.
"""

from __future__ import annotations

import logging
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from .events import lambda_request_id

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
