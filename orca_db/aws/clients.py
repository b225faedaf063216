"""boto3, imported on first use: the optional extra ``orca-db[aws]``.

Clients follow the standard AWS configuration: the credentials chain,
``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` and the
per-service ``AWS_ENDPOINT_URL_<SERVICE>`` variables (how tests point them at
a local AWS).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ..outcomes import CORE_ERRORS, ConfigurationError, ErrorTable

EXTRA = "orca-db[aws]"

# boto3's default session is not safe to build clients from in several
# threads at once; each region gets a session of its own, built once.
_sessions: dict[str | None, Any] = {}
_clients: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def import_boto3(errors: ErrorTable = CORE_ERRORS) -> Any:
    try:
        import boto3
    except ImportError as error:
        raise errors.of(ConfigurationError)(
            "OPTIONS['aurora'] sets 'secret', 'iam_auth' or 'cluster', which need "
            f"boto3: pip install '{EXTRA}'."
        ) from error
    return boto3


def region_from_arn(arn: str | None) -> str | None:
    """The region of an ARN (``arn:aws:secretsmanager:REGION:...``)."""
    if arn and arn.startswith("arn:"):
        parts = arn.split(":")
        if len(parts) > 3 and parts[3]:
            return parts[3]
    return None


def resolve_region(region: str | None, errors: ErrorTable = CORE_ERRORS) -> str:
    """``region``, else ``AWS_REGION`` (botocore itself reads only
    ``AWS_DEFAULT_REGION``; Lambda sets both), else boto3's configuration.
    Neither: the host's ``ConfigurationError`` (``errors``, its table)."""
    if region:
        return region
    if os.environ.get("AWS_REGION"):
        return os.environ["AWS_REGION"]
    boto3 = import_boto3(errors)
    with _lock:
        session = _sessions.get(None) or _sessions.setdefault(None, boto3.session.Session())
    if session.region_name:
        return session.region_name
    raise errors.of(ConfigurationError)(
        "No AWS region: set OPTIONS['aurora']['region'] or the AWS_REGION environment variable."
    )


def client(service: str, region: str | None = None, errors: ErrorTable = CORE_ERRORS) -> Any:
    """A boto3 client for ``service`` in ``region`` (resolved as above),
    made once per process and shared (boto3 clients are thread-safe)."""
    region = resolve_region(region, errors)
    key = (service, region)
    found = _clients.get(key)
    if found is not None:
        return found
    boto3 = import_boto3(errors)
    with _lock:
        if key not in _clients:
            session = _sessions.get(region) or _sessions.setdefault(
                region, boto3.session.Session(region_name=region)
            )
            _clients[key] = session.client(service, region_name=region, config=_config())
        return _clients[key]


def _config() -> Any:
    from botocore.config import Config

    # botocore waits 60 s to connect and 60 s to read by default, with
    # retries: far longer than a connect or a command should hang on AWS.
    return Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3})


def clear_clients() -> None:
    """Forget every client (after the AWS environment changed, in tests)."""
    with _lock:
        _clients.clear()
        _sessions.clear()


def error_text(error: BaseException) -> str:
    """A botocore error as ``Code: message`` (AWS error messages name the
    resource, never a secret's value)."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        detail = response.get("Error") or {}
        return f"{detail.get('Code', type(error).__name__)}: {detail.get('Message', '')}".strip()
    return f"{type(error).__name__}: {error}"
