"""What a lost connection leaves behind, for the aurora backend's mixin.

When the connection goes, so do the application's transaction and its
session. Two kinds of state stay on the Django connection until the
application deals with them:

- a **refusal**: the transaction (outside an atomic block) or the session
  is gone, so statements are refused (``TransactionRolledBack``,
  ``SessionStateLost``) until the application ends the transaction or
  closes the connection, as Django's stock backend refuses them on its dead
  connection;
- the **session record** (:class:`orca_db.session.SessionState`): the
  runtime settings to apply again on the connection that replaces the lost
  one, or the state that makes that impossible.

The application closing its connection (or Django at the end of a request)
is a new start: both are forgotten.
"""

from __future__ import annotations

import dataclasses
import sys

from django.db.transaction import Atomic

from .. import drivers
from ..classify import classify
from ..exceptions import SessionStateLost, TransactionRolledBack
from ..session import SessionState
from ..sql import profile

_ATOMIC_EXIT = Atomic.__exit__.__code__


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


class LostConnectionMixin:
    """Refusals and the session record; mixed into ``AuroraRetryMixin``."""

    _orca_refusal: _Refusal | None = None
    _orca_autocommit_wish: bool | None = None
    _orca_connecting = False
    _orca_dropped = False

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

    # ----- losing a connection ------------------------------------------------

    def _orca_lose_connection(self) -> None:
        """The connection is gone (no transaction was open on it): the next
        one must get the session back, with autocommit as it was."""
        if self.connection is None:
            return
        self._orca_session.lost = True
        # Changes waiting on a transaction died with it.
        self._orca_session.transaction_ended(False)
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

    def close(self) -> None:
        connection = self.connection
        # Django's atomic() closes the connection after a failed rollback:
        # that close is part of the loss, not the application's choice.
        dropped = self._orca_dropped and sys._getframe(1).f_code is _ATOMIC_EXIT
        self._orca_dropped = False
        if (
            self._orca_connecting
            or dropped
            or (connection is not None and drivers.is_closed(connection))
        ):
            # A connection that is already broken (Django drops it when a
            # rollback fails, or a ROLLBACK cut at its deadline dropped it):
            # lost, not closed by choice. The session is brought back on the
            # next one, without what its open transaction had changed.
            if dropped:
                # atomic() had turned autocommit off, not the application.
                self._orca_autocommit_wish = None
            self._orca_session.lost = True
            self._orca_session.transaction_ended(False)
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
