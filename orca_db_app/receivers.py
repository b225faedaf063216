"""Receivers of ``orca_db.signals.retry_event``: store each settled event as
a :class:`~orca_db_app.models.RetryEvent` row.

Storing must never hurt the application, so the row is written:

- on a connection of its own, made for this one write and closed right after
  (no connection lingers in a Lambda sandbox between invocations). The
  application's connection is unusable for it: the receiver runs while that
  connection is being recovered, possibly inside a transaction that was just
  rolled back; a row written there would vanish with the transaction, and
  using it would recurse into the operation being settled. Deferring to
  ``transaction.on_commit`` is no better: an event from a rolled-back
  transaction would never be written;
- with the retry layer switched off on that connection and a 2 s connect
  timeout: an event about an unreachable database fails to be stored quickly,
  once, instead of retrying for a minute (and sending events of its own);
- logged on ``orca_db.events`` when it fails, never raised.
"""

from __future__ import annotations

import contextvars
import copy
import logging
from typing import Any

from django.db import connections
from django.db.models import sql
from django.dispatch import receiver

from orca_db.backends.mixins import AuroraRetryMixin
from orca_db.conf import OPTIONS_KEY, retry_settings
from orca_db.events import RetryEvent as Event
from orca_db.signals import retry_event
from orca_db.statements import scrub_message

from .conf import EVENTS_CONNECT_TIMEOUT, events_database
from .models import RetryEvent

logger = logging.getLogger("orca_db.events")

#: Set while an event is being stored in this context: whatever happens on
#: the events connection must not be stored in turn.
_storing: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "orca_db_storing_event", default=False
)

#: The Data API engine retries as the mixin does, without being one.
DATA_API_ENGINE = "orca_db.backends.aurora_data_api"
#: Suffix of the alias of the connection that writes events.
ALIAS_SUFFIX = "__orca_events"


@receiver(retry_event, dispatch_uid="orca_db_app.receivers.store_retry_event")
def store_retry_event(sender: Any, event: Event, **kwargs: Any) -> None:
    if _storing.get():
        return
    token = _storing.set(True)
    try:
        store(event)
    except Exception as error:
        logger.warning(
            "could not store the retry event of database %r: %s: %s",
            event.database,
            type(error).__name__,
            scrub_message(str(error)),
            extra={
                "orca_db": {
                    "kind": "store_failed",
                    "database": event.database,
                    "error_type": type(error).__name__,
                }
            },
        )
    finally:
        _storing.reset(token)


def store(event: Event) -> bool:
    """Write ``event`` unless its database does not record events; return
    whether a row was written. Raises what the write raised."""
    known = event.database in connections.settings
    if known and not retry_settings(connections[event.database]).record_events:
        return False
    alias = events_database(event.database if known else None)
    if alias is None:
        # A DatabaseWrapper made outside DATABASES: nowhere obvious to store.
        logger.debug("retry event of unconfigured database %r not stored", event.database)
        return False
    wrapper = events_connection(alias)
    try:
        query = sql.InsertQuery(RetryEvent)
        fields = [f for f in RetryEvent._meta.concrete_fields if not f.primary_key]
        query.insert_values(fields, [RetryEvent.from_event(event)])
        query.get_compiler(connection=wrapper).execute_sql()
    finally:
        wrapper.close()
    return True


def events_connection(alias: str):
    """A new, unconnected ``DatabaseWrapper`` on ``alias``'s database for
    writing events: no retries, short connect timeout, no pool, no reuse."""
    source = connections[alias]
    settings_dict = copy.deepcopy(source.settings_dict)
    options = settings_dict.setdefault("OPTIONS", {})
    # A pool would keep the connection (and its own threads) alive.
    options.pop("pool", None)
    if (
        isinstance(source, AuroraRetryMixin)
        or source.settings_dict.get("ENGINE") == DATA_API_ENGINE
    ):
        options[OPTIONS_KEY] = {**(options.get(OPTIONS_KEY) or {}), "enabled": False}
    if source.vendor == "postgresql":
        options["connect_timeout"] = EVENTS_CONNECT_TIMEOUT
    settings_dict["CONN_MAX_AGE"] = 0
    settings_dict["CONN_HEALTH_CHECKS"] = False
    return _unpooled(type(source))(settings_dict, alias + ALIAS_SUFFIX)


def _unpooled(wrapper_class: type) -> type:
    """The backend class to write events with: ``wrapper_class`` itself (a
    subclass may add what connecting needs, IAM tokens say), unless it pools
    connections per alias the way django-db-connection-pool does (its
    ``close()`` only returns the connection to a pool that outlives the
    write); then the plain aurora engine."""
    if any(base.__module__.startswith("dj_db_conn_pool.") for base in wrapper_class.__mro__):
        from orca_db.backends.aurora.base import DatabaseWrapper

        return DatabaseWrapper
    return wrapper_class
