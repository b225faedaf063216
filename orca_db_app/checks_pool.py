"""System check orca_db.W030: a connection pool inside AWS Lambda.

A Lambda execution environment serves one request at a time and is frozen
between invocations, so a pool in it never shares a connection: it only
keeps idle connections open on the cluster (which stops an Aurora
Serverless v2 cluster from pausing, and multiplies connections by the number
of environments). Lambda functions should use the plain engine and, when
many functions share a cluster, RDS Proxy (docs/pooling.md).
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.checks import Warning, register

from .checks import docs_url

POOL_ENGINE = "orca_db.backends.aurora_pool"


def on_lambda() -> bool:
    # Set by the Lambda runtime in every execution environment.
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def pooling(database: dict[str, Any]) -> str | None:
    """How ``database`` pools its connections, if it does."""
    if database.get("ENGINE") == POOL_ENGINE:
        return f"ENGINE {POOL_ENGINE!r}"
    if (database.get("OPTIONS") or {}).get("pool"):
        return 'OPTIONS["pool"]'
    return None


# Not tagged "database": Django runs those only when asked for databases,
# and this check reads settings only.
@register("orca_db")
def check_pooling_on_lambda(app_configs=None, **kwargs) -> list[Warning]:
    return pooling_warnings(settings.DATABASES)


def pooling_warnings(databases: dict[str, dict[str, Any]]) -> list[Warning]:
    if not on_lambda():
        return []
    warnings = []
    for alias, database in databases.items():
        how = pooling(database)
        if how is None:
            continue
        warnings.append(
            Warning(
                f"Database {alias!r} uses a connection pool ({how}) inside AWS Lambda.",
                hint=(
                    "A Lambda environment runs one request at a time and is frozen "
                    "between requests: its pool only holds idle connections open. Use "
                    "ENGINE 'orca_db.backends.aurora' without a pool, and RDS Proxy when "
                    f"many functions share the cluster. See {docs_url('pooling.md')}."
                ),
                id="orca_db.W030",
            )
        )
    return warnings
