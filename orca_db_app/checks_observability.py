"""System checks orca_db.W040-W041: the OpenTelemetry switch
(docs/observability.md)."""

from __future__ import annotations

import importlib.util
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register

from orca_db.otel import SETTING

from .checks import DOCS


@register()
def check_opentelemetry(app_configs=None, **kwargs: Any) -> list[CheckMessage]:
    """W040: ``ORCA_DB_OPENTELEMETRY`` is not a bool; W041: it is on and
    ``opentelemetry-api`` cannot be imported."""
    value = getattr(settings, SETTING, False)
    if not isinstance(value, bool):
        return [
            Warning(
                f"{SETTING} must be True or False, got {value!r}: retry events are "
                f"not sent to OpenTelemetry.",
                hint=f"Set {SETTING} = True to send them. See {DOCS}#orca_dbw040.",
                id="orca_db.W040",
            )
        ]
    if value and _missing("opentelemetry.metrics", "opentelemetry.trace"):
        return [
            Warning(
                f"{SETTING} is on but opentelemetry-api is not installed: retry events "
                f"are not sent to OpenTelemetry.",
                hint=f"pip install 'orca-db[otel]'. See {DOCS}#orca_dbw041.",
                id="orca_db.W041",
            )
        ]
    return []


def _missing(*modules: str) -> bool:
    try:
        return any(importlib.util.find_spec(name) is None for name in modules)
    except ImportError:  # the parent package itself is missing or broken
        return True
