"""Receivers of ``orca_db.signals.retry_event``: store each settled event as
a :class:`~orca_db_app.models.RetryEvent` row.

Storing must never hurt the application, so the row is written:

- on a connection of its own, made for the write and closed right after
  (no connection lingers in a Lambda sandbox between invocations). The
  application's connection is unusable for it: the receiver runs while that
  connection is being recovered, possibly inside a transaction that was just
  rolled back; a row written there would vanish with the transaction, and
  using it would recurse into the operation being settled. Deferring to
  ``transaction.on_commit`` is no better: an event from a rolled-back
  transaction would never be written;
- with one attempt (no retries), a 2 s connect timeout and a statement
  deadline, all within ``STORE_TIME`` seconds (connect, insert, close) and
  within what is left of the Lambda function's time;
- never into a database that did not come back within an operation's
  deadline, until a connection to it has been made again (by the
  application: Django's ``connection_created``), and never with the
  operation's time spent: such an event is **deferred**, kept in memory and
  written by the next store that works, at the end of the request or Lambda
  invocation when time allows, or by :func:`flush_deferred_events`. A
  paused cluster is not woken (nor waited on) to record that it was paused;
- at the end of a request or invocation, within ``END_STORE_TIME``
  seconds in all (connect, insert, close), under a deadline cap.

Every event is logged as a JSON-ready line by ``orca_db.events.deliver``
before it gets here, so a deferred event that the process never writes (it
ended first, or more than ``MAX_DEFERRED`` piled up) is still in the logs;
dropping one is logged too. Failures to store are logged on
``orca_db.events``, never raised.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import copy
import logging
import threading
from typing import Any

from django.core.signals import request_finished
from django.db import connections
from django.db.backends.signals import connection_created
from django.db.models import sql
from django.dispatch import receiver

from orca_db.backends.mixins import AuroraRetryMixin
from orca_db.conf import OPTIONS_KEY, retry_settings
from orca_db.deadlines import deadline_cap
from orca_db.events import SettledEvent
from orca_db.retry import remaining_time
from orca_db.signals import invocation_finished, retry_event
from orca_db.sql import scrub_message

from .conf import EVENTS_CONNECT_TIMEOUT, events_database
from .models import RetryEvent

logger = logging.getLogger("orca_db.events")

#: Set while events are being stored in this context: whatever happens on
#: the events connection must not be stored in turn.
_storing: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "orca_db_storing_event", default=False
)

#: The Data API engine retries as the mixin does, without being one.
DATA_API_ENGINE = "orca_db.backends.aurora_data_api"
#: Suffix of the alias of the connection that writes events.
ALIAS_SUFFIX = "__orca_events"
#: Deferred events kept at most; older ones are dropped (and logged).
MAX_DEFERRED = 1000
#: Seconds of the operation's time a store needs to be attempted at all.
MIN_STORE_TIME = 1.0
#: Seconds a statement on the events connection may run.
EVENTS_STATEMENT_DEADLINE = 5.0
#: Seconds the end of a request or invocation may spend storing deferred
#: events, all included (within what is left of the invocation, in Lambda).
END_STORE_TIME = 3.0
#: Seconds one store (connect, insert, close) may take.
STORE_TIME = 3.0

_deferred: collections.deque[tuple[str, SettledEvent]] = collections.deque()
_deferred_lock = threading.Lock()
#: Databases (host, port, name) that did not come back within an
#: operation's deadline, and were not connected to since.
_away: set[tuple[Any, ...]] = set()


@receiver(retry_event, dispatch_uid="orca_db_app.receivers.store_retry_event")
def store_retry_event(sender: Any, event: SettledEvent, **kwargs: Any) -> None:
    if _storing.get():
        return
    try:
        target = _target(event)
        if target is None:
            return
        reason = _reason_to_defer(event, target)
        if reason is not None:
            _defer(target, event, reason)
            return
        _store(target, [event])
    except Exception as error:
        _log_failure(event.database, error)


@receiver(request_finished, dispatch_uid="orca_db_app.receivers.flush_after_request")
def _flush_after_request(**kwargs: Any) -> None:
    if _deferred:
        with deadline_cap(END_STORE_TIME, hold_open=False):
            flush_deferred_events()


@receiver(invocation_finished, dispatch_uid="orca_db_app.receivers.flush_after_invocation")
def _flush_after_invocation(**kwargs: Any) -> None:
    if _deferred:
        with deadline_cap(END_STORE_TIME, hold_open=False):
            flush_deferred_events()


@receiver(connection_created, dispatch_uid="orca_db_app.receivers.database_is_back")
def _database_is_back(sender: Any, connection: Any, **kwargs: Any) -> None:
    if _away:
        _away.discard(_where(connection.settings_dict))


def flush_deferred_events() -> int:
    """Write the deferred events whose database answers now, within what is
    left of the operation's time; how many were written. Never raises.
    A database that did not come back within an operation's deadline is
    not connected to until the application has connected to it again."""
    written = 0
    remaining = remaining_time()
    if remaining is not None and remaining < MIN_STORE_TIME:
        return 0
    for target in sorted({target for target, _ in list(_deferred)}):
        if _is_away(target):
            continue
        try:
            written += _store(target, [])
        except Exception as error:
            _log_failure(target, error)
    return written


def deferred_count() -> int:
    return len(_deferred)


def _target(event: SettledEvent) -> str | None:
    """The alias that stores ``event``, or ``None`` when it is not stored."""
    known = event.database in connections.settings
    if known and not retry_settings(connections[event.database]).record_events:
        return None
    alias = events_database(event.database if known else None)
    if alias is None:
        # A DatabaseWrapper made outside DATABASES: nowhere obvious to store.
        logger.debug("retry event of unconfigured database %r not stored", event.database)
    return alias


def _reason_to_defer(event: SettledEvent, target: str) -> str | None:
    if event.outcome == "exhausted" and _same_database(target, event.database):
        _away.add(_where(connections[target].settings_dict))
        return "its database did not come back in time"
    if _is_away(target):
        return "its database has not come back since an operation's deadline"
    remaining = remaining_time()
    if remaining is not None and remaining < MIN_STORE_TIME:
        return "the operation's time is spent"
    return None


def _where(settings_dict: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(str(settings_dict.get(key) or "") for key in ("HOST", "PORT", "NAME"))


def _is_away(alias: str) -> bool:
    return bool(_away) and _where(connections[alias].settings_dict) in _away


def _same_database(alias: str, other: str) -> bool:
    if alias == other:
        return True
    if other not in connections.settings:
        return False
    mine, theirs = connections.settings[alias], connections.settings[other]
    return all(mine.get(key) == theirs.get(key) for key in ("HOST", "PORT", "NAME"))


def _defer(target: str, event: SettledEvent, reason: str) -> None:
    with _deferred_lock:
        dropped = _deferred.popleft() if len(_deferred) >= MAX_DEFERRED else None
        _deferred.append((target, event))
    logger.info(
        "retry event of database %r deferred: %s",
        event.database,
        reason,
        extra={"orca_db": {"kind": "event_deferred", "database": event.database}},
    )
    if dropped is not None:
        logger.warning(
            "deferred retry event of database %r dropped: more than %d waiting",
            dropped[1].database,
            MAX_DEFERRED,
            extra={"orca_db": {"kind": "event_dropped", "database": dropped[1].database}},
        )


def _take_deferred(target: str) -> list[SettledEvent]:
    with _deferred_lock:
        taken = [event for alias, event in _deferred if alias == target]
        kept = [(alias, event) for alias, event in _deferred if alias != target]
        _deferred.clear()
        _deferred.extend(kept)
    return taken


def _store(target: str, events: list[SettledEvent]) -> int:
    """Write the deferred events of ``target`` and ``events`` in one
    connection; put them back (deferred) if that fails."""
    batch = _take_deferred(target) + events
    if not batch:
        return 0
    token = _storing.set(True)
    wrapper = events_connection(target)
    try:
        # Connect, insert and close within STORE_TIME (and what is left of
        # any cap around), on a silent network too.
        with deadline_cap(STORE_TIME, hold_open=False):
            try:
                query = sql.InsertQuery(RetryEvent)
                fields = [f for f in RetryEvent._meta.concrete_fields if not f.primary_key]
                query.insert_values(fields, [RetryEvent.from_event(event) for event in batch])
                query.get_compiler(connection=wrapper).execute_sql()
            finally:
                # Written is written: a failing close must not defer (and
                # later write again) what the insert stored.
                with contextlib.suppress(Exception):
                    wrapper.close()
    except BaseException:
        with _deferred_lock:
            _deferred.extendleft((target, event) for event in reversed(batch))
            while len(_deferred) > MAX_DEFERRED:
                _deferred.pop()
        raise
    finally:
        _storing.reset(token)
    return len(batch)


def _log_failure(database: str, error: BaseException) -> None:
    logger.warning(
        "could not store the retry event of database %r: %s: %s",
        database,
        type(error).__name__,
        scrub_message(str(error)),
        extra={
            "orca_db": {
                "kind": "store_failed",
                "database": database,
                "error_type": type(error).__name__,
            }
        },
    )


def events_connection(alias: str):
    """A new, unconnected ``DatabaseWrapper`` on ``alias``'s database for
    writing events: one attempt, short connect timeout and statement
    deadline, no pool, no reuse."""
    source = connections[alias]
    settings_dict = copy.deepcopy(source.settings_dict)
    options = settings_dict.setdefault("OPTIONS", {})
    # A pool would keep the connection (and its own threads) alive.
    options.pop("pool", None)
    if (
        isinstance(source, AuroraRetryMixin)
        or source.settings_dict.get("ENGINE") == DATA_API_ENGINE
    ):
        options[OPTIONS_KEY] = {
            **(options.get(OPTIONS_KEY) or {}),
            "max_attempts": 1,
            "record_events": False,
            "statement_deadline": EVENTS_STATEMENT_DEADLINE,
        }
    # A Data API database keeps the application's own connect_timeout: one
    # of the events' would key a second boto3 client, whose making and first
    # call took most of a store's time (0.7 s of 0.75 on a loaded 2-core
    # machine; more on a small Lambda). Sharing the application's client,
    # the call is bounded by STORE_TIME's cap as before.
    if source.vendor == "postgresql" and source.settings_dict.get("ENGINE") != DATA_API_ENGINE:
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
