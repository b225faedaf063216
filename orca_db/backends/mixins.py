"""The retry layer as mixins, so that it composes with any backend of the
PostgreSQL family::

    from django.contrib.gis.db.backends.postgis import base as postgis

    class DatabaseWrapper(AuroraRetryMixin, postgis.DatabaseWrapper):
        pass

Every decision (what is retryable, what is safe to replay) is delegated to
``orca_db.classify`` and ``orca_db.retry``; this module only wires them into
Django's connection and cursor life cycle.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.db.utils import Error as DjangoError

from ..aws.credentials import apply_credentials, connect_with_credentials
from ..classify import Failure, classify, driver_error
from ..conf import OPTIONS_KEY, RetrySettings, retry_settings
from ..exceptions import OutcomeUnknown, ScaleEventError, TransactionRolledBack
from ..retry import Operation, active_operation, recover, remaining_time, report, run
from ..statements import is_read_only
from .liveness import server_closed

_COMMIT_WORDS = ("COMMIT", "END", "PREPARE TRANSACTION", "COMMIT PREPARED")
# libpq refuses a connect_timeout below 2 s (it rounds it up).
_MIN_CONNECT_TIMEOUT = 2


class RetryingCursorMixin:
    """Retries ``execute``/``executemany`` after their first failure.

    Sits below Django's execute wrappers, so each retried call is one call
    for them, and above the driver cursor, which it replaces after a
    reconnect: no dead cursor is carried across."""

    def _execute(self, sql, params, *ignored_wrapper_args):
        if self.db.autocommit and not is_read_only(sql):
            self.db._reconnect_if_server_closed(self, sql)
        try:
            return super()._execute(sql, params, *ignored_wrapper_args)
        except DjangoError as error:
            return self.db._recover_statement(self, error, sql, params, super()._execute)

    def _executemany(self, sql, param_list, *ignored_wrapper_args):
        if self.db.autocommit:
            self.db._reconnect_if_server_closed(self, sql)
        try:
            return super()._executemany(sql, param_list, *ignored_wrapper_args)
        except DjangoError as error:
            return self.db._recover_statement(
                self, error, sql, param_list, super()._executemany, many=True
            )


class AuroraRetryMixin:
    """Connect and execute through scale events, pauses and restarts."""

    @property
    def retry_settings(self) -> RetrySettings:
        return retry_settings(self)

    # ----- connecting -------------------------------------------------------

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        params.pop(OPTIONS_KEY, None)
        return apply_credentials(self, params)

    def get_new_connection(self, conn_params: dict[str, Any]):
        if "connect_timeout" not in conn_params:
            # Without a timeout libpq waits on a silent host forever; bound
            # each attempt by what is left of the operation's deadline.
            remaining = remaining_time()
            if remaining is not None:
                conn_params = {
                    **conn_params,
                    "connect_timeout": max(_MIN_CONNECT_TIMEOUT, int(remaining)),
                }
        # A login refused after a rotation is refreshed and retried once here.
        return connect_with_credentials(self, conn_params, super().get_new_connection)

    def connect(self) -> None:
        # Reading the settings validates them: bad ones fail the first
        # connect with ImproperlyConfigured naming the key, not the first
        # outage. (Not when the wrapper is built: Django 6 builds wrappers
        # while running system checks, and orca_db.E001 reports them better.)
        settings = self.retry_settings
        if not settings.enabled or active_operation() is not None:
            # Nested in a statement's retry: that operation retries, within
            # its own deadline, and reports one event.
            return self._connect_once()
        operation = Operation(self.alias, "connect", settings)
        run(operation, self._connect_once, _retry_any_connect_failure)

    def _connect_once(self) -> None:
        try:
            super().connect()
        except BaseException:
            # A half-made connection (init_connection_state failed) must not
            # linger: the next attempt starts clean.
            self._discard_connection()
            raise

    def _discard_connection(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                self._close_broken_connection(connection)

    def _close_broken_connection(self, connection) -> None:
        """Close a connection that must never be used again. One from
        psycopg's pool (``OPTIONS["pool"]``) also goes back to its pool,
        closed: the pool then counts it gone and opens a replacement, where
        a plain close would leak its slot until the pool ran dry."""
        connection.close()
        pool = getattr(connection, "_pool", None)
        if pool is not None:
            pool.putconn(connection)

    # ----- statements -------------------------------------------------------

    def create_cursor(self, name=None):
        if self.closed_in_transaction and self.in_atomic_block:
            # Code that caught TransactionRolledBack inside the block and
            # carried on: the transaction is gone, say so again (Django would
            # report "connection already closed").
            raise TransactionRolledBack(
                f"The transaction on database {self.alias!r} was rolled back when "
                f"its connection was lost; leave the atomic block and run it again."
            )
        return super().create_cursor(name)

    def make_cursor(self, cursor):
        cls = _RETRYING_CLASSES.get((type(self), False))
        if cls is None:
            cls = _retrying(type(self), False, type(super().make_cursor(cursor)))
        return cls(cursor, self)

    def make_debug_cursor(self, cursor):
        cls = _RETRYING_CLASSES.get((type(self), True))
        if cls is None:
            cls = _retrying(type(self), True, type(super().make_debug_cursor(cursor)))
        return cls(cursor, self)

    def _reconnect_if_server_closed(self, wrapper, sql) -> None:
        """Before an autocommit write: replace a connection the server has
        already closed, so the write is sent once, on a live one, instead of
        failing with an outcome nobody can know."""
        if self.connection is None or not server_closed(self.connection):
            return
        settings = self.retry_settings
        if not settings.enabled:
            return
        operation = Operation(self.alias, "execute", settings, statement=sql)
        operation.last_failure = Failure(
            retryable=True,
            not_applied=True,
            error_type="ServerClosedConnection",
            sqlstate=None,
            message="the server had closed the idle connection before the statement was sent",
            closed_before_send=True,
        )
        self._discard_connection()
        try:
            self.ensure_connection()
        except BaseException:
            report(operation, "raised")
            raise
        wrapper.cursor = self.create_cursor(getattr(wrapper.cursor, "name", None))
        report(operation, "recovered")

    def _recover_statement(self, wrapper, error, sql, params, execute, many=False):
        settings = self.retry_settings
        if (
            not settings.enabled
            or isinstance(error, ScaleEventError)
            or active_operation() is not None
            or not classify(error).retryable
            or _closed_by_caller(wrapper.cursor)
        ):
            raise error
        operation = Operation(self.alias, "execute", settings, statement=sql)
        in_transaction = self.in_atomic_block or not self.autocommit
        stage = "execute"
        name = getattr(wrapper.cursor, "name", None)

        def judge(error: BaseException, failure: Failure) -> BaseException | None:
            if stage == "connect":
                return None  # nothing was sent on this attempt
            if in_transaction:
                self.close()
                return TransactionRolledBack(
                    f"The connection to database {self.alias!r} was lost inside a "
                    f"transaction ({failure.error_type}); the server rolled the "
                    f"whole transaction back."
                )
            if _safe_to_replay(sql, many, failure, settings):
                return None
            self._discard_connection()
            return OutcomeUnknown(
                f"The connection to database {self.alias!r} was lost while a "
                f"write was in flight ({failure.error_type}); it may or may not "
                f"have been applied, and was not retried."
            )

        def replay():
            nonlocal stage
            stage = "connect"
            self._discard_connection()
            self.ensure_connection()
            with contextlib.suppress(Exception):
                wrapper.cursor.close()
            wrapper.cursor = self.create_cursor(name)
            stage = "execute"
            return execute(sql, params)

        return recover(operation, error, replay, judge)

    # ----- commit -----------------------------------------------------------

    def _commit(self):
        try:
            return super()._commit()
        except DjangoError as error:
            replacement = self._commit_failure(error)
            if replacement is error:
                raise
            raise replacement from driver_error(error)

    def _commit_failure(self, error: DjangoError) -> BaseException:
        settings = self.retry_settings
        failure = classify(error)
        if not settings.enabled or not failure.retryable:
            return error
        if active_operation() is None:
            # Inside an operation (retry_atomic's), that operation resolves
            # the lost COMMIT and reports it: one event, not two.
            operation = Operation(self.alias, "transaction", settings, statement="COMMIT")
            operation.last_failure = failure
            report(operation, "raised")
        if failure.closed_before_send:
            return TransactionRolledBack(
                f"The connection to database {self.alias!r} was closed before "
                f"COMMIT could be sent; the server rolled the transaction back."
            )
        return OutcomeUnknown(
            f"The connection to database {self.alias!r} was lost while COMMIT "
            f"was in flight ({failure.error_type}); the transaction may or may "
            f"not have committed."
        )


def _closed_by_caller(cursor) -> bool:
    """The code closed this cursor itself while its connection is open:
    using it is the caller's error (Django expects InterfaceError), not a
    lost connection, though psycopg2 words both "cursor already closed"."""
    connection = getattr(cursor, "connection", None)
    return bool(getattr(cursor, "closed", False)) and not getattr(connection, "closed", True)


def _retry_any_connect_failure(error: BaseException, failure: Failure) -> None:
    return None  # a failed connect applied nothing: every retryable one is safe


def _safe_to_replay(sql, many: bool, failure: Failure, settings: RetrySettings) -> bool:
    if isinstance(sql, str) and sql.lstrip().upper().startswith(_COMMIT_WORDS):
        return False
    if not many and (failure.not_applied or is_read_only(sql)):
        return True
    # executemany runs statement after statement: a proof about the failed
    # one says nothing of those before it.
    return failure.closed_before_send or settings.retry_writes


# (backend class, debug) -> the retrying subclass of the cursor wrapper that
# backend would use; built on first use so any parent backend's own wrapper
# (PostgreSQL's CursorDebugWrapper adds copy methods) is kept.
_RETRYING_CLASSES: dict[tuple[type, bool], type] = {}


def _retrying(backend: type, debug: bool, cursor_class: type) -> type:
    retrying = type(
        f"Retrying{cursor_class.__name__}",
        (RetryingCursorMixin, cursor_class),
        {"__module__": __name__},
    )
    return _RETRYING_CLASSES.setdefault((backend, debug), retrying)
