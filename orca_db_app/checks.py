"""System checks, ids ``orca_db.E###`` / ``orca_db.W###`` (docs/checks.md).

They read ``settings.DATABASES`` as written: building a connection would
raise ``ImproperlyConfigured`` for the very options E001 reports, and none
of them needs the database itself, so none is tagged ``database``. Each
examines the aliases in ``databases`` when given (``check --database``,
``migrate``), else every alias.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping
from importlib import import_module
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from orca_db.conf import OPTIONS_KEY, RetrySettings, parse_retry_settings

#: The project's home, the one place its URL is written in the code:
#: setup.cfg's project_urls name the same (tests/test_checks.py holds them
#: together). To be confirmed before the first release.
PROJECT_URL = "https://github.com/nasa/cumulus-orca-db"


def docs_url(page: str) -> str:
    """A page of the repository's docs/ online: a user of the wheel has no
    docs/ folder to open."""
    return f"{PROJECT_URL}/blob/main/docs/{page}"


DOCS = docs_url("checks.md")

#: What a paused cluster may take to resume (seconds): about 15 s, 30 s or
#: more after a long pause; AWS advises client timeouts of at least this.
RESUME_SECONDS = 30
LAMBDA_TIMEOUT_ENV = "AWS_LAMBDA_FUNCTION_TIMEOUT"
LAMBDA_TIMEOUT_SETTING = "ORCA_DB_LAMBDA_TIMEOUT"


def _hint(check_id: str, text: str) -> str:
    anchor = check_id.replace(".", "").lower()
    return f"{text} See {DOCS}#{anchor}."


def _is_aurora(settings_dict: Mapping[str, Any]) -> bool:
    """Whether the alias's backend has the retry layer (the aurora engine, or
    any backend composed with ``AuroraRetryMixin``). Imports the backend
    module; connects nothing."""
    from orca_db.backends.mixins import AuroraRetryMixin

    engine = settings_dict.get("ENGINE") or ""
    try:
        wrapper = import_module(f"{engine}.base").DatabaseWrapper
    except Exception:
        return False  # Django reports a broken ENGINE itself
    return isinstance(wrapper, type) and issubclass(wrapper, AuroraRetryMixin)


def _aurora_databases(databases: Iterable[str] | None) -> Iterator[tuple[str, Mapping, Mapping]]:
    """(alias, settings dict, OPTIONS) of each aurora database to examine."""
    configured = settings.DATABASES
    aliases = configured if databases is None else [a for a in databases if a in configured]
    for alias in aliases:
        settings_dict = configured[alias]
        if not isinstance(settings_dict, Mapping) or not _is_aurora(settings_dict):
            continue
        options = settings_dict.get("OPTIONS") or {}
        if isinstance(options, Mapping):
            yield alias, settings_dict, options


def _retry_settings(options: Mapping) -> RetrySettings | None:
    try:
        return parse_retry_settings(options.get(OPTIONS_KEY))
    except ImproperlyConfigured:
        return None  # E001 reports it


def in_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


@register()
def check_retry_options(app_configs=None, databases=None, **kwargs: Any) -> list[CheckMessage]:
    """E001: an ``OPTIONS["aurora"]`` value the backend would refuse."""
    errors: list[CheckMessage] = []
    for alias, _, options in _aurora_databases(databases):
        try:
            parse_retry_settings(options.get(OPTIONS_KEY))
        except ImproperlyConfigured as error:
            errors.append(
                Error(
                    f"Database {alias!r}: {error}",
                    hint=_hint("orca_db.E001", "Fix the value in DATABASES."),
                    id="orca_db.E001",
                )
            )
    return errors


@register()
def check_conn_max_age_in_lambda(
    app_configs=None, databases=None, **kwargs: Any
) -> list[CheckMessage]:
    """W001: persistent connections in AWS Lambda."""
    if not in_lambda():
        return []
    warnings: list[CheckMessage] = []
    for alias, settings_dict, _ in _aurora_databases(databases):
        conn_max_age = settings_dict.get("CONN_MAX_AGE", 0)
        if conn_max_age != 0:
            warnings.append(
                Warning(
                    f"Database {alias!r} has CONN_MAX_AGE = {conn_max_age!r} in AWS "
                    f"Lambda: its connection outlives each invocation, is cut while "
                    f"the function is frozen, and keeps the cluster from pausing.",
                    hint=_hint("orca_db.W001", "Set CONN_MAX_AGE to 0 in Lambda."),
                    id="orca_db.W001",
                )
            )
    return warnings


def lambda_timeout() -> tuple[float | None, str, object]:
    """(seconds or None, where it came from, the raw value)."""
    raw = os.environ.get(LAMBDA_TIMEOUT_ENV)
    if raw not in (None, ""):
        source = f"environment variable {LAMBDA_TIMEOUT_ENV}"
    else:
        raw = getattr(settings, LAMBDA_TIMEOUT_SETTING, None)
        source = f"setting {LAMBDA_TIMEOUT_SETTING}"
        if raw is None:
            return None, source, raw
    try:
        if isinstance(raw, bool):
            raise ValueError
        seconds = float(raw)
    except (TypeError, ValueError):
        return math.nan, source, raw
    return seconds, source, raw


@register()
def check_deadline_within_lambda_timeout(
    app_configs=None, databases=None, **kwargs: Any
) -> list[CheckMessage]:
    """E002: an unreadable Lambda timeout; W002: a retry deadline that does
    not end before the function is killed."""
    timeout, source, raw = lambda_timeout()
    if timeout is None:
        return []
    if not (math.isfinite(timeout) and timeout > 0):
        return [
            Error(
                f"The {source} must be a positive number of seconds, got {raw!r}.",
                hint=_hint("orca_db.E002", "Set it to the function's timeout."),
                id="orca_db.E002",
            )
        ]
    warnings: list[CheckMessage] = []
    for alias, _, options in _aurora_databases(databases):
        retry = _retry_settings(options)
        if retry is not None and retry.enabled and retry.deadline >= timeout:
            warnings.append(
                Warning(
                    f"Database {alias!r} retries for up to {retry.deadline:g} s, but "
                    f"the Lambda function times out after {timeout:g} s ({source}): "
                    f"it would be killed mid-retry instead of getting an error.",
                    hint=_hint(
                        "orca_db.W002",
                        f"Set OPTIONS['{OPTIONS_KEY}']['deadline'] below {timeout:g}, "
                        f"or wrap the handler in orca_db.aws_lambda.database_handler.",
                    ),
                    id="orca_db.W002",
                )
            )
    return warnings


@register()
def check_connect_timeout(app_configs=None, databases=None, **kwargs: Any) -> list[CheckMessage]:
    """E003: a ``connect_timeout`` libpq cannot read; W003: one shorter than
    a paused cluster takes to resume."""
    messages: list[CheckMessage] = []
    for alias, _, options in _aurora_databases(databases):
        raw = options.get("connect_timeout")
        if raw is None:
            continue
        try:
            if isinstance(raw, bool):
                raise ValueError
            seconds = int(str(raw).strip())
        except ValueError:
            messages.append(
                Error(
                    f"Database {alias!r}: OPTIONS['connect_timeout'] must be a whole "
                    f"number of seconds, got {raw!r}.",
                    hint=_hint("orca_db.E003", "libpq refuses anything else at connect."),
                    id="orca_db.E003",
                )
            )
            continue
        # 0 or less: libpq waits forever, which a resume never outlasts.
        if 0 < seconds < RESUME_SECONDS:
            messages.append(
                Warning(
                    f"Database {alias!r} has connect_timeout = {seconds} s, shorter than "
                    f"a paused Aurora Serverless cluster may take to resume "
                    f"({RESUME_SECONDS} s or more): connection attempts give up on a "
                    f"cluster that is waking.",
                    hint=_hint(
                        "orca_db.W003",
                        f"Use at least {RESUME_SECONDS}, or leave connect_timeout unset "
                        f"(each attempt then gets the time left of the retry deadline).",
                    ),
                    id="orca_db.W003",
                )
            )
    return messages


# ----- retry events (docs/events.md), orca_db.W020-W029 -----------------------


@register()
def check_event_settings(app_configs=None, **kwargs: Any) -> list[CheckMessage]:
    """W020: ``ORCA_DB_EVENTS_DATABASE`` names no alias; W021: a retention
    setting ``aurora_prune_events`` cannot use."""
    from .conf import event_retention_days, events_database

    messages: list[CheckMessage] = []
    for check_id, read, text in (
        (
            "orca_db.W020",
            events_database,
            "Set ORCA_DB_EVENTS_DATABASE to an alias of DATABASES, or remove it to store "
            "each event in its own database.",
        ),
        (
            "orca_db.W021",
            event_retention_days,
            "Set ORCA_DB_EVENT_RETENTION_DAYS to a number of days, or remove it.",
        ),
    ):
        try:
            read()
        except ImproperlyConfigured as error:
            messages.append(Warning(str(error), hint=_hint(check_id, text), id=check_id))
    return messages
