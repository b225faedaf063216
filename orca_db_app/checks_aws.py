"""System checks of the AWS keys (docs/aws.md), ids ``orca_db.E040``-``E049``.

Bad values of ``secret``, ``iam_auth``, ``region`` and ``cluster`` are
``orca_db.E001`` (they are parsed with the other ``OPTIONS["aurora"]`` keys);
these checks look at what is valid alone but wrong together.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from django.core.checks import CheckMessage, Error, register

from .checks import _aurora_databases, _hint, _retry_settings

#: libpq ``sslmode`` values that make a connection use TLS.
SSL_MODES = ("require", "verify-ca", "verify-full")


@register()
def check_aws_options(app_configs=None, databases=None, **kwargs: Any) -> list[CheckMessage]:
    """E040: IAM authentication without TLS; E041: AWS keys without boto3."""
    messages: list[CheckMessage] = []
    for alias, _, options in _aurora_databases(databases):
        retry = _retry_settings(options)
        aws = retry.aws if retry is not None else None
        if aws is None:
            continue
        sslmode = options.get("sslmode")
        if aws.iam_auth and sslmode not in SSL_MODES:
            messages.append(
                Error(
                    f"Database {alias!r} logs in with an IAM token, but OPTIONS['sslmode'] "
                    f"is {sslmode!r}: RDS accepts IAM tokens over TLS only, and a token "
                    f"sent in clear is a password anyone on the path can reuse.",
                    hint=_hint(
                        "orca_db.E040",
                        "Set OPTIONS['sslmode'] to 'require' (or 'verify-full' with the "
                        "RDS CA bundle as 'sslrootcert').",
                    ),
                    id="orca_db.E040",
                )
            )
        if not _boto3_installed():
            messages.append(
                Error(
                    f"Database {alias!r} sets OPTIONS['aurora'] keys that need boto3 "
                    f"(secret, iam_auth or cluster), and boto3 is not installed.",
                    hint=_hint("orca_db.E041", "pip install 'orca-db[aws]'."),
                    id="orca_db.E041",
                )
            )
    return messages


def _boto3_installed() -> bool:
    try:
        return importlib.util.find_spec("boto3") is not None
    except ValueError:  # a module set to None in sys.modules (hidden on purpose)
        return False
