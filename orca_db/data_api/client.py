"""The boto3 ``rds-data`` client, made once per process and configuration.

boto3 is imported here, on the first call, never when Django loads the
engine: it costs a Lambda cold start 100-200 ms (benchmarks/data_api.py).

Two settings matter for correctness, not speed:

- botocore's own retries are off (``total_max_attempts=1``). botocore
  retries a call whose reply was lost (``ConnectionClosedError``,
  ``ReadTimeoutError``) as if it had never run: for a write that is a
  second write, for a ``CommitTransaction`` a second answer about the first.
  Every retry is decided by orca-db, knowing what the call was.
- The read timeout is above the Data API's own 45 s per call, so a call the
  service would still answer is not abandoned with its outcome unknown.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Final

#: Above the Data API's 45 s per call (its StatementTimeoutException).
READ_TIMEOUT: Final = 50.0
CONNECT_TIMEOUT: Final = 5.0
#: HTTPS connections kept per client: Django opens one wrapper per thread,
#: and they all share the process's client.
MAX_POOL_CONNECTIONS: Final = 50

_ARN: Final = re.compile(r"^arn:aws[a-z-]*:rds:([a-z0-9-]+):\d{12}:cluster:[A-Za-z0-9-]+$")

_clients: dict[tuple, Any] = {}
_lock = threading.Lock()


def region_of(cluster_arn: str) -> str | None:
    """The region a cluster ARN names (``arn:aws:rds:us-east-1:...``)."""
    match = _ARN.match(cluster_arn)
    return match.group(1) if match else None


def rds_data_client(
    region: str | None,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
) -> Any:
    """A shared ``rds-data`` client. The endpoint comes from boto3's usual
    configuration (``AWS_ENDPOINT_URL_RDS_DATA`` points it at a local
    endpoint), read when the client is made: it is part of the cache key,
    so a changed variable gives a new client."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_RDS_DATA") or os.environ.get("AWS_ENDPOINT_URL")
    key = (region, endpoint, connect_timeout, read_timeout, os.getpid())
    client = _clients.get(key)
    if client is not None:
        return client
    with _lock:  # boto3 sessions are not thread-safe while making clients
        client = _clients.get(key)
        if client is None:
            client = _make(region, endpoint, connect_timeout, read_timeout)
            _clients[key] = client
    return client


def _make(region: str | None, endpoint: str | None, connect: float, read: float) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=connect,
        read_timeout=read,
        max_pool_connections=MAX_POOL_CONNECTIONS,
        tcp_keepalive=True,
    )
    session = boto3.session.Session()
    kwargs: dict[str, Any] = {"config": config}
    if region:
        kwargs["region_name"] = region
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    return session.client("rds-data", **kwargs)


def clear() -> None:
    """Forget every client (tests that change credentials or endpoints)."""
    with _lock:
        _clients.clear()
