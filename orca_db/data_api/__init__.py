"""A small DB-API 2.0 driver for PostgreSQL over the Amazon RDS Data API.

    conn = orca_db.data_api.connect(
        database="orca",
        resource_arn="arn:aws:rds:us-east-1:123456789012:cluster:orca",
        secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:orca-AbCdEf",
    )
    with conn.cursor() as cursor:
        cursor.execute("SELECT name FROM t WHERE id = %s", [7])

Django's ``%s``/``%(name)s`` placeholders become typed Data API parameters,
results come back as psycopg gives them to Django (docs/data-api.md).
boto3 is imported with the first call, not with this module.
"""

from __future__ import annotations

import datetime
from typing import Any

# Its rules registered with orca_db.classify before any of its errors can
# be raised: every import of a module of this package runs this first.
from . import classify as _classify  # noqa: F401
from .call import Call
from .connection import Connection
from .cursor import Cursor
from .errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
)

__all__ = [
    "Call",
    "Connection",
    "Cursor",
    "DataError",
    "DatabaseError",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "Warning",
    "connect",
]

apilevel = "2.0"
#: Threads may share the module, not connections (as with psycopg2's
#: connections in practice under Django: one per thread).
threadsafety = 1
paramstyle = "format"

Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = bytes


def connect(**kwargs: Any) -> Connection:
    """A :class:`Connection` (no network call is made): ``database``,
    ``resource_arn``, ``secret_arn``, optionally ``schema``,
    ``isolation_level``, ``continue_after_timeout``, ``client``,
    ``connect_timeout``."""
    return Connection(**kwargs)
