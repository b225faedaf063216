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

import contextlib
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any

from django.db.transaction import Atomic

from .. import drivers
from ..classify import classify
from ..exceptions import SessionStateLost, TransactionRolledBack
from ..session import SessionState
from ..sql import profile
from .session_check import session_differs
from .state import ConnectionState, Refusal
from .watching import disarm

if TYPE_CHECKING:
    from django.db.backends.postgresql.base import DatabaseWrapper

    from ..conf import RetrySettings

    class WrapperBase(DatabaseWrapper):
        """What the mixins are typed against: Django's PostgreSQL wrapper,
        with the private methods they override, which django-stubs leaves
        out."""

        pool: Any

        def _commit(self) -> None: ...
        def _rollback(self) -> None: ...
        def _set_autocommit(self, autocommit: bool) -> None: ...
        def _close(self) -> None: ...

        @property
        def retry_settings(self) -> RetrySettings: ...
else:
    WrapperBase = object  # at run time they are mixed into the backend

#: Every setting back to the connection's defaults (RESET ALL leaves the
#: role and the session authorization alone; resetting the latter resets
#: the role too).
_RESET_SETTINGS = "RESET SESSION AUTHORIZATION; RESET ALL"


def _pooled(connection: object) -> bool:
    """A connection lent by a pool: psycopg_pool marks its connections with
    their pool; django-db-connection-pool's are SQLAlchemy proxies."""
    return getattr(connection, "_pool", None) is not None or hasattr(connection, "invalidate")


_ATOMIC_EXIT = Atomic.__exit__.__code__


def called_by_atomic_exit(frame: FrameType | None, depth: int = 4) -> bool:
    """Is Django's ``Atomic.__exit__`` among the ``depth`` callers from
    ``frame`` up? Its ``close()`` (after a failed ROLLBACK or COMMIT) and
    its ``rollback()`` are not the application's: the autocommit they leave
    is atomic()'s. Several frames, not one: Django's ``async_unsafe`` wraps
    ``close()`` and ``rollback()``, and a backend's own override adds one.
    Asked only where the answer matters (a close that is not orca-db's
    own, a rollback on a broken connection), never per statement."""
    while frame is not None and depth:
        if frame.f_code is _ATOMIC_EXIT:
            return True
        frame, depth = frame.f_back, depth - 1
    return False


class LostConnectionMixin(WrapperBase):
    """Refusals and the session record; mixed into ``AuroraRetryMixin``.
    Its state is the wrapper's ``orca_state`` (state.py)."""

    orca_state: ConnectionState

    def _discard_connection(self) -> None:
        connection, self.connection = self.connection, None
        self.orca_state.link = None
        if connection is not None:
            with contextlib.suppress(Exception):
                self._close_broken_connection(connection)
        disarm(self.orca_state)

    def _close_broken_connection(self, connection: Any) -> None:
        drivers.close_broken(connection)

    def _orca_resume_session(self) -> None:
        """On a connection that replaces a lost one: the application's
        session as it was, or a refusal; and autocommit as it last set it."""
        state = self.orca_state
        session = state.session
        if session.lost:
            lost = session.lost_items()
            if not lost and not session.empty:
                self._restore_session(session)
            if not lost and session.verifying:
                differs = session_differs(self)
                lost = (differs,) if differs else ()
            if lost:
                message = (
                    f"The connection to database {self.alias!r} was replaced after a scale "
                    f"event, and its session held {', '.join(lost)}, which a new session "
                    f"does not have; close the connection and start over."
                )
                state.refusal = Refusal("session", message, lost)
                raise SessionStateLost(message, lost)
            session.lost = False
        wish, state.autocommit_wish = state.autocommit_wish, None
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
            self.orca_state.refusal = Refusal("session", message, ("session settings",))
            raise SessionStateLost(message, ("session settings",)) from error

    # ----- losing a connection ------------------------------------------------

    def _orca_lose_connection(self) -> None:
        """The connection is gone (no transaction was open on it): the next
        one must get the session back, with autocommit as it was."""
        if self.connection is None:
            return
        state = self.orca_state
        state.session.lost = True
        # Changes waiting on a transaction died with it.
        state.session.transaction_ended(False)
        if state.autocommit_wish is None:
            state.autocommit_wish = self.autocommit
        self._discard_connection()

    def _orca_lose_transaction(self) -> TransactionRolledBack:
        """The connection is gone with a transaction open on it."""
        message = (
            f"The connection to database {self.alias!r} was lost inside a transaction; the "
            f"server rolled the whole transaction back."
        )
        state = self.orca_state
        state.session.transaction_ended(False)
        if self.in_atomic_block:
            # Django's own state for it: every statement until the block
            # is left raises, and leaving it drops the connection.
            state.session.lost = True
            state.close_keeps_session = True  # a loss, not a close: see close()
            try:
                self.close()
            finally:
                state.close_keeps_session = False
        else:
            self._orca_lose_connection()
            state.refusal = Refusal(
                "transaction",
                message + " Call rollback() (or send ROLLBACK) to go on.",
            )
        return TransactionRolledBack(message)

    def _orca_refused(self, sql: object) -> None:
        """A statement on a connection that refuses work."""
        state = self.orca_state
        refusal = state.refusal
        assert refusal is not None
        if refusal.kind == "transaction":
            control = profile(sql).control
            if control == "rollback":
                state.refusal = None
                return None  # the server already rolled it back
            if control == "commit":
                state.refusal = None
                raise TransactionRolledBack(
                    f"COMMIT on database {self.alias!r}: the transaction had already been "
                    f"rolled back when its connection was lost; nothing was committed."
                )
        raise refusal.error()

    def close(self) -> None:
        state = self.orca_state
        cut = state.rollback_cut  # a ROLLBACK cut at its deadline dropped it
        state.rollback_cut = False
        own = state.close_keeps_session
        # atomic()'s exit closes only a connection it had taken out of
        # autocommit: an autocommit close (a request's end) walks no frames.
        by_atomic = (
            (cut or not own) and not self.autocommit and called_by_atomic_exit(sys._getframe(1))
        )
        if own or by_atomic:
            # Not the application's choice: orca-db dropping a lost
            # connection, or Django's atomic() dropping one whose ROLLBACK
            # failed. The session is brought back on the next connection
            # (or refused), without what its open transaction had changed.
            if cut and by_atomic:
                # atomic() had turned autocommit off, not the application.
                state.autocommit_wish = None
            state.session.lost = True
            state.session.transaction_ended(False)
        else:
            # The application's close() (a worker between jobs, the end of
            # a request): a clean session, whatever state the old
            # connection was in, broken or not. A pool would lend the
            # connection again with its session: one whose session changed
            # is closed for good instead (the pool opens a fresh one).
            # (_orca_forget_session, with one look at a fresh session, a
            # request's usual one: nothing to clean or forget then.)
            if not state.session.fresh:
                if state.session.changed and not self.in_atomic_block:
                    self._orca_clean_pooled()
                state.session.reset()
            state.refusal = None
            state.autocommit_wish = None
        super().close()

    def _orca_clean_pooled(self) -> None:
        """A pooled connection whose session the application changed goes
        back to its pool clean: reset when only settings were changed (one
        round trip; Django sets its own up again on the next checkout),
        closed for good otherwise (the pool opens a fresh one)."""
        connection = self.connection
        if connection is None or not _pooled(connection):
            return  # closed below anyway
        if (
            self.orca_state.session.settings_only
            and self.autocommit
            and drivers.transaction_status(connection) == drivers.IDLE
        ):
            try:
                with connection.cursor() as cursor:
                    cursor.execute(_RESET_SETTINGS)
                return
            except Exception:
                pass  # closed for good below
        self._discard_connection()

    def close_if_unusable_or_obsolete(self) -> None:
        super().close_if_unusable_or_obsolete()
        if self.connection is None:
            # A request boundary with the connection closed or lost: the
            # next request starts a new session, as with Django's backend.
            self._orca_forget_session()

    def _orca_forget_session(self) -> None:
        """The application closed its connection: the next one is a new
        session, as it asked."""
        state = self.orca_state
        state.refusal = None
        if not state.session.fresh:
            state.session.reset()
        state.autocommit_wish = None
