"""The ``aurora`` options, validated into one :class:`RetrySettings` value.

The same keys for every host: Django's ``DATABASES[alias]["OPTIONS"]["aurora"]``
(read by ``orca_db.conf``), SQLAlchemy's ``create_engine(...,
aurora={...})`` (``orca_db.sqlalchemy.plugin``). A bad value raises the
host's :class:`~orca_db.outcomes.ConfigurationError`, naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar, overload

from .aws.settings import AWS_KEYS, AwsSettings, parse_aws_settings
from .backoff import Backoff
from .outcomes import CORE_ERRORS, ConfigurationError, ErrorTable

OPTIONS_KEY = "aurora"
#: Keys of the Data API transport, validated by its hosts when they
#: connect (orca_db.data_api.settings).
DATA_API_KEYS = frozenset({"cluster_arn", "secret"})


@dataclasses.dataclass(frozen=True)
class RetrySettings:
    #: The classes the core raises its errors as (orca_db.outcomes): a
    #: host's subclass of RetrySettings names its own table.
    errors: ClassVar[ErrorTable] = CORE_ERRORS

    #: Wall-clock budget (seconds) for one operation, first attempt included.
    #: The default covers a paused cluster resuming (15-40 s) with margin.
    deadline: float = 60.0
    #: Attempts per operation, first included; ``None``: the deadline alone.
    max_attempts: int | None = None
    #: First backoff ceiling (seconds); it doubles per attempt up to
    #: ``backoff_max``. Each sleep is drawn between half the ceiling and the
    #: ceiling (jitter), so a recovered server is found within ``backoff_max``.
    backoff_initial: float = 0.05
    backoff_max: float = 0.1
    #: The ceiling after a server said it is full or starting (53300, 57P03,
    #: a full PgBouncer): waits drawn from 0 to the ceiling, so a fleet of
    #: clients spreads out during a resume storm (orca_db.backoff).
    backoff_storm_max: float = 2.0
    #: Seconds a single statement may run before it is cut off and its
    #: connection closed (``DeadlineExceeded``): the bound on a silent
    #: network. ``None``: no bound but the Lambda function's remaining time.
    statement_deadline: float | None = None
    #: Replay autocommit writes whose outcome is unknown. Only for workloads
    #: whose every write is idempotent: a replayed write may apply twice.
    retry_writes: bool = False
    #: Switch the retry layer off (errors surface as with the stock backend).
    enabled: bool = True
    #: Let receivers of retry events store them for this database
    #: (``orca_db_app`` does when installed).
    record_events: bool = True
    #: Whole-transaction retries run a transaction again after a
    #: serialization failure (40001) or a deadlock (40P01), as they do after
    #: a scale event.
    retry_conflicts: bool = True

    #: The keys ``secret``, ``iam_auth``, ``region``, ``cluster``
    #: (docs/aws.md); ``None`` when none is set.
    aws: AwsSettings | None = None

    def backoff(self) -> Backoff:
        return Backoff(self.backoff_initial, self.backoff_max, self.backoff_storm_max)


_FIELDS = {f.name: f for f in dataclasses.fields(RetrySettings) if f.name != "aws"}

S = TypeVar("S", bound=RetrySettings)


#: How a message names the options: Django's place for them.
DJANGO_WHERE = f"OPTIONS[{OPTIONS_KEY!r}]"


def _check_number(
    error: type[ConfigurationError],
    where: str,
    key: str,
    value: Any,
    *,
    minimum: float,
    integer: bool = False,
) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = "an integer" if integer else "a number"
        raise error(f"{where}[{key!r}] must be {expected}, got {value!r}.")
    if not math.isfinite(value) or value < minimum:
        raise error(f"{where}[{key!r}] must be at least {minimum}, got {value!r}.")


@overload
def parse_retry_settings(options: Any, *, where: str = ...) -> RetrySettings: ...
@overload
def parse_retry_settings(options: Any, settings_class: type[S], *, where: str = ...) -> S: ...


def parse_retry_settings(
    options: Any, settings_class: type[RetrySettings] = RetrySettings, *, where: str = DJANGO_WHERE
) -> Any:
    """Validate an ``aurora`` options value into ``settings_class`` (a
    host's subclass of :class:`RetrySettings`); raise that host's
    :class:`ConfigurationError` naming the offending key as ``where[key]``
    (``where``: how the host's users write the options, e.g. ``aurora`` for
    ``create_engine(..., aurora={...})``)."""
    error = settings_class.errors.of(ConfigurationError)
    if options is None:
        return settings_class()
    if not isinstance(options, Mapping):
        raise error(f"{where} must be a dict, got {type(options).__name__}.")
    unknown = sorted(set(options) - set(_FIELDS) - AWS_KEYS - DATA_API_KEYS)
    if unknown:
        raise error(
            f"Unknown key {where}[{unknown[0]!r}]; "
            f"valid keys: {', '.join(sorted({*_FIELDS, *AWS_KEYS, *DATA_API_KEYS}))}."
        )
    for key in ("deadline", "backoff_initial", "backoff_max", "backoff_storm_max"):
        if key in options:
            _check_number(error, where, key, options[key], minimum=0)
    if options.get("max_attempts") is not None:
        _check_number(
            error, where, "max_attempts", options["max_attempts"], minimum=1, integer=True
        )
    if options.get("statement_deadline") is not None:
        _check_number(
            error, where, "statement_deadline", options["statement_deadline"], minimum=0.001
        )
    for key in ("retry_writes", "enabled", "record_events", "retry_conflicts"):
        if key in options and not isinstance(options[key], bool):
            raise error(f"{where}[{key!r}] must be True or False, got {options[key]!r}.")
    result = settings_class(
        **{key: value for key, value in options.items() if key in _FIELDS},
        aws=parse_aws_settings(options, error, where),
    )
    for key in ("backoff_max", "backoff_storm_max"):
        if getattr(result, key) < result.backoff_initial:
            raise error(
                f"{where}[{key!r}] ({getattr(result, key)}) must "
                f"not be below 'backoff_initial' ({result.backoff_initial})."
            )
    return result
