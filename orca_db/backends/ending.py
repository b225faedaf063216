"""How the aurora backend's transactions end: commit() and rollback() on a
connection that may be gone, a COMMIT bounded by the deadlines, and what
the session record keeps of the changes made inside.

Mixed into ``AuroraRetryMixin`` above ``LostConnectionMixin``, whose
refusals and session record (``orca_state``) it reads."""

from __future__ import annotations

import sys

from django.db.utils import Error as DjangoError

from .. import cut_off, deadlines, decisions, drivers
from ..classify import classify, driver_error
from ..exceptions import (
    DJANGO_ERRORS,
    OutcomeUnknown,
    ScaleEventError,
    TransactionRolledBack,
)
from ..outcomes import WriteDeadlineExceeded
from ..retry import Operation, active_operation, report
from .lost import LostConnectionMixin, called_by_atomic_exit
from .session_check import fingerprint
from .watching import rollback_cut_off, watch_call, watched


class TransactionEndMixin(LostConnectionMixin):
    """commit(), rollback() and autocommit changes."""

    def _commit(self) -> None:
        state = self.orca_state
        refusal = state.refusal
        if refusal is not None and refusal.kind == "transaction":
            state.refusal = None
            raise TransactionRolledBack(
                f"commit() on database {self.alias!r}: the transaction had already been "
                f"rolled back when its connection was lost; nothing was committed."
            )
        session = state.session
        # COMMIT of a failed transaction answers ROLLBACK and raises nothing:
        # its session changes were undone with it.
        failed = bool(session.pending) and self._orca_transaction_failed()
        try:
            if deadlines.open_caps or state.statement_deadline:
                commit = super()._commit
                result = watched(self, watch_call(state), self._orca_commit_cut_off, commit)
            else:
                result = super()._commit()  # no deadline: nothing to arm
        except ScaleEventError:
            raise  # cut off at its deadline
        except DjangoError as error:
            replacement = self._commit_failure(error)
            if replacement is error:
                raise
            self._orca_commit_connection_gone()
            raise replacement from driver_error(error)
        if session.pending:
            session.transaction_ended(not failed)
        if session.verifying:
            fingerprint(self)  # rule 1: the session as committed
        return result

    def _orca_commit_connection_gone(self) -> None:
        # The connection is dead: closed now, and given back to its pool as
        # gone (Django's atomic would only drop the reference, and a pool
        # would count the connection as lent out for ever).
        self._discard_connection()
        # Leaving atomic() after a failed commit turns autocommit back on,
        # which would reconnect at once: into a cluster that may still be
        # away, past a deadline, and a failure to connect would replace the
        # error the application must see. As after a close inside the
        # block, the next use connects instead.
        self.closed_in_transaction = True

    def _orca_commit_cut_off(self) -> WriteDeadlineExceeded:
        self.orca_state.session.lost = True
        self.orca_state.session.transaction_ended(None)
        self._orca_commit_connection_gone()
        return cut_off.commit(self.alias, DJANGO_ERRORS)

    def _orca_transaction_failed(self) -> bool:
        connection = self.connection
        return connection is not None and drivers.transaction_status(connection) == drivers.INERROR

    def _set_autocommit(self, autocommit: bool) -> None:
        if not autocommit:
            state = self.orca_state
            connection = self.connection
            if (
                state.session.pending
                and connection is not None
                and drivers.transaction_status(connection) == drivers.IDLE
            ):
                # A new transaction starts (atomic, set_autocommit(False))
                # while changes of an earlier one are pending: that one ended
                # through the driver, unseen. Its changes are not carried
                # into this one.
                state.session.transaction_ended(None)
            if (
                state.enabled
                and connection is not None
                and drivers.is_broken(connection)
                and active_operation(self.alias) is None
            ):
                # atomic() or set_autocommit(False) on a connection that
                # broke outside a statement of ours (rule 4): a transaction
                # may have been open on it (BEGIN sent as SQL). Nothing
                # starts; the connection refuses work until the application
                # rolls back. (Within retry_atomic, the run's own judge
                # decides: its entry refused an UNKNOWN connection already,
                # so this one broke in its runs.)
                raise self._orca_lose_transaction()
        return super()._set_autocommit(autocommit)

    def _orca_broken(self) -> bool:
        connection = self.connection
        return self.orca_state.enabled and connection is not None and drivers.is_broken(connection)

    def _rollback(self) -> None:
        state = self.orca_state
        refusal = state.refusal
        if refusal is not None and refusal.kind == "transaction":
            state.refusal = None  # the server rolled it back already
        if state.session.pending:
            state.session.transaction_ended(False)
        if self._orca_broken():
            # The connection broke (a fetch, the driver used directly): the
            # server rolled back whatever was open on it (F1). Nothing to
            # send: rule 4's way out is this rollback, and the next
            # statement gets a new connection, autocommit as the
            # application set it.
            # (Called by atomic()'s exit, whose autocommit is its own: the
            # next connection gets the application's, not atomic()'s.)
            by_atomic = called_by_atomic_exit(sys._getframe(1))
            self._orca_lose_connection()
            if by_atomic:
                state.autocommit_wish = None
            return None
        if self.connection is not None and (deadlines.open_caps or state.statement_deadline):
            cut_off = lambda: rollback_cut_off(self)  # noqa: E731
            result = watched(self, watch_call(state), cut_off, super()._rollback)
        else:
            result = super()._rollback()  # no deadline: nothing to arm
        if state.session.verifying and self.connection is not None:
            fingerprint(self)  # rule 1: the session as rolled back to
        return result

    def _commit_failure(self, error: DjangoError) -> BaseException:
        session = self.orca_state.session
        settings = self.retry_settings
        failure = classify(error)
        if not settings.enabled or not failure.retryable:
            return error
        if active_operation(self.alias) is None:
            # Inside an operation (retry_atomic's), that operation resolves
            # the lost COMMIT and reports it: one event, not two.
            operation = Operation(self.alias, "transaction", settings, statement="COMMIT")
            operation.last_failure = failure
            report(operation, "raised")
        session.lost = True
        if decisions.commit_lost(failure) is decisions.Verdict.ROLLED_BACK:
            session.transaction_ended(False)
            return TransactionRolledBack(
                f"The connection to database {self.alias!r} was closed before "
                f"COMMIT could be sent; the server rolled the transaction back."
            )
        session.transaction_ended(None)
        return OutcomeUnknown(
            f"The connection to database {self.alias!r} was lost while COMMIT "
            f"was in flight ({failure.error_type}); the transaction may or may "
            f"not have committed."
        )
