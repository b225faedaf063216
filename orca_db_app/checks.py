"""System checks, ids ``orca_db.E###`` / ``orca_db.W###`` (docs/checks.md)."""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

# ----- retry events (docs/events.md), orca_db.W020-W029 -----------------------


@checks.register()
def check_event_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    from .conf import event_retention_days, events_database

    messages = []
    for check_id, read, hint in (
        (
            "orca_db.W020",
            events_database,
            "Set ORCA_DB_EVENTS_DATABASE to an alias of DATABASES, or remove it to store "
            "each event in its own database. See docs/events.md#where-events-are-stored.",
        ),
        (
            "orca_db.W021",
            event_retention_days,
            "Set ORCA_DB_EVENT_RETENTION_DAYS to a number of days, or remove it. "
            "See docs/events.md#retention.",
        ),
    ):
        try:
            read()
        except ImproperlyConfigured as error:
            messages.append(checks.Warning(str(error), hint=hint, id=check_id))
    return messages
