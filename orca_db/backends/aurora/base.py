"""``ENGINE: "orca_db.backends.aurora"``: Django's PostgreSQL backend with
retries through Aurora Serverless scale events, pauses and restarts.

``vendor`` and ``display_name`` stay PostgreSQL's (inherited):
``as_postgresql()`` and ``django.contrib.postgres`` keep working, and
Django's messages name the database product as they do on the stock
backend ("PostgreSQL 14 or later is required").
"""

from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.backends.postgresql import base as postgresql

from ...aws.credentials import use_current_credentials
from ..mixins import AuroraRetryMixin
from .features import DatabaseFeatures


class DatabaseWrapper(AuroraRetryMixin, postgresql.DatabaseWrapper):
    features_class = DatabaseFeatures

    def __init__(self, settings_dict: dict[str, Any], alias: str = DEFAULT_DB_ALIAS):
        if settings_dict.get("OPTIONS", {}).get("pool") and not settings_dict.get(
            "CONN_HEALTH_CHECKS"
        ):
            # After a scale event every idle connection in psycopg's pool is
            # dead. With health checks on, Django has the pool test each
            # connection before handing it out (and only then: a pooled
            # connection skips Django's own per-request check). A copy: the
            # application's DATABASES entry stays as it wrote it.
            settings_dict = {**settings_dict, "CONN_HEALTH_CHECKS": True}
        super().__init__(settings_dict, alias)

    def get_new_connection(self, conn_params: dict[str, Any]):
        if self.settings_dict["OPTIONS"].get("pool"):
            # Django fixes the pool's connection parameters when it makes it;
            # logins from AWS (secret, IAM token) must be read per connection.
            # (Here, before Django opens the pool and checks a connection
            # out, not in the pool property, which Django reads per cursor.)
            use_current_credentials(self, self.pool)
        return super().get_new_connection(conn_params)
