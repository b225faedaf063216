"""The Data API engine's ``OPTIONS``: ``OPTIONS["aurora"]`` (the cluster's
and the secret's ARNs, checked by the transport,
:mod:`orca_db.data_api.settings`, beside the retry keys), and the two
other keys Django's PostgreSQL backend reads that mean something here:
``isolation_level`` and ``connect_timeout``
(docs/data-api.md#installation-and-settings). Checked at the first connect
and by system check ``orca_db.E050``; each error is ``ImproperlyConfigured``
naming the key."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from django.core.exceptions import ImproperlyConfigured

from orca_db.conf import OPTIONS_KEY, RetrySettings
from orca_db.data_api.settings import DataApiSettings, parse_aurora, parse_connect_timeout
from orca_db.options import DJANGO_WHERE

#: OPTIONS keys this engine reads; anything else there is refused (the
#: psycopg engines' libpq options mean nothing to an HTTPS call).
OPTIONS_KEYS: Final = frozenset({OPTIONS_KEY, "isolation_level", "connect_timeout"})


def parse_data_api_settings(options: Mapping[str, Any] | None) -> DataApiSettings:
    """Validate a Data API database's ``OPTIONS``; ``ImproperlyConfigured``
    naming the key."""
    options = options or {}
    if options.get("pool"):
        raise ImproperlyConfigured(
            "OPTIONS['pool'] is not used by the Data API engine: it opens no connection "
            "to pool. Remove it."
        )
    # Saying "no pool" (False or None) is true of this engine: accepted.
    unknown = sorted(set(options) - OPTIONS_KEYS - {"pool"})
    if unknown:
        raise ImproperlyConfigured(
            f"OPTIONS[{unknown[0]!r}] is not used by the Data API engine; it takes "
            f"{', '.join(repr(k) for k in sorted(OPTIONS_KEYS))}."
        )
    target, _ = parse_aurora(options.get(OPTIONS_KEY), RetrySettings, where=DJANGO_WHERE)
    connect_timeout = options.get("connect_timeout")
    if connect_timeout is not None:
        connect_timeout = parse_connect_timeout(
            connect_timeout, RetrySettings, key="OPTIONS['connect_timeout']"
        )
    isolation_level = options.get("isolation_level")
    if isolation_level is not None:
        from django.db.backends.postgresql.psycopg_any import IsolationLevel

        try:
            isolation_level = IsolationLevel(isolation_level)
        except ValueError:
            # Django's PostgreSQL backend's words.
            raise ImproperlyConfigured(
                f"Invalid transaction isolation level {isolation_level} specified. Use "
                f"one of the psycopg.IsolationLevel values."
            ) from None
    return dataclasses.replace(
        target, isolation_level=isolation_level, connect_timeout=connect_timeout
    )
