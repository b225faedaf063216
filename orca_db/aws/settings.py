"""The AWS keys of ``OPTIONS["aurora"]``: ``secret``, ``iam_auth``,
``region`` and ``cluster`` (docs/aws.md).

Parsed by :func:`orca_db.options.parse_retry_settings`, the one entry point
for the ``aurora`` options: bad values fail naming the key (the host's
``ConfigurationError``), and system check ``orca_db.E001`` reports them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..outcomes import ConfigurationError

#: The keys of ``OPTIONS["aurora"]`` this package reads.
AWS_KEYS = frozenset({"secret", "iam_auth", "region", "cluster"})


@dataclasses.dataclass(frozen=True)
class AwsSettings:
    #: Name or ARN of a Secrets Manager secret in the RDS format (``username``,
    #: ``password`` and optionally ``host``, ``port``, ``dbname``).
    secret: str | None = None
    #: Log in with an IAM database authentication token as the password.
    iam_auth: bool = False
    #: AWS region of the secret, the token and the cluster; default: the
    #: secret's ARN, then ``AWS_REGION``, then boto3's configuration.
    region: str | None = None
    #: DB cluster identifier, for ``aurora_status`` and ``aurora_wake``.
    cluster: str | None = None

    @property
    def credentials(self) -> bool:
        """Whether the login comes from AWS (secret or IAM token)."""
        return self.secret is not None or self.iam_auth


def _text(
    options: Mapping[str, Any], name: str, error: type[ConfigurationError], where: str
) -> str | None:
    value = options.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise error(f"{where}[{name!r}] must be a non-empty string, got {value!r}.")
    return value.strip()


def parse_aws_settings(
    options: Mapping[str, Any],
    error: type[ConfigurationError] = ConfigurationError,
    where: str = "OPTIONS['aurora']",
) -> AwsSettings | None:
    """The AWS part of a validated-as-a-dict ``OPTIONS["aurora"]``; ``None``
    when it sets none of the AWS keys (the usual case: nothing to do)."""
    if not AWS_KEYS.intersection(options):
        return None
    iam_auth = options.get("iam_auth", False)
    if not isinstance(iam_auth, bool):
        raise error(f"{where}['iam_auth'] must be True or False, got {iam_auth!r}.")
    return AwsSettings(
        secret=_text(options, "secret", error, where),
        iam_auth=iam_auth,
        region=_text(options, "region", error, where),
        cluster=_text(options, "cluster", error, where),
    )
