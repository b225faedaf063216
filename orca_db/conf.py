"""Django's per-database retry settings: ``DATABASES[alias]["OPTIONS"]["aurora"]``.

A Django host module (docs/architecture.md): the keys are validated by the
core (:mod:`orca_db.options`) into this host's :class:`RetrySettings`, whose
error table (``orca_db.exceptions.DJANGO_ERRORS``) makes the core raise
Django's errors: a bad value raises ``ImproperlyConfigured`` naming the key.

Read through :func:`retry_settings` at call time (never at import), cached per
alias and cleared when ``DATABASES`` changes, so ``override_settings`` works.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.core.signals import setting_changed
from django.dispatch import receiver

from . import options
from .exceptions import DJANGO_ERRORS
from .options import DATA_API_KEYS, OPTIONS_KEY
from .outcomes import ErrorTable

__all__ = [
    "DATA_API_KEYS",
    "OPTIONS_KEY",
    "RetrySettings",
    "clear_cache",
    "parse_retry_settings",
    "retry_settings",
]


class RetrySettings(options.RetrySettings):
    """:class:`orca_db.options.RetrySettings` of the Django host: the core
    raises Django's errors (``orca_db.exceptions``) for it."""

    errors: ClassVar[ErrorTable] = DJANGO_ERRORS


def parse_retry_settings(value: Any) -> RetrySettings:
    """Validate an ``OPTIONS["aurora"]`` value; raise ``ImproperlyConfigured``
    naming the offending key."""
    return options.parse_retry_settings(value, RetrySettings)


# Bumped whenever DATABASES changes; each connection keeps the settings it
# parsed together with the generation they belong to.
_generation = 0


def retry_settings(connection: Any) -> RetrySettings:
    """The retry settings of ``connection`` (a ``DatabaseWrapper``), as
    configured now. Parsed once per connection and settings generation."""
    cached = connection.__dict__.get("_orca_db_retry_settings")
    if cached is not None and cached[0] == _generation:
        return cached[1]
    settings_options = connection.settings_dict.get("OPTIONS") or {}
    value = parse_retry_settings(settings_options.get(OPTIONS_KEY))
    connection._orca_db_retry_settings = (_generation, value)
    return value


@receiver(setting_changed)
def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == "DATABASES":
        clear_cache()


def clear_cache() -> None:
    """Forget parsed settings, e.g. after editing ``connection.settings_dict``
    in a test."""
    global _generation
    _generation += 1
