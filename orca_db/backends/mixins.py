"""The retry layer as mixins, so that it composes with any backend of the
PostgreSQL family::

    from django.contrib.gis.db.backends.postgis import base as postgis

    class DatabaseWrapper(AuroraRetryMixin, postgis.DatabaseWrapper):
        pass

Decisions (what is retryable, what may be replayed) come from
``orca_db.classify`` and ``orca_db.decisions``, retries from
``orca_db.retry``, driver questions from ``orca_db.drivers``; this module
wires them into Django's connection life cycle (connecting, cursors), the
statement path is in ``cursor.py``, and what a lost connection leaves
behind (refusals, the session to restore) in ``lost.py``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .. import connect_notice, drivers
from ..aws.credentials import apply_credentials, connect_with_credentials
from ..classify import driver_error
from ..conf import OPTIONS_KEY, RetrySettings, retry_settings
from ..deadlines import bounded_connect
from ..exceptions import TransactionRolledBack
from ..pool_waits import pool_wait_bounded
from ..retry import Operation, active_operation, remaining_time, run
from ..session import SessionState
from .cursor import RetryingCursorMixin, retrying_class
from .ending import TransactionEndMixin
from .lost import LostConnectionMixin
from .watching import ConnectionWatchMixin

__all__ = ["AuroraRetryMixin", "RetryingCursorMixin"]


class AuroraRetryMixin(LostConnectionMixin, TransactionEndMixin, ConnectionWatchMixin):
    """Connect and execute through scale events, pauses and restarts."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._orca_link: drivers.Link | None = None
        self._orca_refusal = None
        self._orca_session = SessionState()
        self._orca_autocommit_wish: bool | None = None
        self._orca_statement_deadline: float | None = None
        self._orca_connecting = False
        self._orca_enabled = True
        self._orca_cursor_class: type | None = None

    @property
    def retry_settings(self) -> RetrySettings:
        return retry_settings(self)

    # ----- connecting -------------------------------------------------------

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        params.pop(OPTIONS_KEY, None)
        if not str(params.get("host") or "").startswith("/"):
            for key, value in drivers.TCP_DEFAULTS.items():
                params.setdefault(key, value)
        return apply_credentials(self, params)

    def get_new_connection(self, conn_params: dict[str, Any]):
        parent = super().get_new_connection

        remaining = remaining_time()

        def connect(params: dict[str, Any]):
            # A login refused after a rotation is refreshed and retried once.
            if remaining is None or not self.settings_dict["OPTIONS"].get("pool"):
                return connect_with_credentials(self, params, parent)
            # Django's psycopg pool waits for a free connection up to its own
            # timeout (30 s by default): no longer than the deadline allows.
            with pool_wait_bounded(self.pool, remaining):
                return connect_with_credentials(self, params, parent)

        # Bounded by what is left of the operation's deadline (or of the
        # Lambda function's time): an attempt that cannot end in time is not
        # started, and one libpq cannot bound is abandoned at the bound.
        connection = bounded_connect(connect, conn_params, remaining, drivers.close_broken)
        settings = self.retry_settings
        self._orca_statement_deadline = settings.statement_deadline
        if settings.enabled:
            # Django's set-up and the session's restore, about to run on it,
            # end by the same bounds as any call (watching.py).
            operation = active_operation(self.alias)
            self._orca_watch_setup(connection, None if operation is None else operation.deadline_at)
        self._orca_enabled = settings.enabled
        # No link while the connection refuses work: the hot path then takes
        # the slow way, which says so.
        refused = self._orca_refusal is not None
        self._orca_link = drivers.Link(connection) if settings.enabled and not refused else None
        return connection

    def connect(self) -> None:
        # Reading the settings validates them: bad ones fail the first
        # connect with ImproperlyConfigured naming the key, not the first
        # outage. (Not when the wrapper is built: Django 6 builds wrappers
        # while running system checks, and orca_db.E001 reports them better.)
        settings = self.retry_settings
        if not settings.enabled:
            self._orca_enabled = False
            self._orca_link = None
            return super().connect()
        if active_operation(self.alias) is not None:
            # Nested in a statement's retry: that operation retries, within
            # its own deadline, and reports one event.
            return self._connect_once()
        operation = Operation(self.alias, "connect", settings)
        run(operation, self._connect_once, _retry_any_connect_failure)

    def _connect_once(self) -> None:
        self._orca_connecting = True
        where = (self.alias, self.settings_dict.get("HOST"), self.settings_dict.get("PORT"))
        self._orca_dropped = False
        try:
            super().connect()
            self._orca_resume_session()
        except BaseException as error:
            cut = self._orca_setup_ended()
            # A half-made connection (init_connection_state failed) must not
            # linger: the next attempt starts clean.
            self._discard_connection()
            # A wrong HOST or PORT is told at once, not after the deadline.
            connect_notice.failed(*where, error)
            if cut:
                raise self._orca_setup_cut_off() from driver_error(error)
            raise
        else:
            if self._orca_setup_ended():
                self._orca_lose_connection()  # the answer came, the socket is shut
        finally:
            self._orca_connecting = False
        connect_notice.succeeded(*where)

    def _orca_relink(self) -> drivers.Link | None:
        """``self.connection`` was replaced behind the backend's back."""
        try:
            self._orca_link = drivers.Link(self.connection)
        except Exception:
            self._orca_link = None
        return self._orca_link

    def _discard_connection(self) -> None:
        connection, self.connection = self.connection, None
        self._orca_link = None
        if connection is not None:
            with contextlib.suppress(Exception):
                self._close_broken_connection(connection)
        self._orca_disarm()

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            # After the close, which the watch covered too.
            self._orca_disarm()

    def _close_broken_connection(self, connection) -> None:
        drivers.close_broken(connection)

    # ----- what the application does to the connection -----------------------

    def create_cursor(self, name=None):
        if self.closed_in_transaction and self.in_atomic_block:
            # Code that caught TransactionRolledBack inside the block and
            # carried on: the transaction is gone, say so again (Django would
            # report "connection already closed").
            raise TransactionRolledBack(
                f"The transaction on database {self.alias!r} was rolled back when "
                f"its connection was lost; leave the atomic block and run it again."
            )
        try:
            return super().create_cursor(name)
        except Exception as error:
            connection = self.connection
            if not self._orca_enabled or connection is None or not drivers.is_broken(connection):
                raise
            # The connection broke outside a statement of ours (a server-side
            # cursor's fetch, the driver used directly): a transaction may
            # have been open on it (rule 4), and the next statement must not
            # start a fresh one on a new connection.
            lost = self._orca_lose_transaction()
            if active_operation(self.alias) is not None:
                raise  # retry_atomic's judge decides, as for a statement's error
            raise lost from error

    def make_cursor(self, cursor):
        cls = self._orca_cursor_class
        if cls is None:
            cls = self._orca_cursor_class = _retrying(
                type(self), False, type(super().make_cursor(cursor)), type(cursor)
            )
        return cls(cursor, self)

    def make_debug_cursor(self, cursor):
        cls = _RETRYING_CLASSES.get((type(self), True))
        if cls is None:
            cls = _retrying(type(self), True, type(super().make_debug_cursor(cursor)), type(cursor))
        return cls(cursor, self)


def _retry_any_connect_failure(error: BaseException, failure) -> None:
    return None  # a failed connect applied nothing: every retryable one is safe


# (backend class, debug) -> the retrying subclass of the cursor wrapper that
# backend would use; built on first use so any parent backend's own wrapper
# (PostgreSQL's CursorDebugWrapper adds copy methods) is kept.
_RETRYING_CLASSES: dict[tuple[type, bool], type] = {}


def _retrying(backend: type, debug: bool, cursor_class: type, driver_cursor: type) -> type:
    return _RETRYING_CLASSES.setdefault(
        (backend, debug), retrying_class(cursor_class, driver_cursor)
    )
