"""``ENGINE: "orca_db.backends.aurora"``: Django's PostgreSQL backend with
retries through Aurora Serverless scale events, pauses and restarts.

``vendor`` stays ``"postgresql"`` (inherited) so ``as_postgresql()`` and
``django.contrib.postgres`` keep working.
"""

from django.db.backends.postgresql import base as postgresql

from ..mixins import AuroraRetryMixin


class DatabaseWrapper(AuroraRetryMixin, postgresql.DatabaseWrapper):
    display_name = "PostgreSQL (Aurora Serverless, with retries)"
