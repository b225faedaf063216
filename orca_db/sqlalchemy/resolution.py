"""A SQLAlchemy connection as :mod:`orca_db.commit_resolution` reads one,
for :func:`orca_db.sqlalchemy.run_transaction`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection, Engine

from .. import drivers
from ..commit_resolution import LostCommit, transaction_id, transaction_status
from ..retry import Operation
from .data_api_runs import is_data_api

__all__ = ["CoreView", "release", "resolve", "transaction_ids"]

logger = logging.getLogger("orca_db.retry")


def transaction_ids(connection: Connection) -> tuple[str | None, int, str | None]:
    """The open transaction's id (assigned now if need be), its backend's
    pid and the cluster's identity (:func:`orca_db.commit_resolution.
    transaction_id`), read before COMMIT. The identity is read once per
    driver connection, in the same round trip, and kept with its pool record."""
    view = CoreView(connection)
    if is_data_api(connection.engine):
        # Each call of a Data API connection may reach another session (a
        # switchover moves the cluster's ARN): read with the id, every time.
        return transaction_id(view)
    info = connection.connection.info
    view._orca_cluster_identity = info.get(CLUSTER_KEY)
    ids = transaction_id(view)
    info[CLUSTER_KEY] = view._orca_cluster_identity
    return ids


def resolve(engine: Engine, lost: Any, pending: LostCommit, operation: Operation) -> str | None:
    """What became of the transaction whose COMMIT reply was lost on the
    driver connection ``lost``, asked on another connection of ``engine``
    (:func:`orca_db.commit_resolution.transaction_status`), and logged as
    the Django host logs it."""
    view = CoreView(None, engine.connect)
    try:
        status = transaction_status(view, lost, pending, operation)
    finally:
        view.close()
    logger.info(
        "lost COMMIT on database %r resolved: %s",
        operation.alias,
        status or "unknown",
        extra={
            "orca_db": {
                "kind": "commit_resolution",
                "database": operation.alias,
                "status": status or "unknown",
            }
        },
    )
    return status


#: Where a pool record keeps its connection's cluster identity.
CLUSTER_KEY = "orca_db_cluster_identity"


class CoreView:
    """A SQLAlchemy connection as :mod:`orca_db.commit_resolution` reads a
    connection: ``connection`` (the driver's), ``cursor()``,
    ``ensure_connection()``, ``close()``. Its queries go through raw
    cursors: the retry engine of run_transaction judges their failures.

    With an ``opener`` it makes its own connections (to ask what became of
    a lost COMMIT), in autocommit at the driver for the questions only:
    ``pg_stat_activity`` is read afresh each time, and the connection goes
    back to the pool as it came (no isolation level set on it)."""

    def __init__(
        self, connection: Connection | None, opener: Callable[[], Connection] | None = None
    ):
        self._sa = connection
        self._opener = opener
        self._autocommit = False
        self._orca_cluster_identity: Any = None

    @property
    def connection(self) -> Any:
        sa = self._sa
        if sa is None or sa.closed or sa.invalidated:
            return None
        return sa.connection.dbapi_connection

    def ensure_connection(self) -> None:
        if self.connection is None:
            self.close()
            assert self._opener is not None
            self._sa = self._opener()
            driver: Any = self._sa.connection.dbapi_connection
            self._autocommit = driver.autocommit
            driver.autocommit = True

    def cursor(self) -> contextlib.closing:
        return contextlib.closing(self.connection.cursor())

    def close(self) -> None:
        if self._sa is not None and self._opener is not None:
            driver = self.connection
            with contextlib.suppress(Exception):
                if driver is not None and not drivers.is_broken(driver):
                    driver.autocommit = self._autocommit
            release(self._sa)
            self._sa = None


def release(connection: Connection) -> None:
    """Close ``connection``; one whose driver connection broke where
    SQLAlchemy did not see it (a raw cursor's query) is invalidated first,
    never handed to the pool."""
    with contextlib.suppress(Exception):
        if not connection.closed and not connection.invalidated:
            driver = connection.connection.dbapi_connection
            if driver is None or drivers.is_broken(driver):
                connection.invalidate()
    with contextlib.suppress(Exception):
        connection.close()
