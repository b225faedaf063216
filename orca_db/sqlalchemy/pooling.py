"""No pooled connection is handed out after the server closed it (a scale
event, ``pg_terminate_backend``, an idle timeout while it sat in the pool):
it is replaced before anyone sends on it, so nothing is lost and the
application sees no error.

The check is one ``poll`` of the socket: nothing to read (the common case)
means open. It runs where a connection leaves the pool:

- for ``QueuePool`` (what ``create_engine`` picks for PostgreSQL), in the
  pool itself: the plugin asks ``create_engine`` for
  :class:`CheckedQueuePool`, whose ``_do_get`` checks the entry it takes
  from the queue and invalidates it when closed, so that SQLAlchemy's own
  checkout connects anew (through the plugin's retried ``connect()``). A
  pool ``checkout`` listener would cost every checkout SQLAlchemy's event
  dispatch and its reconnect loop, several times the check itself;
- for ``NullPool``, nowhere: each checkout is a new connection;
- for any other pool (``pool=``, a pool class of the application's), in a
  pool ``checkout`` listener, SQLAlchemy's public hook.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool, Pool, QueuePool

from .. import drivers

#: Where a pool entry keeps its driver connection's Link (its ``info``).
LINK = "orca_db_link"


def closed_while_pooled(dbapi_connection: Any, info: dict) -> bool:
    """True when the server has closed ``dbapi_connection`` (idle, its Link
    kept in ``info``, its pool entry's)."""
    link = info.get(LINK)
    if link is None or link.connection is not dbapi_connection:
        try:
            link = info[LINK] = drivers.Link(dbapi_connection)
        except Exception:
            return False  # not a connection the plugin can read: as stock
    # poll() first: a socket with nothing to read is open, and
    # server_closed() would answer False at its first step.
    return bool(link.poll(0) and link.transaction_status() == drivers.IDLE and link.server_closed())


class CheckedQueuePool(QueuePool):
    """``QueuePool``, with each pooled connection checked as it leaves."""

    def _do_get(self) -> Any:
        entry = QueuePool._do_get(self)
        # closed_while_pooled(), its common case inline: the pool's hot path.
        link = entry.info.get(LINK)
        if link is not None and link.connection is entry.dbapi_connection:
            if not link.poll(0):
                return entry  # nothing to read: open
            closed = link.transaction_status() == drivers.IDLE and link.server_closed()
        else:
            closed = entry.dbapi_connection is not None and closed_while_pooled(
                entry.dbapi_connection, entry.info
            )
        if closed:
            # SQLAlchemy's checkout then connects anew, as after a
            # DisconnectionError raised by a checkout listener.
            reason = sa_exc.DisconnectionError("orca_db: closed by the server while pooled")
            entry.invalidate(reason)
        return entry


def _pool_checks_itself() -> bool:
    """Whether this SQLAlchemy's QueuePool takes its entries in ``_do_get``
    (2.0 and 2.1 do); else the plugin listens to checkouts instead."""
    return "_do_get" in vars(QueuePool)


def choose_pool_class(kwargs: dict) -> None:
    """``create_engine``'s arguments, as the plugin receives them: the
    checked ``QueuePool`` where the default (or ``QueuePool`` itself) was
    asked for."""
    if "pool" in kwargs or not _pool_checks_itself():
        return
    if kwargs.get("poolclass", QueuePool) is QueuePool:
        kwargs["poolclass"] = CheckedQueuePool


def checks_itself(pool: Pool) -> bool:
    """Whether ``pool`` needs no checkout listener."""
    return isinstance(pool, (CheckedQueuePool, NullPool))


def checkout_listener(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """The pool ``checkout`` listener, for the pools that do not check."""
    if closed_while_pooled(dbapi_connection, record.info):
        # The pool makes a new connection (through connect()) instead.
        raise sa_exc.DisconnectionError("orca_db: the server had closed this pooled connection")
