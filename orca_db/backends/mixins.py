"""The retry layer as mixins, so that it composes with any backend of the
PostgreSQL family::

    from django.contrib.gis.db.backends.postgis import base as postgis

    class DatabaseWrapper(AuroraRetryMixin, postgis.DatabaseWrapper):
        pass

Decisions (what is retryable, what may be replayed) come from
``orca_db.classify`` and ``orca_db.decisions``, retries from
``orca_db.retry``, driver questions from ``orca_db.drivers``; this module
wires them into Django's connection life cycle (connecting, cursors), the
statement path is in ``cursor.py``, what a lost connection leaves
behind (refusals, the session to restore) in ``lost.py``, and the state of
it all in one object per connection (``state.py``, ``orca_state``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from .. import connect_notice, drivers
from ..aws.credentials import apply_credentials, connect_with_credentials
from ..classify import driver_error
from ..conf import OPTIONS_KEY, RetrySettings, retry_settings
from ..deadlines import bounded_connect
from ..exceptions import TransactionRolledBack
from ..options import RetrySettings as CoreSettings
from ..pool_waits import pool_wait_bounded
from ..retry import Operation, active_operation, remaining_time, run
from .cursor import retrying_class
from .ending import TransactionEndMixin
from .fetching import fetching
from .state import ConnectionState
from .watching import disarm, setup_cut_off, setup_ended, watch_setup

__all__ = ["AuroraRetryMixin"]


class AuroraRetryMixin(TransactionEndMixin):
    """Connect and execute through scale events, pauses and restarts.

    Two mixins below it (``TransactionEndMixin``, ``LostConnectionMixin``),
    the rest functions over the one state object: the wrapper's class stays
    short, which the attribute lookups of every statement feel."""

    #: The backend's own ``create_cursor`` (the next in the class's MRO),
    #: found once per class: cheaper than ``super()`` on every cursor; and
    #: likewise the methods every connect and close call (not ``connect``
    #: itself: APM tools such as Sentry's patch Django's at run time).
    _orca_parent_create_cursor: Callable[..., Any]
    _orca_parent_get_connection_params: Callable[..., dict[str, Any]]
    _orca_parent_get_new_connection: Callable[..., Any]
    _orca_parent_close: Callable[..., None]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._orca_parent_create_cursor = super().create_cursor
        cls._orca_parent_get_connection_params = super().get_connection_params
        cls._orca_parent_get_new_connection = super().get_new_connection
        cls._orca_parent_close = super()._close

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.orca_state = ConnectionState()

    @property
    def retry_settings(self) -> RetrySettings:
        return retry_settings(self)

    # ----- connecting -------------------------------------------------------

    def get_connection_params(self) -> dict[str, Any]:
        params = self._orca_parent_get_connection_params()
        params.pop(OPTIONS_KEY, None)
        host = params.get("host")
        if not (isinstance(host, str) and host.startswith("/")):
            # The application's own values win (one merge, not a call each).
            params = {**drivers.TCP_DEFAULTS, **params}
        operation = active_operation(self.alias)
        if not _aws_login(self.retry_settings if operation is None else operation.settings):
            return params
        return apply_credentials(self, params)

    def get_new_connection(self, conn_params: dict[str, Any]):
        parent = self._orca_parent_get_new_connection
        operation = active_operation(self.alias)
        # The settings the connect runs under: those its operation read
        # (connect()'s, or the reconnecting statement's), read once for the
        # whole connect; read now when no operation runs.
        settings = self.retry_settings if operation is None else operation.settings
        if operation is None:
            until, remaining = None, remaining_time()
        else:  # remaining_time(), with the deadline kept for the set-up
            until = operation.deadline_at
            remaining = until - operation.clock()
        # A login refused after a rotation is refreshed and retried once.
        login = _aws_login(settings)
        # Django's psycopg pool waits for a free connection up to its own
        # timeout (30 s by default): no longer than the deadline allows.
        pool_wait = remaining is not None and self.settings_dict["OPTIONS"].get("pool")

        def around(params: dict[str, Any]) -> Any:
            if not pool_wait:
                return connect_with_credentials(self, params, parent) if login else parent(params)
            with pool_wait_bounded(self.pool, cast(float, remaining)):
                return connect_with_credentials(self, params, parent) if login else parent(params)

        # Nothing around Django's own connect: no frame more.
        connect = around if login or pool_wait else parent

        # Bounded by what is left of the operation's deadline (or of the
        # Lambda function's time): an attempt that cannot end in time is not
        # started, and one libpq cannot bound is abandoned at the bound.
        connection = bounded_connect(connect, conn_params, remaining, drivers.close_broken)
        state = self.orca_state
        state.statement_deadline = settings.statement_deadline
        state.enabled = settings.enabled
        # No link while the connection refuses work: the hot path then takes
        # the slow way, which says so.
        refused = state.refusal is not None
        link = drivers.Link(connection) if settings.enabled and not refused else None
        if settings.enabled:
            # Django's set-up and the session's restore, about to run on it,
            # end by the same bounds as any call (watching.py).
            watch_setup(state, connection, until, None if link is None else link.fd)
        state.link = link
        return connection

    def connect(self) -> None:
        # Reading the settings validates them: bad ones fail the first
        # connect with ImproperlyConfigured naming the key, not the first
        # outage. (Not when the wrapper is built: Django 6 builds wrappers
        # while running system checks, and orca_db.E001 reports them better.)
        settings = self.retry_settings
        if not settings.enabled:
            self.orca_state.enabled = False
            self.orca_state.link = None
            return super().connect()
        if active_operation(self.alias) is not None:
            # Nested in a statement's retry: that operation retries, within
            # its own deadline, and reports one event.
            return self._connect_once()
        operation = Operation(self.alias, "connect", settings)
        run(operation, self._connect_once, _retry_any_connect_failure)

    def _connect_once(self) -> None:
        state = self.orca_state
        state.close_keeps_session = True  # a close() while connecting is orca-db's
        where = (self.alias, self.settings_dict.get("HOST"), self.settings_dict.get("PORT"))
        state.rollback_cut = False
        try:
            super().connect()
            if state.session.lost or state.autocommit_wish is not None:
                self._orca_resume_session()  # after a lost connection
        except BaseException as error:
            cut = setup_ended(state)
            # A half-made connection (init_connection_state failed) must not
            # linger: the next attempt starts clean.
            self._discard_connection()
            # A wrong HOST or PORT is told at once, not after the deadline.
            connect_notice.failed(*where, error)
            if cut:
                raise setup_cut_off() from driver_error(error)
            raise
        else:
            if setup_ended(state):
                self._orca_lose_connection()  # the answer came, the socket is shut
        finally:
            state.close_keeps_session = False
        connect_notice.succeeded(*where)

    def _orca_relink(self) -> drivers.Link | None:
        """``self.connection`` was replaced behind the backend's back."""
        state = self.orca_state
        try:
            state.link = drivers.Link(self.connection)
        except Exception:
            state.link = None
        return state.link

    def _close(self) -> None:
        try:
            self._orca_parent_close()
        finally:
            # After the close, which the watch covered too.
            state = self.orca_state
            if state.held_watches or state.setup_watch is not None:
                disarm(state)

    # ----- what the application does to the connection -----------------------

    def create_cursor(self, name: str | None = None) -> Any:
        if self.closed_in_transaction and self.in_atomic_block:
            # Code that caught TransactionRolledBack inside the block and
            # carried on: the transaction is gone, say so again (Django would
            # report "connection already closed").
            raise TransactionRolledBack(
                f"The transaction on database {self.alias!r} was rolled back when "
                f"its connection was lost; leave the atomic block and run it again."
            )
        try:
            return self._orca_parent_create_cursor(name)
        except Exception as error:
            if not self._orca_broken():
                raise
            # The connection broke outside a statement of ours (a server-side
            # cursor's fetch, the driver used directly): a transaction may
            # have been open on it (rule 4), and the next statement must not
            # start a fresh one on a new connection.
            lost = self._orca_lose_transaction()
            if active_operation(self.alias) is not None:
                raise  # retry_atomic's judge decides, as for a statement's error
            raise lost from error

    def chunked_cursor(self) -> Any:
        return fetching(self, super().chunked_cursor())

    def make_cursor(self, cursor: Any) -> Any:
        state = self.orca_state
        cls = state.cursor_class
        if cls is None:
            cls = state.cursor_class = _retrying(
                type(self), False, type(super().make_cursor(cursor)), type(cursor)
            )
        return cls(cursor, self)

    def make_debug_cursor(self, cursor: Any) -> Any:
        cls = _RETRYING_CLASSES.get((type(self), True))
        if cls is None:
            cls = _retrying(type(self), True, type(super().make_debug_cursor(cursor)), type(cursor))
        return cls(cursor, self)


def _aws_login(settings: CoreSettings) -> bool:
    """The login comes from AWS (a secret, IAM): ``credentials_for``'s own
    test, asked here from settings already read, so that a connect without
    one reads them no more often."""
    aws = settings.aws
    return aws is not None and bool(aws.credentials)


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
