"""Project settings of ``orca_db_app``, read when used (never at import) so
``override_settings`` works. See docs/events.md."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

#: Seconds the events connection may spend connecting. libpq's minimum: an
#: event about an unreachable database must not hold the application long.
EVENTS_CONNECT_TIMEOUT = 2


def events_database(event_database: str | None = None) -> str | None:
    """The alias that stores events of ``event_database``:
    ``ORCA_DB_EVENTS_DATABASE`` when set, else the event's own database."""
    alias = getattr(settings, "ORCA_DB_EVENTS_DATABASE", None)
    if alias is not None:
        if not isinstance(alias, str) or alias not in connections.settings:
            raise ImproperlyConfigured(
                f"ORCA_DB_EVENTS_DATABASE must name an alias of DATABASES, got {alias!r}."
            )
        return alias
    return event_database


def event_retention_days() -> int | None:
    """``ORCA_DB_EVENT_RETENTION_DAYS``: the default age (days) past which
    ``aurora_prune_events`` deletes events; ``None`` when unset."""
    days = getattr(settings, "ORCA_DB_EVENT_RETENTION_DAYS", None)
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ImproperlyConfigured(
            f"ORCA_DB_EVENT_RETENTION_DAYS must be a non-negative integer, got {days!r}."
        )
    return days
