"""``ENGINE: "orca_db.backends.aurora_pool"``: the aurora engine on a
connection pool kept by django-db-connection-pool (SQLAlchemy's QueuePool),
for long-running servers on either driver.

The pool pings each connection before handing it out (after a scale event
every idle one is dead) and recycles connections after five minutes unless
``POOL_OPTIONS`` says otherwise. A connection the retry layer gives up on is
invalidated, so the pool never hands it out again. Not for AWS Lambda: a
frozen function keeps its pool's connections open (check orca_db.W030).
"""

from __future__ import annotations

import contextvars
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.backends.postgresql import base as postgresql

try:
    from dj_db_conn_pool.backends.postgresql.mixins import PGDatabaseWrapperMixin
except ImportError as error:  # pragma: no cover - depends on the install
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "The orca_db.backends.aurora_pool engine needs django-db-connection-pool: "
        "pip install 'orca-db[pool]'."
    ) from error

from sqlalchemy import exc as sqlalchemy_errors
from sqlalchemy.pool import QueuePool

from ...aws.credentials import apply_credentials
from ...deadlines import ConnectTimeout
from ...retry import remaining_time
from ..aurora.features import DatabaseFeatures
from ..mixins import AuroraRetryMixin

#: Defaults for ``POOL_OPTIONS`` (the user's keys win).
POOL_DEFAULTS = {
    "PRE_PING": True,
    # Aurora Serverless may move or end a connection at any scale point; a
    # short life bounds how long a stale one can sit in the pool.
    "RECYCLE": 300,
}
#: libpq's connect_timeout for the pool's connections. The pool's connect
#: function is fixed when the pool is made, so it cannot follow the
#: remaining deadline of each operation as the plain engine does.
CONNECT_TIMEOUT = 10


#: Seconds the pool may wait for a free connection in this context, or None.
_pool_wait: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "orca_db_pool_wait", default=None
)


class _BoundedQueuePool(QueuePool):
    """SQLAlchemy's QueuePool whose wait for a free connection ends by the
    operation's deadline (or the Lambda cap) when that comes first. The
    pool reads its timeout only where it waits."""

    @property  # type: ignore[override]
    def _timeout(self) -> float:
        own = self.__dict__["_timeout"]
        wait = _pool_wait.get()
        return own if wait is None else min(own, wait)

    @_timeout.setter
    def _timeout(self, value: float) -> None:
        self.__dict__["_timeout"] = value


class DatabaseWrapper(AuroraRetryMixin, PGDatabaseWrapperMixin, postgresql.DatabaseWrapper):
    features_class = DatabaseFeatures

    def __init__(self, settings_dict: dict[str, Any], alias: str = DEFAULT_DB_ALIAS):
        settings_dict["POOL_OPTIONS"] = {**POOL_DEFAULTS, **settings_dict.get("POOL_OPTIONS", {})}
        super().__init__(settings_dict, alias)

    def get_new_connection(self, conn_params: dict[str, Any]):
        conn_params = {"connect_timeout": CONNECT_TIMEOUT, **conn_params}
        remaining = remaining_time()
        if remaining is None:
            return super().get_new_connection(conn_params)
        # The pool (made by django-db-connection-pool on first use: a new
        # pool has free slots) waits for a free connection no longer than
        # the deadline allows.
        from dj_db_conn_pool.core import pool_container

        pool = pool_container.get(self.alias) if pool_container.has(self.alias) else None
        if type(pool) is QueuePool:
            pool.__class__ = _BoundedQueuePool
        token = _pool_wait.set(max(remaining, 0.0))
        try:
            return super().get_new_connection(conn_params)
        except sqlalchemy_errors.TimeoutError:
            if pool is not None and remaining < pool.__dict__.get("_timeout", 0):
                raise ConnectTimeout() from None
            raise
        finally:
            _pool_wait.reset(token)

    def _get_new_connection(self, conn_params: dict[str, Any]):
        # The pool's creator: it was handed the parameters of the moment the
        # pool was made; logins from AWS (secret, IAM token) are read now.
        return super()._get_new_connection(apply_credentials(self, conn_params))

    def _close_broken_connection(self, connection) -> None:
        # A pooled connection's close() only checks it back in; invalidate()
        # closes the driver connection and makes its pool slot reconnect.
        invalidate = getattr(connection, "invalidate", None)
        if invalidate is None:
            super()._close_broken_connection(connection)
        else:
            invalidate()
