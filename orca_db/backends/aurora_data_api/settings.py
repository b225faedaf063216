"""The Data API engine's settings: ``NAME`` (the database), and in
``OPTIONS["aurora"]`` the cluster's ARN (``cluster_arn``) and the secret's
(``secret``), beside the retry keys every engine reads
(docs/data-api.md#installation-and-settings). Checked at the first connect and by system
check ``orca_db.E050``; each error names the key."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Final

from django.core.exceptions import ImproperlyConfigured

from orca_db.conf import OPTIONS_KEY, parse_retry_settings

_CLUSTER_ARN: Final = re.compile(
    r"^arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:cluster:[A-Za-z][A-Za-z0-9-]*$"
)
_SECRET_ARN: Final = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$"
)
#: OPTIONS keys this engine reads; anything else there is refused (the
#: psycopg engines' libpq options mean nothing to an HTTPS call).
OPTIONS_KEYS: Final = frozenset({OPTIONS_KEY, "isolation_level", "connect_timeout"})


@dataclasses.dataclass(frozen=True)
class DataApiSettings:
    #: The Aurora DB cluster (the Data API's ``resourceArn``).
    cluster_arn: str
    #: The Secrets Manager secret with the database user's name and
    #: password (the Data API's ``secretArn``).
    secret_arn: str
    #: ``OPTIONS["isolation_level"]`` (as Django's PostgreSQL backend takes it).
    isolation_level: Any = None
    #: ``OPTIONS["connect_timeout"]``: seconds to open the HTTPS connection.
    connect_timeout: float | None = None


def _key(name: str) -> str:
    return f"OPTIONS[{OPTIONS_KEY!r}][{name!r}]"


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
    aurora = options.get(OPTIONS_KEY)
    parse_retry_settings(aurora)  # the retry keys, and a dict at all
    aurora = aurora or {}
    cluster_arn = aurora.get("cluster_arn")
    if cluster_arn is None:
        raise ImproperlyConfigured(
            f"{_key('cluster_arn')} is required by the Data API engine: the ARN of the "
            f"Aurora cluster (arn:aws:rds:REGION:ACCOUNT:cluster:NAME)."
        )
    if not isinstance(cluster_arn, str) or not _CLUSTER_ARN.match(cluster_arn):
        raise ImproperlyConfigured(
            f"{_key('cluster_arn')} must be an Aurora cluster's ARN "
            f"(arn:aws:rds:REGION:ACCOUNT:cluster:NAME), got {cluster_arn!r}."
        )
    secret = aurora.get("secret")
    if secret is None:
        raise ImproperlyConfigured(
            f"{_key('secret')} is required by the Data API engine: the ARN of the Secrets "
            f"Manager secret holding the database user's name and password."
        )
    if not isinstance(secret, str) or not _SECRET_ARN.match(secret):
        raise ImproperlyConfigured(
            f"{_key('secret')} must be a Secrets Manager secret's full ARN for the Data API "
            f"engine (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-SUFFIX), got {secret!r}."
        )
    connect_timeout = options.get("connect_timeout")
    if connect_timeout is not None:
        try:
            if isinstance(connect_timeout, bool):
                raise ValueError
            connect_timeout = float(connect_timeout)
            if not connect_timeout > 0:
                raise ValueError
        except (TypeError, ValueError):
            raise ImproperlyConfigured(
                f"OPTIONS['connect_timeout'] must be a positive number of seconds, "
                f"got {options.get('connect_timeout')!r}."
            ) from None
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
    return DataApiSettings(
        cluster_arn=cluster_arn,
        secret_arn=secret,
        isolation_level=isolation_level,
        connect_timeout=connect_timeout,
    )
