"""What the Data API dialect (``orca_db.sqlalchemy.data_api``) is given:
``aurora={...}``, checked by the transport's parser
(:mod:`orca_db.data_api.settings`) with the Django engine's messages, each
naming ``aurora[...]``; and its URL, which names the database only. A bad
value is ``sqlalchemy.exc.ArgumentError``, as for any bad
``create_engine`` argument."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc as sa_exc

from ..data_api.settings import DataApiSettings, parse_aurora, parse_connect_timeout
from ..options import RetrySettings
from ..outcomes import ConfigurationError

__all__ = ["connect_args", "parse_settings"]

#: How the dialect's users write the options.
WHERE = "aurora"


def parse_settings(aurora: Any) -> tuple[DataApiSettings, RetrySettings]:
    """The cluster, the secret and the retry settings (the core's: errors
    are raised as ``orca_db.outcomes``'s, and by the dialect as
    ``orca_db.sqlalchemy``'s)."""
    try:
        return parse_aurora(aurora, RetrySettings, where=WHERE)
    except ConfigurationError as error:
        raise sa_exc.ArgumentError(str(error)) from error


def connect_args(url: Any, target: DataApiSettings) -> dict[str, Any]:
    """``orca_db.data_api.connect``'s arguments for ``url``
    (``postgresql+aurora_data_api:///DBNAME[?connect_timeout=S]``)."""
    if url.host or url.username or url.password or url.port:
        raise sa_exc.ArgumentError(
            "A postgresql+aurora_data_api URL names the database only "
            "(postgresql+aurora_data_api:///DBNAME): the cluster and the secret are "
            "aurora={'cluster_arn': ..., 'secret': ...}."
        )
    query = dict(url.query)
    connect_timeout = query.pop("connect_timeout", None)
    if query:
        raise sa_exc.ArgumentError(
            f"{sorted(query)[0]!r} in the URL is not used by the Data API dialect; it "
            f"takes connect_timeout only."
        )
    params: dict[str, Any] = {
        "database": url.database or "postgres",
        "resource_arn": target.cluster_arn,
        "secret_arn": target.secret_arn,
    }
    if connect_timeout is not None:
        try:
            params["connect_timeout"] = parse_connect_timeout(
                connect_timeout, RetrySettings, key="connect_timeout"
            )
        except ConfigurationError as error:
            raise sa_exc.ArgumentError(str(error)) from error
    return params
