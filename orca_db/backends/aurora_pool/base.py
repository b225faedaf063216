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

from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.backends.postgresql import base as postgresql

try:
    from dj_db_conn_pool.backends.postgresql.mixins import PGDatabaseWrapperMixin
    from dj_db_conn_pool.core import pool_container
except ImportError as error:  # pragma: no cover - depends on the install
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "The orca_db.backends.aurora_pool engine needs django-db-connection-pool: "
        "pip install 'orca-db[pool]'."
    ) from error

from ...aws.credentials import apply_credentials
from ...pool_waits import pool_wait_bounded
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
        pool = pool_container.get(self.alias) if pool_container.has(self.alias) else None
        with pool_wait_bounded(pool, remaining, attribute="_timeout"):
            return super().get_new_connection(conn_params)

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
