"""The Data API's own ``aurora`` keys: the cluster's ARN (``cluster_arn``)
and the secret's (``secret``), beside the retry keys every engine reads
(docs/data-api.md#installation-and-settings).

The transport's, below both hosts: the Django engine
(``OPTIONS["aurora"]``, ``orca_db.backends.aurora_data_api.settings``) and
the SQLAlchemy dialect (``aurora={...}``, ``orca_db.sqlalchemy.data_api``)
check them here, each passing its settings class (whose error table makes
the error ``ImproperlyConfigured``, or the core's ``ConfigurationError``)
and how its users write the options (``where``). Each error names the key.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Final, TypeVar

from orca_db.options import RetrySettings, parse_retry_settings
from orca_db.outcomes import ConfigurationError

__all__ = ["DataApiSettings", "parse_aurora", "parse_connect_timeout"]

_CLUSTER_ARN: Final = re.compile(
    r"^arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:cluster:[A-Za-z][A-Za-z0-9-]*$"
)
_SECRET_ARN: Final = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$"
)

S = TypeVar("S", bound=RetrySettings)


@dataclasses.dataclass(frozen=True)
class DataApiSettings:
    #: The Aurora DB cluster (the Data API's ``resourceArn``).
    cluster_arn: str
    #: The Secrets Manager secret with the database user's name and
    #: password (the Data API's ``secretArn``).
    secret_arn: str
    #: As the host takes it (Django: ``OPTIONS["isolation_level"]``).
    isolation_level: Any = None
    #: Seconds to open the HTTPS connection.
    connect_timeout: float | None = None


def parse_aurora(aurora: Any, settings_class: type[S], *, where: str) -> tuple[DataApiSettings, S]:
    """Validate an ``aurora`` value of a Data API database: its retry keys
    (:func:`orca_db.options.parse_retry_settings`) and its own; raise
    ``settings_class``'s :class:`ConfigurationError` naming the key as
    ``where[key]``."""
    error = settings_class.errors.of(ConfigurationError)
    retry = parse_retry_settings(aurora, settings_class, where=where)  # a dict at all
    aurora = aurora or {}
    cluster_arn = aurora.get("cluster_arn")
    key = f"{where}['cluster_arn']"
    if cluster_arn is None:
        raise error(
            f"{key} is required by the Data API engine: the ARN of the "
            f"Aurora cluster (arn:aws:rds:REGION:ACCOUNT:cluster:NAME)."
        )
    if not isinstance(cluster_arn, str) or not _CLUSTER_ARN.match(cluster_arn):
        raise error(
            f"{key} must be an Aurora cluster's ARN "
            f"(arn:aws:rds:REGION:ACCOUNT:cluster:NAME), got {cluster_arn!r}."
        )
    secret = aurora.get("secret")
    key = f"{where}['secret']"
    if secret is None:
        raise error(
            f"{key} is required by the Data API engine: the ARN of the Secrets "
            f"Manager secret holding the database user's name and password."
        )
    if not isinstance(secret, str) or not _SECRET_ARN.match(secret):
        raise error(
            f"{key} must be a Secrets Manager secret's full ARN for the Data API "
            f"engine (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-SUFFIX), got {secret!r}."
        )
    return DataApiSettings(cluster_arn=cluster_arn, secret_arn=secret), retry


def parse_connect_timeout(value: Any, settings_class: type[RetrySettings], *, key: str) -> float:
    """A positive number of seconds (a URL's query gives it as text), or
    ``settings_class``'s :class:`ConfigurationError` naming ``key``."""
    try:
        if isinstance(value, bool):
            raise ValueError
        seconds = float(value)
        if not seconds > 0:
            raise ValueError
    except (TypeError, ValueError):
        raise settings_class.errors.of(ConfigurationError)(
            f"{key} must be a positive number of seconds, got {value!r}."
        ) from None
    return seconds
