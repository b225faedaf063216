"""The retry layer as mixins, so that it composes with any backend of the
PostgreSQL family::

    from django.contrib.gis.db.backends.postgis import base as postgis

    class DatabaseWrapper(AuroraRetryMixin, postgis.DatabaseWrapper):
        pass

Decisions (what is retryable, what may be replayed) come from
``orca_db.classify`` and ``orca_db.decisions``, retries from
``orca_db.retry``, driver questions from ``orca_db.drivers``; this module
wires them into Django's connection life cycle and keeps the state a lost
connection leaves behind: a refusal (the application's transaction or
session is gone) and the session changes to restore (``orca_db.session``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from django.db.utils import Error as DjangoError

from .. import decisions, drivers
from ..aws.credentials import apply_credentials, connect_with_credentials
from ..classify import classify, driver_error
from ..conf import OPTIONS_KEY, RetrySettings, retry_settings
from ..deadlines import bounded_connect
from ..exceptions import OutcomeUnknown, SessionStateLost, TransactionRolledBack
from ..retry import Operation, active_operation, remaining_time, report, run
from ..session import SessionState
from ..sql import profile
from .cursor import RetryingCursorMixin, retrying_class

__all__ = ["AuroraRetryMixin", "RetryingCursorMixin"]

#: TCP settings libpq gets unless ``OPTIONS`` has its own: a peer that goes
#: silent is noticed within about ``keepalives_idle + tcp_user_timeout``
#: (35 s) instead of the kernel's 15 minutes (docs/backend.md).
TCP_DEFAULTS = {
    "keepalives": 1,
    "keepalives_idle": 15,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20000,
}


@dataclasses.dataclass(frozen=True)
class _Refusal:
    """Why the connection refuses statements, and until when."""

    #: "transaction": until rollback()/ROLLBACK or close();
    #: "session": until close().
    kind: str
    message: str
    lost: tuple[str, ...] = ()

    def error(self) -> Exception:
        if self.kind == "session":
            return SessionStateLost(self.message, self.lost)
        return TransactionRolledBack(self.message)


class AuroraRetryMixin:
    """Connect and execute through scale events, pauses and restarts."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._orca_link: drivers.Link | None = None
        self._orca_refusal: _Refusal | None = None
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
            for key, value in TCP_DEFAULTS.items():
                params.setdefault(key, value)
        return apply_credentials(self, params)

    def get_new_connection(self, conn_params: dict[str, Any]):
        parent = super().get_new_connection

        def connect(params: dict[str, Any]):
            # A login refused after a rotation is refreshed and retried once.
            return connect_with_credentials(self, params, parent)

        # Bounded by what is left of the operation's deadline (or of the
        # Lambda function's time): an attempt that cannot end in time is not
        # started, and one libpq cannot bound is abandoned at the bound.
        connection = bounded_connect(connect, conn_params, remaining_time(), drivers.close_broken)
        settings = self.retry_settings
        self._orca_statement_deadline = settings.statement_deadline
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
        if active_operation() is not None:
            # Nested in a statement's retry: that operation retries, within
            # its own deadline, and reports one event.
            return self._connect_once()
        operation = Operation(self.alias, "connect", settings)
        run(operation, self._connect_once, _retry_any_connect_failure)

    def _connect_once(self) -> None:
        self._orca_connecting = True
        try:
            super().connect()
            self._orca_resume_session()
        except BaseException:
            # A half-made connection (init_connection_state failed) must not
            # linger: the next attempt starts clean.
            self._discard_connection()
            raise
        finally:
            self._orca_connecting = False

    def _orca_resume_session(self) -> None:
        """On a connection that replaces a lost one: the application's
        session as it was, or a refusal; and autocommit as it last set it."""
        session = self._orca_session
        if session.lost:
            lost = session.lost_items()
            if lost:
                message = (
                    f"The connection to database {self.alias!r} was replaced after a scale "
                    f"event, and its session held {', '.join(lost)}, which a new session "
                    f"does not have; close the connection and start over."
                )
                self._orca_refusal = _Refusal("session", message, lost)
                raise SessionStateLost(message, lost)
            if not session.empty:
                self._restore_session(session)
            session.lost = False
        wish, self._orca_autocommit_wish = self._orca_autocommit_wish, None
        if wish is not None and wish != self.autocommit:
            self._set_autocommit(wish)
            self.autocommit = wish

    def _restore_session(self, session: SessionState) -> None:
        connection = self.connection
        try:
            with connection.cursor() as cursor:
                session.restore(cursor.execute)
            if drivers.transaction_status(connection) != drivers.IDLE:
                connection.commit()  # AUTOCOMMIT=False in settings
        except Exception as error:
            if classify(error).retryable:
                raise  # lost again: the connect is retried
            message = (
                f"The connection to database {self.alias!r} was replaced after a scale event "
                f"and the session's settings could not be applied again "
                f"({type(error).__name__})."
            )
            self._orca_refusal = _Refusal("session", message, ("session settings",))
            raise SessionStateLost(message, ("session settings",)) from error

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

    def _close_broken_connection(self, connection) -> None:
        drivers.close_broken(connection)

    # ----- losing a connection ------------------------------------------------

    def _orca_lose_connection(self) -> None:
        """The connection is gone (no transaction was open on it): the next
        one must get the session back, with autocommit as it was."""
        if self.connection is None:
            return
        self._orca_session.lost = True
        if self._orca_autocommit_wish is None:
            self._orca_autocommit_wish = self.autocommit
        self._discard_connection()

    def _orca_lose_transaction(self) -> TransactionRolledBack:
        """The connection is gone with a transaction open on it."""
        message = (
            f"The connection to database {self.alias!r} was lost inside a transaction; the "
            f"server rolled the whole transaction back."
        )
        self._orca_session.transaction_ended(False)
        if self.in_atomic_block:
            # Django's own state for it: every statement until the block
            # is left raises, and leaving it drops the connection.
            self._orca_session.lost = True
            self._orca_connecting = True  # a loss, not a close: see close()
            try:
                self.close()
            finally:
                self._orca_connecting = False
        else:
            self._orca_lose_connection()
            self._orca_refusal = _Refusal(
                "transaction",
                message + " Call rollback() (or send ROLLBACK) to go on.",
            )
        return TransactionRolledBack(message)

    def _orca_refused(self, sql: object):
        """A statement on a connection that refuses work."""
        refusal = self._orca_refusal
        assert refusal is not None
        if refusal.kind == "transaction":
            control = profile(sql).control
            if control == "rollback":
                self._orca_refusal = None
                return None  # the server already rolled it back
            if control == "commit":
                self._orca_refusal = None
                raise TransactionRolledBack(
                    f"COMMIT on database {self.alias!r}: the transaction had already been "
                    f"rolled back when its connection was lost; nothing was committed."
                )
        raise refusal.error()

    def _orca_observe(self, wrapper, statement, sql, params, in_transaction: bool) -> None:
        session = self._orca_session
        control = statement.control
        if control is None:
            session.observe(sql, params, in_transaction)
        elif control == "commit":
            # COMMIT of a failed transaction answers ROLLBACK, no error.
            status = getattr(wrapper.cursor, "statusmessage", None) or ""
            session.transaction_ended(status.startswith("COMMIT"))
        elif control == "rollback":
            session.transaction_ended(False)
        elif control in ("prepare_transaction", "mixed"):
            session.transaction_ended(None)
        elif control == "savepoint":
            session.savepoint(statement.savepoint_name)
        elif control == "release":
            session.savepoint_released(statement.savepoint_name)
        elif control == "rollback_to":
            session.rolled_back_to(statement.savepoint_name)

    # ----- what the application does to the connection -----------------------

    def close(self) -> None:
        connection = self.connection
        if self._orca_connecting or (connection is not None and drivers.is_closed(connection)):
            # A connection that is already broken (Django drops it when a
            # rollback fails): lost, not closed by choice. The session is
            # brought back on the next one.
            self._orca_session.lost = True
        else:
            self._orca_forget_session()
        super().close()

    def close_if_unusable_or_obsolete(self) -> None:
        super().close_if_unusable_or_obsolete()
        if self.connection is None:
            # A request boundary with the connection closed or lost: the
            # next request starts a new session, as with Django's backend.
            self._orca_forget_session()

    def _orca_forget_session(self) -> None:
        """The application closed its connection: the next one is a new
        session, as it asked."""
        self._orca_refusal = None
        self._orca_session.reset()
        self._orca_autocommit_wish = None

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
        cls = self._orca_cursor_class
        if cls is None:
            cls = self._orca_cursor_class = _retrying(
                type(self), False, type(super().make_cursor(cursor))
            )
        return cls(cursor, self)

    def make_debug_cursor(self, cursor):
        cls = _RETRYING_CLASSES.get((type(self), True))
        if cls is None:
            cls = _retrying(type(self), True, type(super().make_debug_cursor(cursor)))
        return cls(cursor, self)

    # ----- commit and rollback ---------------------------------------------

    def _commit(self):
        refusal = self._orca_refusal
        if refusal is not None and refusal.kind == "transaction":
            self._orca_refusal = None
            raise TransactionRolledBack(
                f"commit() on database {self.alias!r}: the transaction had already been "
                f"rolled back when its connection was lost; nothing was committed."
            )
        try:
            result = super()._commit()
        except DjangoError as error:
            replacement = self._commit_failure(error)
            if replacement is error:
                raise
            raise replacement from driver_error(error)
        if self._orca_session.pending:
            self._orca_session.transaction_ended(True)
        return result

    def _rollback(self):
        refusal = self._orca_refusal
        if refusal is not None and refusal.kind == "transaction":
            self._orca_refusal = None  # the server rolled it back already
        if self._orca_session.pending:
            self._orca_session.transaction_ended(False)
        return super()._rollback()

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
        self._orca_session.lost = True
        if decisions.commit_lost(failure) is decisions.Verdict.ROLLED_BACK:
            self._orca_session.transaction_ended(False)
            return TransactionRolledBack(
                f"The connection to database {self.alias!r} was closed before "
                f"COMMIT could be sent; the server rolled the transaction back."
            )
        self._orca_session.transaction_ended(None)
        return OutcomeUnknown(
            f"The connection to database {self.alias!r} was lost while COMMIT "
            f"was in flight ({failure.error_type}); the transaction may or may "
            f"not have committed."
        )


def _retry_any_connect_failure(error: BaseException, failure) -> None:
    return None  # a failed connect applied nothing: every retryable one is safe


# (backend class, debug) -> the retrying subclass of the cursor wrapper that
# backend would use; built on first use so any parent backend's own wrapper
# (PostgreSQL's CursorDebugWrapper adds copy methods) is kept.
_RETRYING_CLASSES: dict[tuple[type, bool], type] = {}


def _retrying(backend: type, debug: bool, cursor_class: type) -> type:
    return _RETRYING_CLASSES.setdefault((backend, debug), retrying_class(cursor_class))
