"""A local RDS Data API endpoint in front of a real PostgreSQL, for tests
and demos of Data API code on one machine (docs/data-api.md)::

    endpoint = DataApiEndpoint("127.0.0.1", 5432, "postgres", "secret").start()
    os.environ.update(endpoint.environ())     # boto3's rds-data client goes there
    DATABASES["default"] = endpoint.django_settings("orca")
    endpoint.pause(calls=3)       # DatabaseResumingException for 3 calls
    endpoint.scale_event()        # open transactions rolled back and gone
    endpoint.lose_replies(1)      # the next call runs, its answer never comes
    endpoint.stop()

The ``data_api_endpoint`` pytest fixture starts one in front of the server
of Django's ``default`` database.
"""

from .backend import Limits
from .endpoint import (
    DEFAULT_CLUSTER_ARN,
    DEFAULT_SECRET_ARN,
    ENGINE,
    STAT_NAMES,
    DataApiEndpoint,
)

__all__ = [
    "DEFAULT_CLUSTER_ARN",
    "DEFAULT_SECRET_ARN",
    "ENGINE",
    "STAT_NAMES",
    "DataApiEndpoint",
    "Limits",
]
