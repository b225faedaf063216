"""System checks of the Data API engine (``orca_db.backends.aurora_data_api``),
ids ``orca_db.E050``-``E051`` and ``orca_db.W050``-``W052``
(docs/checks.md#data-api-engine). Like the other checks they read
``settings.DATABASES`` as written and connect nothing."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from orca_db.conf import OPTIONS_KEY, parse_retry_settings

from .checks import _hint, lambda_timeout

ENGINE = "orca_db.backends.aurora_data_api"
#: Settings a connection engine reads and the Data API does not: the
#: secret holds the credentials, the cluster's ARN says where it is.
_IGNORED = ("HOST", "PORT", "USER", "PASSWORD")


def _data_api_databases(databases: Iterable[str] | None) -> Iterator[tuple[str, Mapping]]:
    configured = settings.DATABASES
    aliases = configured if databases is None else [a for a in databases if a in configured]
    for alias in aliases:
        settings_dict = configured[alias]
        if isinstance(settings_dict, Mapping) and settings_dict.get("ENGINE") == ENGINE:
            yield alias, settings_dict


@register()
def check_data_api(app_configs=None, databases=None, **kwargs: Any) -> list[CheckMessage]:
    from orca_db.backends.aurora_data_api.settings import parse_data_api_settings

    messages: list[CheckMessage] = []
    found = list(_data_api_databases(databases))
    if found and importlib.util.find_spec("boto3") is None:
        messages.append(
            Error(
                f"Database {found[0][0]!r} uses the Data API engine, and boto3 is not installed.",
                hint=_hint(
                    "orca_db.E051", "Install it: python -m pip install 'orca-db[data-api]'."
                ),
                id="orca_db.E051",
            )
        )
    timeout, source, _ = lambda_timeout()
    for alias, settings_dict in found:
        try:
            parse_data_api_settings(settings_dict.get("OPTIONS"))
        except ImproperlyConfigured as error:
            messages.append(
                Error(
                    f"Database {alias!r}: {error}",
                    hint=_hint("orca_db.E050", "Fix OPTIONS in DATABASES."),
                    id="orca_db.E050",
                )
            )
            continue
        ignored = [key for key in _IGNORED if settings_dict.get(key)]
        if ignored:
            messages.append(
                Warning(
                    f"Database {alias!r} uses the Data API engine, which ignores "
                    f"{', '.join(ignored)}: the secret holds the credentials.",
                    hint=_hint("orca_db.W050", "Remove them, or put them in the secret."),
                    id="orca_db.W050",
                )
            )
        messages += _time_zone(alias, settings_dict)
        retry = parse_retry_settings((settings_dict.get("OPTIONS") or {}).get(OPTIONS_KEY))
        if timeout is not None and retry.enabled and retry.deadline >= timeout:
            messages.append(
                Warning(
                    f"Database {alias!r} retries for up to {retry.deadline:g} s, but the "
                    f"Lambda function times out after {timeout:g} s ({source}).",
                    hint=_hint(
                        "orca_db.W052",
                        f"Set OPTIONS['{OPTIONS_KEY}']['deadline'] below {timeout:g}, or wrap "
                        f"the handler in orca_db.aws_lambda.database_handler.",
                    ),
                    id="orca_db.W052",
                )
            )
    return messages


def _time_zone(alias: str, settings_dict: Mapping) -> list[CheckMessage]:
    zone = settings_dict.get("TIME_ZONE")
    if zone in (None, "UTC") and (settings.USE_TZ or settings.TIME_ZONE == "UTC"):
        return []
    return [
        Warning(
            f"Database {alias!r} needs a time zone other than UTC "
            f"({'TIME_ZONE ' + repr(zone) if zone else 'USE_TZ = False'}), and the Data API "
            f"engine cannot set one: each call may run on another session, all in the "
            f"cluster's time zone (UTC). Datetimes are read and written in UTC.",
            hint=_hint("orca_db.W051", "Use USE_TZ = True, or set the time zone in SQL."),
            id="orca_db.W051",
        )
    ]
