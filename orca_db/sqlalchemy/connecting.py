"""Connecting, for the plugin (``orca_db.sqlalchemy.hooks.Host``): every
connect retried through pauses, scale points and resume storms within
``deadline``, with AWS logins fresh per connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import drivers
from ..classify import Failure
from ..options import RetrySettings
from .exc import as_sqlalchemy


class ConnectHooks:
    """Mixed into ``orca_db.sqlalchemy.hooks.Host``."""

    alias: str
    settings: RetrySettings
    credentials: Any
    #: The dialect's own ``connect()`` (its class's).
    dbapi_connect: Callable[..., Any]

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        """The dialect's ``connect()``, retried.

        Installed on the engine's dialect instance, not as a ``do_connect``
        listener: SQLAlchemy runs the application's ``do_connect`` listeners
        first (the documented way to hand over a fresh token or password;
        they edit ``cparams``), then this, with what they produced. A
        listener of ours would return the connection before theirs ran."""
        from ..deadlines import bounded_connect
        from ..retry import Operation, active_operation, remaining_time, run

        host = str(cparams.get("host") or "")
        if host and not host.startswith("/"):
            for key, value in drivers.TCP_DEFAULTS.items():
                cparams.setdefault(key, value)

        credentials = self.credentials
        dbapi_connect = self.dbapi_connect

        def connect(params: dict) -> Any:
            if credentials is None:
                return dbapi_connect(*cargs, **params)
            # A login refused after a rotation is refreshed and tried once more.
            return credentials.connect(
                params, lambda fresh: dbapi_connect(*cargs, **fresh), self.alias
            )

        def connect_once() -> Any:
            # Read for each attempt: a new IAM token, the secret as cached.
            params = cparams if credentials is None else credentials.apply(cparams)
            return bounded_connect(connect, params, remaining_time(), drivers.close_broken)

        if active_operation(self.alias) is not None:
            return connect_once()  # a replay's reconnect: it retries
        operation = Operation(self.alias, "connect", self.settings)
        with as_sqlalchemy(None):
            return run(operation, connect_once, _any_connect_failure)


def credentials_for(settings: RetrySettings, url: Any) -> Any:
    """The core's :class:`orca_db.aws.credentials.Credentials` for an
    engine whose ``aurora`` names a ``secret`` or ``iam_auth`` (``None``
    otherwise); the URL's host, port and database win over the secret's."""
    aws = settings.aws
    if aws is None or not aws.credentials:
        return None
    from ..aws.credentials import Credentials

    given = {"host": url.host, "port": url.port, "dbname": url.database}
    return Credentials(aws, frozenset(key for key, value in given.items() if value))


def _any_connect_failure(error: BaseException, failure: Failure) -> None:
    return None  # a failed connect applied nothing: every retryable one is safe
